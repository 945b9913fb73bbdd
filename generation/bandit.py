"""Which creative each user sees: a Thompson-sampling bandit over style families per user segment.

Arms are ``(segment, style family)`` pairs pooled across items, so the clicks one item's "noir"
poster earns in a segment raise every "noir" variant's chance in that segment. Segments come from
the users' category affinities (k-means, :class:`Segmenter`); users without history share one
extra cold segment. A variant's draw is ``Beta(a0 + clicks, b0 + impressions - clicks)`` of its
arm, with the prior ``(a0, b0)`` centred on ``prior_ctr * (0.5 + quality)`` (the variant's quality
score in [0, 1]) at ``prior_strength`` pseudo-impressions, so the quality gate's opinion decides
early and the evidence takes over.

State lives in one SQLite file (WAL): arm counts, the impressions shown (a click must name one),
the variants of each item and the users' segments. Every feedback event id is stored, so a replay
after a crash changes nothing; ``flush()`` commits, and a restart reads back the same counts
(:meth:`Bandit.state_digest`).
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from crossrec_core.errors import CrossrecError, ModelLoadError, UnknownIdError
from crossrec_core.persist import atomic_directory, atomic_write_text, load_config, save_config

__all__ = [
    "STYLE_FAMILIES", "BanditConfig", "Segmenter", "Variant", "Impression", "Click", "Choice", "FeedbackResult",
    "FeedbackError", "Bandit",
]

# The poster styles grouped by look; a variant belongs to exactly one family.
STYLE_FAMILIES = ("photo", "minimal", "bold", "vintage", "noir", "pastel")
_DB_NAME = "bandit.sqlite"
_SEGMENTER_NAME = "segmenter"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS arms (segment INTEGER, family TEXT, impressions INTEGER, clicks INTEGER,
                                 PRIMARY KEY (segment, family));
CREATE TABLE IF NOT EXISTS variants (variant_id TEXT PRIMARY KEY, item_id TEXT, family TEXT, quality REAL);
CREATE INDEX IF NOT EXISTS variants_item ON variants(item_id);
CREATE TABLE IF NOT EXISTS users (user_id TEXT PRIMARY KEY, segment INTEGER);
CREATE TABLE IF NOT EXISTS impressions (impression_id TEXT PRIMARY KEY, user_id TEXT, item_id TEXT,
                                        variant_id TEXT, family TEXT, segment INTEGER, clicked INTEGER);
CREATE TABLE IF NOT EXISTS clicks (event_id TEXT PRIMARY KEY);
"""


class FeedbackError(CrossrecError, ValueError):
    """A feedback event the bandit cannot apply (unknown variant, click on nothing shown...)."""


@dataclass(frozen=True)
class BanditConfig:
    """``n_segments`` k-means segments (+1 cold segment for users without history);
    ``prior_ctr``/``prior_strength``: the Beta prior's mean for a variant of quality 0.5 and its
    weight in pseudo-impressions."""

    families: tuple[str, ...] = STYLE_FAMILIES
    n_segments: int = 10
    prior_ctr: float = 0.03
    prior_strength: float = 20.0
    seed: int = 0

    def __post_init__(self) -> None:
        if len(self.families) < 2 or len(set(self.families)) != len(self.families):
            raise ValueError(f"families={self.families!r}: at least two distinct style families are required")
        if not 1 <= self.n_segments <= 1000:
            raise ValueError(f"n_segments={self.n_segments!r}: choose 1..1000")
        if not 0.0 < self.prior_ctr < 0.5:
            raise ValueError(f"prior_ctr={self.prior_ctr!r}: must be in (0, 0.5)")
        if not self.prior_strength > 0:
            raise ValueError(f"prior_strength={self.prior_strength!r}: must be > 0")


class Segmenter:
    """k-means over category-affinity vectors (``categories`` fixes the axes). ``segment({})``,
    a user without history, is the cold segment ``n_segments``."""

    def __init__(self, categories: Sequence[str], centroids: np.ndarray) -> None:
        self.categories = tuple(categories)
        self.centroids = np.asarray(centroids, dtype=np.float64)  # (K, C)
        if self.centroids.ndim != 2 or self.centroids.shape[1] != len(self.categories):
            raise ValueError(f"centroids of shape {self.centroids.shape}: expected (K, {len(self.categories)})")
        self._axis = {c: i for i, c in enumerate(self.categories)}

    @property
    def n_segments(self) -> int:
        return len(self.centroids)

    def vector(self, affinity: Mapping[str, float]) -> np.ndarray:
        """The affinity as a unit-sum ``(C,)`` vector over ``categories`` (unknown categories dropped)."""
        v = np.zeros(len(self.categories))
        for cat, w in affinity.items():
            if cat in self._axis:
                v[self._axis[cat]] += float(w)
        total = v.sum()
        return v / total if total > 0 else v

    def segment(self, affinity: Mapping[str, float] | None) -> int:
        v = self.vector(affinity or {})
        if not v.any():
            return self.n_segments
        return int(np.argmin(((self.centroids - v) ** 2).sum(1)))

    @classmethod
    def fit(cls, affinities: Sequence[Mapping[str, float]], n_segments: int, *, seed: int = 0,
            iterations: int = 50) -> "Segmenter":
        """k-means++ on the users' affinities (users without any are left out)."""
        categories = sorted({c for a in affinities for c in a})
        probe = cls(categories, np.zeros((1, len(categories))))
        x = np.array([probe.vector(a) for a in affinities]) if categories else np.zeros((0, 0))
        x = x[x.sum(1) > 0] if len(x) else x
        if len(x) < n_segments:
            raise ValueError(f"n_segments={n_segments}: only {len(x)} users with category affinities to cluster")
        rng = np.random.default_rng(seed)
        centroids = [x[rng.integers(len(x))]]
        for _ in range(1, n_segments):
            d = np.min(((x[:, None, :] - np.array(centroids)[None]) ** 2).sum(-1), axis=1)
            centroids.append(x[rng.choice(len(x), p=d / d.sum())] if d.sum() > 0 else x[rng.integers(len(x))])
        c = np.array(centroids)
        for _ in range(iterations):
            labels = np.argmin(((x[:, None, :] - c[None]) ** 2).sum(-1), axis=1)
            new = np.array([x[labels == k].mean(0) if np.any(labels == k) else c[k] for k in range(n_segments)])
            if np.allclose(new, c):
                break
            c = new
        return cls(categories, c)

    def save(self, directory: str | os.PathLike) -> None:
        atomic_write_text(Path(directory) / "segmenter.json", json.dumps(
            {"categories": list(self.categories), "centroids": self.centroids.tolist()}))

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "Segmenter":
        file = Path(directory) / "segmenter.json"
        try:
            raw = json.loads(file.read_text("utf-8"))
            return cls(raw["categories"], np.array(raw["centroids"]))
        except (OSError, ValueError, KeyError) as exc:
            raise ModelLoadError(f"{file}: not a saved Segmenter ({exc})") from exc


@dataclass(frozen=True)
class Variant:
    """One creative of an item, in style ``family``, with its quality score in [0, 1]."""

    variant_id: str
    item_id: str
    family: str
    quality: float = 0.5


@dataclass(frozen=True)
class Impression:
    """Variant ``variant_id`` of ``item_id`` was shown to ``user_id``; ``event_id`` is the impression id."""

    event_id: str
    user_id: str
    item_id: str
    variant_id: str


@dataclass(frozen=True)
class Click:
    """A click on the impression ``impression_id`` (which must have been recorded)."""

    event_id: str
    impression_id: str
    user_id: str
    variant_id: str


@dataclass(frozen=True)
class Choice:
    """What :meth:`Bandit.choose_variant` picked, and the arm it belongs to."""

    variant_id: str
    item_id: str
    family: str
    segment: int
    sampled_ctr: float


@dataclass
class FeedbackResult:
    """Counts of one :meth:`Bandit.apply`; ``rejected`` pairs (event, reason) are dead-lettered."""

    impressions: int = 0
    clicks: int = 0
    duplicates: int = 0
    rejected: list[tuple[object, str]] = field(default_factory=list)


class Bandit:
    """Thompson sampling over (segment, family) arms; persisted in ``directory`` (None: in memory).

    ``Bandit.create(dir, config, segmenter)`` starts a new state; ``Bandit.open(dir)`` reopens it.
    Thread-safe: the service may call :meth:`choose_variant` while a consumer applies feedback.
    """

    def __init__(self, directory: str | os.PathLike | None, config: BanditConfig, segmenter: Segmenter) -> None:
        self.directory = None if directory is None else Path(directory)
        self.config, self.segmenter = config, segmenter
        self._family_index = {f: i for i, f in enumerate(config.families)}
        self._lock = threading.RLock()
        self._rng = np.random.default_rng(config.seed)
        db = ":memory:" if self.directory is None else str(self.directory / _DB_NAME)
        self._conn = sqlite3.connect(db, check_same_thread=False, isolation_level=None, timeout=60.0)
        if self.directory is not None:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.executescript(_SCHEMA)
        self._in_tx = False
        n_seg = segmenter.n_segments + 1
        self._imps = np.zeros((n_seg, len(config.families)), dtype=np.int64)  # (S, F) cached arm counts
        self._clicks = np.zeros_like(self._imps)
        for seg, fam, imps, clicks in self._conn.execute("SELECT segment, family, impressions, clicks FROM arms"):
            if fam in self._family_index and 0 <= seg < n_seg:
                self._imps[seg, self._family_index[fam]] = imps
                self._clicks[seg, self._family_index[fam]] = clicks
        self._variants: dict[str, list[Variant]] = {}
        self._variant_by_id: dict[str, Variant] = {}
        for vid, item, fam, q in self._conn.execute("SELECT variant_id, item_id, family, quality FROM variants"):
            self._remember(Variant(vid, item, fam, q))
        self._segments = dict(self._conn.execute("SELECT user_id, segment FROM users").fetchall())

    # -- lifecycle ---------------------------------------------------------------------------------
    @classmethod
    def create(cls, directory: str | os.PathLike | None, config: BanditConfig, segmenter: Segmenter) -> "Bandit":
        """A new, empty bandit state in ``directory`` (refuses to overwrite an existing one)."""
        if config.n_segments != segmenter.n_segments:
            raise ValueError(f"config.n_segments={config.n_segments} but the segmenter has {segmenter.n_segments}")
        if directory is None:
            return cls(None, config, segmenter)
        directory = Path(directory)
        if (directory / _DB_NAME).exists():
            raise FileExistsError(f"directory={str(directory)!r} already holds a bandit; use Bandit.open()")
        with atomic_directory(directory) as tmp:
            save_config(config, tmp, kind="Bandit")
            segmenter.save(tmp)
        return cls(directory, config, segmenter)

    @classmethod
    def open(cls, directory: str | os.PathLike) -> "Bandit":
        """Reopen a persisted bandit with its counts, variants, users and seen event ids."""
        config = load_config(BanditConfig, directory, kind="Bandit")
        return cls(directory, config, Segmenter.load(directory))

    def flush(self) -> None:
        """Commit everything applied so far (called before Kafka offsets are committed)."""
        with self._lock:
            if self._in_tx:
                self._conn.execute("COMMIT")
                self._in_tx = False

    def close(self) -> None:
        with self._lock:
            self.flush()
            self._conn.close()

    def _begin(self) -> None:
        if not self._in_tx:
            self._conn.execute("BEGIN")
            self._in_tx = True

    # -- variants and users ------------------------------------------------------------------------
    def _remember(self, v: Variant) -> None:
        old = self._variant_by_id.get(v.variant_id)
        if old is not None:
            self._variants[old.item_id] = [x for x in self._variants[old.item_id] if x.variant_id != v.variant_id]
        self._variants.setdefault(v.item_id, []).append(v)
        self._variant_by_id[v.variant_id] = v

    def register_variants(self, variants: Iterable[Variant]) -> int:
        """Add (or update) the creatives an item can be shown with; returns how many."""
        rows = []
        with self._lock:
            for v in variants:
                if v.family not in self._family_index:
                    raise FeedbackError(f"variant {v.variant_id!r}: family={v.family!r} is not one of {self.config.families}")
                if not (isinstance(v.quality, (int, float)) and 0.0 <= v.quality <= 1.0):
                    raise FeedbackError(f"variant {v.variant_id!r}: quality={v.quality!r} must be in [0, 1]")
                self._remember(v)
                rows.append((v.variant_id, v.item_id, v.family, float(v.quality)))
            self._begin()
            self._conn.executemany("INSERT OR REPLACE INTO variants VALUES (?, ?, ?, ?)", rows)
        return len(rows)

    def variant(self, variant_id: str) -> Variant | None:
        return self._variant_by_id.get(variant_id)

    def variants(self, item_id: str) -> list[Variant]:
        return list(self._variants.get(str(item_id), ()))

    def assign_users(self, affinities: Mapping[str, Mapping[str, float]]) -> None:
        """Set the segment of each user from their category affinities (``{}``: the cold segment)."""
        with self._lock:
            rows = [(str(u), self.segmenter.segment(a)) for u, a in affinities.items()]
            self._segments.update(rows)
            self._begin()
            self._conn.executemany("INSERT OR REPLACE INTO users VALUES (?, ?)", rows)

    def assigned(self, user_id: str) -> bool:
        """Whether the user has a segment of their own (else they count as cold)."""
        return str(user_id) in self._segments

    def segment_of(self, user_id: str) -> int:
        """The user's segment; users never assigned are in the cold segment."""
        return self._segments.get(str(user_id), self.segmenter.n_segments)

    # -- serving -----------------------------------------------------------------------------------
    def _prior(self, quality: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mean = np.clip(self.config.prior_ctr * (0.5 + quality), 1e-4, 0.99)
        return mean * self.config.prior_strength, (1.0 - mean) * self.config.prior_strength

    def choose_variant(self, user_id: str, item_id: str, among: Sequence[str] | None = None) -> Choice:
        """Draw each of the item's variants from its arm's posterior and return the best draw.

        ``among``: only these variant ids (the variants of one user's creative; the others are
        other users' personalised posters of the item); unregistered ids are skipped."""
        variants = self._variants.get(str(item_id))
        if variants and among is not None:
            wanted = set(among)
            variants = [v for v in variants if v.variant_id in wanted]
        if not variants:
            raise UnknownIdError(f"item_id={item_id!r}: no creative variants registered for this item"
                                 + ("" if among is None else f" among {len(among)} variant id(s)"))
        seg = self.segment_of(user_id)
        fam = np.array([self._family_index[v.family] for v in variants])
        a0, b0 = self._prior(np.array([v.quality for v in variants]))
        with self._lock:
            clicks, imps = self._clicks[seg, fam], self._imps[seg, fam]
            draws = self._rng.beta(a0 + clicks, b0 + imps - clicks)
        best = int(np.argmax(draws))
        v = variants[best]
        return Choice(v.variant_id, v.item_id, v.family, seg, float(draws[best]))

    # -- feedback ----------------------------------------------------------------------------------
    def apply(self, events: Sequence[Impression | Click]) -> FeedbackResult:
        """Apply impressions then clicks of one batch, idempotently (a seen event id is a duplicate).

        Rejected (with the reason): an impression of an unknown variant or of a variant of another
        item; a click on an impression never recorded or on another user's or variant's impression.
        A second click on one impression is a duplicate (one impression earns at most one click).
        """
        result = FeedbackResult()
        with self._lock:
            self._begin()
            for ev in [e for e in events if isinstance(e, Impression)] + [e for e in events if isinstance(e, Click)]:
                reason = self._apply_one(ev, result)
                if reason is not None:
                    result.rejected.append((ev, reason))
            for ev in events:
                if not isinstance(ev, (Impression, Click)):
                    result.rejected.append((ev, f"not a creative impression or click: {type(ev).__name__}"))
        return result

    def _bump(self, seg: int, family: str, imps: int, clicks: int) -> None:
        f = self._family_index[family]
        self._imps[seg, f] += imps
        self._clicks[seg, f] += clicks
        self._conn.execute(
            "INSERT INTO arms VALUES (?, ?, ?, ?) ON CONFLICT(segment, family) DO UPDATE SET "
            "impressions = impressions + excluded.impressions, clicks = clicks + excluded.clicks",
            (seg, family, imps, clicks))

    def _apply_one(self, ev: Impression | Click, result: FeedbackResult) -> str | None:
        if isinstance(ev, Impression):
            v = self._variant_by_id.get(ev.variant_id)
            if v is None:
                return f"unknown variant_id={ev.variant_id!r} (never registered)"
            if v.item_id != str(ev.item_id):
                return f"variant_id={ev.variant_id!r} belongs to item {v.item_id!r}, not item_id={ev.item_id!r}"
            seg = self.segment_of(ev.user_id)
            cur = self._conn.execute("INSERT OR IGNORE INTO impressions VALUES (?, ?, ?, ?, ?, ?, 0)",
                                     (ev.event_id, str(ev.user_id), v.item_id, v.variant_id, v.family, seg))
            if cur.rowcount == 0:
                result.duplicates += 1
                return None
            self._bump(seg, v.family, 1, 0)
            result.impressions += 1
            return None
        row = self._conn.execute("SELECT user_id, variant_id, family, segment, clicked FROM impressions "
                                 "WHERE impression_id = ?", (ev.impression_id,)).fetchone()
        if row is None:
            return f"click on impression_id={ev.impression_id!r}: no such impression was recorded (variant never shown)"
        user, variant, family, seg, clicked = row
        if user != str(ev.user_id) or variant != ev.variant_id:
            return (f"click (user_id={ev.user_id!r}, variant_id={ev.variant_id!r}) does not match impression "
                    f"{ev.impression_id!r} (user {user!r}, variant {variant!r})")
        if clicked or self._conn.execute("INSERT OR IGNORE INTO clicks VALUES (?)", (ev.event_id,)).rowcount == 0:
            result.duplicates += 1
            return None
        self._conn.execute("UPDATE impressions SET clicked = 1 WHERE impression_id = ?", (ev.impression_id,))
        self._bump(seg, family, 0, 1)
        result.clicks += 1
        return None

    # -- inspection --------------------------------------------------------------------------------
    def arm_counts(self) -> dict[str, np.ndarray]:
        """``impressions`` and ``clicks``, each ``(S + 1, F)`` (rows: segments then the cold one)."""
        with self._lock:
            return {"impressions": self._imps.copy(), "clicks": self._clicks.copy()}

    def state_digest(self) -> str:
        """SHA-256 over the arm counts, impressions, clicks seen, variants and users (restart check)."""
        h = hashlib.sha256()
        with self._lock:
            for table, order in (("arms", "segment, family"), ("impressions", "impression_id"), ("clicks", "event_id"),
                                 ("variants", "variant_id"), ("users", "user_id")):
                for row in self._conn.execute(f"SELECT * FROM {table} ORDER BY {order}"):
                    h.update(json.dumps(row).encode())
        return h.hexdigest()

    def describe(self) -> dict:
        """JSON-able summary: config, per-segment best family so far (posterior mean) and totals."""
        counts = self.arm_counts()
        a0, b0 = self._prior(np.full(len(self.config.families), 0.5))
        mean = (a0 + counts["clicks"]) / (a0 + b0 + counts["impressions"])
        return {
            "config": asdict(self.config),
            "impressions": int(counts["impressions"].sum()),
            "clicks": int(counts["clicks"].sum()),
            "best_family": {str(s): self.config.families[int(np.argmax(mean[s]))] for s in range(len(mean))
                            if counts["impressions"][s].sum() > 0},
        }

