"""User profiles: demographics, interaction history, a profile vector and genre affinities.

The :class:`ProfileStore` is fed incrementally (by the streaming layer or from a ratings log) and
persists to SQLite in WAL mode: one transaction per :meth:`ProfileStore.apply` batch holds both the
events and their ids, so a batch is applied exactly once and atomically. Profiles are derived
lazily from the stored history sorted by ``(timestamp, event_id)``, so they do not depend on the
order in which events arrived.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sqlite3
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from crossrec_core.errors import EmbeddingDimensionError

__all__ = [
    "INTERACTION_KINDS",
    "KIND_WEIGHTS",
    "Interaction",
    "ApplyResult",
    "UserProfile",
    "ProfileStore",
    "event_weights",
    "interactions_from_ratings",
]

INTERACTION_KINDS = ("view", "click", "add_to_cart", "purchase", "rating")

# How much one event of each kind says about taste; ratings are further scaled by value / 5.
KIND_WEIGHTS = {"view": 0.25, "click": 0.5, "add_to_cart": 1.0, "purchase": 2.0, "rating": 1.0}

_SECONDS_PER_DAY = 86_400.0
_RATING_SCALE = 5.0
# SQLite's default limit on bound parameters is 32766; stay far below it.
_IN_CHUNK = 900

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    event_id TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL,
    item_id INTEGER NOT NULL,
    kind TEXT NOT NULL,
    value REAL,
    ts REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS events_user ON events(user_id);
CREATE TABLE IF NOT EXISTS demographics (user_id INTEGER PRIMARY KEY, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items (item_id INTEGER PRIMARY KEY, vector BLOB, categories TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS user_changes (user_id INTEGER PRIMARY KEY, seq INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS user_changes_seq ON user_changes(seq);
"""
# ``user_changes`` holds, per user, the number (meta ``change_seq``, bumped once per committed
# write) of the last write that changed the user's events or demographics: one row per user, so
# it stays as small as the user table. Other processes read the users changed since the number
# they last saw and drop only those cached profiles.


@dataclass(frozen=True)
class Interaction:
    """One user-item event. ``event_id`` is globally unique: the idempotency key."""

    event_id: str
    user_id: int
    item_id: int
    kind: str
    timestamp: float  # unix seconds, event time (not arrival time)
    value: float | None = None  # the rating for kind == "rating"

    def __post_init__(self) -> None:
        if not isinstance(self.event_id, str) or not self.event_id:
            raise ValueError(f"event_id={self.event_id!r}: must be a non-empty string")
        if self.kind not in KIND_WEIGHTS:
            raise ValueError(f"kind={self.kind!r} for event {self.event_id!r}: allowed kinds are {INTERACTION_KINDS}")
        if not math.isfinite(self.timestamp):
            raise ValueError(f"timestamp={self.timestamp!r} for event {self.event_id!r}: must be finite unix seconds")
        if self.kind == "rating" and (self.value is None or not math.isfinite(self.value)):
            raise ValueError(f"value={self.value!r} for rating event {self.event_id!r}: a rating needs a finite value")


@dataclass(frozen=True)
class ApplyResult:
    applied: int  # new events applied
    duplicates: int  # event ids already applied before, or repeated within the batch (ignored)
    unknown_items: int  # applied events whose item is not in the catalogue (history only, no vector)


@dataclass(frozen=True)
class UserProfile:
    user_id: int
    demographics: dict  # e.g. {"age": 24, "sex": "M", "occupation": "technician"}; {} if unknown
    history: tuple[tuple[int, str, float | None, float], ...]  # (item_id, kind, value, ts) by (ts, event_id)
    vector: np.ndarray | None  # (D,) float32, recency/kind-weighted mean of item vectors, L2-normalised
    category_affinity: dict[str, float]  # weights over item categories summing to 1; {} if none known
    n_events: int


def event_weights(kinds: Sequence[str], values: Sequence[float | None], ts: np.ndarray, half_life_days: float) -> np.ndarray:
    """(n,) weight of each event: kind weight x rating/5 x 0.5 ** (age / half-life).

    Age is measured from the user's latest event, not the wall clock, so a profile is a pure
    function of its history.
    """
    kind_w = np.array([KIND_WEIGHTS[k] * (v / _RATING_SCALE if k == "rating" else 1.0) for k, v in zip(kinds, values)])
    if len(ts) == 0:
        return kind_w
    age_days = (ts.max() - ts) / _SECONDS_PER_DAY
    return kind_w * np.power(0.5, age_days / half_life_days)


class ProfileStore:
    """Incrementally updated, persistent store of user profiles.

    ``path=None`` keeps everything in memory. ``item_ids`` (N,), ``item_vectors`` (N, D) and
    ``item_categories`` give the catalogue features profiles are computed from; they can be
    upserted later with :meth:`set_item_vectors` and are persisted with the store. Events for items
    outside the catalogue are kept in the history but contribute no vector or affinity. Safe to
    share between threads (one lock serialises access to the connection) and between processes
    on one file: reads notice another process's commits (SQLite's ``data_version``) and drop the
    cached profiles of the users those commits changed (all of them, and the catalogue, when
    another process changed the catalogue).
    """

    def __init__(
        self,
        path: str | os.PathLike | None = None,
        *,
        item_ids: Iterable[int] | None = None,
        item_vectors: np.ndarray | None = None,
        item_categories: dict[int, list[str]] | None = None,
        half_life_days: float = 30.0,
    ) -> None:
        if not (isinstance(half_life_days, (int, float)) and half_life_days > 0 and math.isfinite(half_life_days)):
            raise ValueError(f"half_life_days={half_life_days!r}: must be a positive number of days")
        self.path = None if path is None else Path(path)
        self.half_life_days = float(half_life_days)
        self._lock = threading.RLock()
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        # Several worker processes share one store: wait for each other's locks (the default 5 s
        # is too short on a loaded machine) instead of failing with "database is locked".
        self._conn = sqlite3.connect(
            ":memory:" if self.path is None else str(self.path), check_same_thread=False, isolation_level=None,
            timeout=60.0,
        )
        if self.path is not None:
            # WAL + NORMAL: each commit is atomic and survives a process kill; flush() checkpoints
            # with fsync for durability against power loss as well.
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.executescript(_SCHEMA)
        self._conn.execute(
            "INSERT OR REPLACE INTO meta(key, value) VALUES ('half_life_days', ?)", (repr(self.half_life_days),)
        )
        self._cache: dict[int, UserProfile] = {}
        self._item_row: dict[int, int] = {}
        self._vectors: np.ndarray | None = None
        self._categories: dict[int, tuple[str, ...]] = {}
        self._catalogue_version = ""
        self._data_version = self._conn.execute("PRAGMA data_version").fetchone()[0]
        self._change_seq = self._change_seq_on_disk()
        self._load_items()
        if item_ids is not None or item_vectors is not None or item_categories is not None:
            self.set_item_vectors(item_ids if item_ids is not None else [], item_vectors, item_categories)

    @classmethod
    def open(cls, path: str | os.PathLike | None) -> "ProfileStore":
        """Reopen a persisted store with its saved catalogue and half-life (``None``: a new in-memory store)."""
        if path is None:
            return cls(None)
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"path={str(path)!r}: no profile store there; create one with ProfileStore(path)")
        half_life = 30.0
        conn = sqlite3.connect(str(path))
        try:
            row = conn.execute("SELECT value FROM meta WHERE key = 'half_life_days'").fetchone()
            half_life = float(row[0]) if row else half_life
        except sqlite3.DatabaseError as exc:
            raise ValueError(f"path={str(path)!r} is not a profile store ({exc})") from exc
        finally:
            conn.close()
        return cls(path, half_life_days=half_life)

    # -- catalogue ---------------------------------------------------------------------------

    def _catalogue_version_on_disk(self) -> str:
        row = self._conn.execute("SELECT value FROM meta WHERE key = 'catalogue_version'").fetchone()
        return row[0] if row else ""

    def _change_seq_on_disk(self) -> int:
        row = self._conn.execute("SELECT value FROM meta WHERE key = 'change_seq'").fetchone()
        return int(row[0]) if row else 0

    def _sync(self) -> None:
        """Catch up with commits of other connections (worker processes sharing the file): drop the
        cached profiles of the users their events or demographics changed, and everything when
        their catalogue upserts changed the item vectors (every profile depends on those).

        Each statement reads its own snapshot, so a commit landing between them makes this drop
        more than needed (the change is read after ``data_version``), never less."""
        version = self._conn.execute("PRAGMA data_version").fetchone()[0]
        if version == self._data_version:
            return
        self._data_version = version
        if self._catalogue_version_on_disk() != self._catalogue_version:
            self._change_seq = self._change_seq_on_disk()
            self._load_items()
            self._cache.clear()
            return
        changed = self._conn.execute("SELECT user_id, seq FROM user_changes WHERE seq > ?", (self._change_seq,)).fetchall()
        for user, seq in changed:
            self._cache.pop(int(user), None)
            self._change_seq = max(self._change_seq, int(seq))

    def _log_changes(self, users: Iterable[int]) -> None:
        """Inside a write transaction: record that ``users`` changed, under the next change number.
        This connection's own cache is kept by its caller; when no other connection wrote since
        our last sync, our change number moves on with it (else ``_sync`` will read both)."""
        users = sorted({int(u) for u in users})
        if not users:
            return
        seq = self._change_seq_on_disk()
        self._conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('change_seq', ?)", (str(seq + 1),))
        self._conn.executemany("INSERT OR REPLACE INTO user_changes(user_id, seq) VALUES (?, ?)",
                               [(u, seq + 1) for u in users])
        if seq == self._change_seq:
            self._change_seq = seq + 1

    def _load_items(self) -> None:
        self._catalogue_version = self._catalogue_version_on_disk()
        rows = self._conn.execute("SELECT item_id, vector, categories FROM items ORDER BY item_id").fetchall()
        self._item_row = {}
        self._categories = {int(i): tuple(json.loads(c)) for i, _, c in rows}
        with_vec = [(int(i), v) for i, v, _ in rows if v is not None]
        if with_vec:
            self._vectors = np.stack([np.frombuffer(v, dtype=np.float32) for _, v in with_vec])
            self._item_row = {i: r for r, (i, _) in enumerate(with_vec)}
        else:
            self._vectors = None

    @property
    def dim(self) -> int | None:
        """Width D of the item (and profile) vectors, or None before any vector is known."""
        return None if self._vectors is None else int(self._vectors.shape[1])

    def set_item_vectors(
        self,
        item_ids: Iterable[int],
        item_vectors: np.ndarray | None,
        item_categories: dict[int, list[str]] | None = None,
        *,
        replace: bool = False,
    ) -> None:
        """Upsert catalogue features: ``item_vectors`` (N, D) for ``item_ids`` (N,) and categories.

        ``replace=True`` drops the previous catalogue first (needed to change the width D, e.g.
        after retraining the aligned model); otherwise D must match the stored vectors.
        """
        ids = [int(i) for i in item_ids]
        vecs = None
        if item_vectors is not None:
            vecs = np.asarray(item_vectors, dtype=np.float32)
            if vecs.ndim != 2 or vecs.shape[0] != len(ids):
                raise EmbeddingDimensionError(
                    f"item_vectors has shape {vecs.shape}: expected (N, D) with N = len(item_ids) = {len(ids)}"
                )
            if not np.isfinite(vecs).all():
                raise ValueError("item_vectors contains NaN or inf")
            if not replace and self._vectors is not None and vecs.shape[1] != self._vectors.shape[1]:
                raise EmbeddingDimensionError(
                    f"item_vectors width {vecs.shape[1]} differs from the stored catalogue width "
                    f"{self._vectors.shape[1]}; pass replace=True to swap the whole catalogue"
                )
            norms = np.linalg.norm(vecs, axis=1, keepdims=True)
            vecs = vecs / np.where(norms > 0, norms, 1.0)
        elif ids and item_categories is None:
            raise ValueError("set_item_vectors: give item_vectors and/or item_categories for item_ids")
        if len(set(ids)) != len(ids):
            raise ValueError("item_ids contains duplicates")
        cats = {int(i): c for i, c in (item_categories or {}).items()}
        # Items given without categories keep the ones stored before.
        cat_rows = {i: sorted(map(str, cats.get(i, self._categories.get(i, ())))) for i in ids}
        cat_rows.update({i: sorted(map(str, c)) for i, c in cats.items()})
        with self._lock:
            with self._transaction():
                if replace:
                    self._conn.execute("DELETE FROM items")
                self._conn.executemany(
                    "INSERT INTO items(item_id, vector, categories) VALUES (?, NULL, ?) "
                    "ON CONFLICT(item_id) DO UPDATE SET categories = excluded.categories",
                    [(i, json.dumps(c)) for i, c in cat_rows.items()],
                )
                if vecs is not None:
                    self._conn.executemany(
                        "UPDATE items SET vector = ? WHERE item_id = ?", [(vecs[r].tobytes(), i) for r, i in enumerate(ids)]
                    )
                self._conn.execute(
                    "INSERT INTO meta(key, value) VALUES ('catalogue_version', '1') "
                    "ON CONFLICT(key) DO UPDATE SET value = CAST(value AS INTEGER) + 1"
                )
            self._load_items()
            self._cache.clear()

    # -- events ------------------------------------------------------------------------------

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def apply(self, interactions: Sequence[Interaction]) -> ApplyResult:
        """Apply a batch in one transaction; events whose id was applied before are ignored."""
        batch: dict[str, Interaction] = {}
        for it in interactions:
            if not isinstance(it, Interaction):
                raise TypeError(f"apply() takes Interaction objects, got {type(it).__name__}")
            batch.setdefault(it.event_id, it)
        repeats = len(interactions) - len(batch)
        with self._lock:
            self._sync()
            with self._transaction():
                ids = list(batch)
                seen: set[str] = set()
                for start in range(0, len(ids), _IN_CHUNK):
                    chunk = ids[start : start + _IN_CHUNK]
                    marks = ",".join("?" * len(chunk))
                    seen.update(r[0] for r in self._conn.execute(f"SELECT event_id FROM events WHERE event_id IN ({marks})", chunk))
                new = [it for eid, it in batch.items() if eid not in seen]
                self._conn.executemany(
                    "INSERT INTO events(event_id, user_id, item_id, kind, value, ts) VALUES (?, ?, ?, ?, ?, ?)",
                    [(it.event_id, int(it.user_id), int(it.item_id), it.kind,
                      None if it.value is None else float(it.value), float(it.timestamp)) for it in new],
                )
                self._log_changes(it.user_id for it in new)
            for it in new:
                self._cache.pop(int(it.user_id), None)
        # With no catalogue at all there is nothing to check item ids against.
        unknown = sum(1 for it in new if int(it.item_id) not in self._categories) if self._categories else 0
        return ApplyResult(applied=len(new), duplicates=repeats + len(seen), unknown_items=unknown)

    def set_demographics(self, user_id: int, demographics: dict) -> None:
        """Replace a user's demographics (JSON-serialisable dict, e.g. age, sex, occupation)."""
        if not isinstance(demographics, dict):
            raise TypeError(f"demographics must be a dict, got {type(demographics).__name__}")
        try:
            data = json.dumps(demographics, sort_keys=True)
        except TypeError as exc:
            raise ValueError(f"demographics for user {user_id} is not JSON-serialisable: {exc}") from exc
        with self._lock:
            with self._transaction():
                self._conn.execute("INSERT OR REPLACE INTO demographics(user_id, data) VALUES (?, ?)", (int(user_id), data))
                self._log_changes([user_id])
            self._cache.pop(int(user_id), None)

    def set_demographics_many(self, demographics: dict[int, dict]) -> None:
        """Bulk form of :meth:`set_demographics` in one transaction."""
        rows = [(int(u), json.dumps(d, sort_keys=True)) for u, d in demographics.items()]
        with self._lock:
            with self._transaction():
                self._conn.executemany("INSERT OR REPLACE INTO demographics(user_id, data) VALUES (?, ?)", rows)
                self._log_changes(u for u, _ in rows)
            for u, _ in rows:
                self._cache.pop(u, None)

    # -- reading -----------------------------------------------------------------------------

    def get(self, user_id: int) -> UserProfile | None:
        """The user's current profile, or None if the store knows nothing about them."""
        user_id = int(user_id)
        with self._lock:
            self._sync()
            cached = self._cache.get(user_id)
            if cached is not None:
                return cached
            rows = self._conn.execute(
                "SELECT item_id, kind, value, ts FROM events WHERE user_id = ? ORDER BY ts, event_id", (user_id,)
            ).fetchall()
            demo = self._conn.execute("SELECT data FROM demographics WHERE user_id = ?", (user_id,)).fetchone()
            if not rows and demo is None:
                return None
            profile = self._build(user_id, rows, json.loads(demo[0]) if demo else {})
            self._cache[user_id] = profile
            return profile

    def _build(self, user_id: int, rows: list[tuple], demographics: dict) -> UserProfile:
        history = tuple((int(i), k, v, float(t)) for i, k, v, t in rows)
        vector = None
        affinity: dict[str, float] = {}
        if history:
            weights = event_weights([h[1] for h in history], [h[2] for h in history],
                                    np.array([h[3] for h in history]), self.half_life_days)
            if self._vectors is not None:
                pos = np.array([self._item_row.get(h[0], -1) for h in history])
                keep = (pos >= 0) & (weights > 0)
                if keep.any():
                    v = weights[keep] @ self._vectors[pos[keep]].astype(np.float64)
                    norm = np.linalg.norm(v)
                    vector = (v / norm).astype(np.float32) if norm > 0 else None
            totals: dict[str, float] = {}
            for (item, *_), w in zip(history, weights):
                for cat in self._categories.get(item, ()):
                    totals[cat] = totals.get(cat, 0.0) + float(w)
            total = sum(totals.values())
            if total > 0:
                affinity = {c: w / total for c, w in sorted(totals.items())}
        return UserProfile(user_id, demographics, history, vector, affinity, len(history))

    def user_version(self, user_id: int) -> int:
        """A number that changes exactly when the user's history does: the count of the user's
        applied events (events are only ever added, so it only grows). 0 for an unknown user.
        Caches of per-user outputs (creatives) key on it."""
        with self._lock:
            self._sync()
            row = self._conn.execute("SELECT COUNT(*) FROM events WHERE user_id = ?", (int(user_id),)).fetchone()
        return int(row[0])

    def users(self) -> list[int]:
        """Ids of every user with events or demographics, ascending."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT user_id FROM events UNION SELECT user_id FROM demographics ORDER BY user_id"
            ).fetchall()
        return [int(r[0]) for r in rows]

    def n_events(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM events").fetchone()[0])

    def flush(self) -> None:
        """Make everything applied so far durable: checkpoint the WAL into the database with fsync."""
        if self.path is None:
            return
        with self._lock:
            self._conn.execute("PRAGMA wal_checkpoint(FULL)")

    def fingerprint(self) -> str:
        """SHA-256 over every profile's content (demographics, history, vector, affinities)."""
        h = hashlib.sha256()
        for user in self.users():
            p = self.get(user)
            h.update(json.dumps([p.user_id, p.demographics, p.history, p.category_affinity], sort_keys=True).encode())
            h.update(b"-" if p.vector is None else p.vector.tobytes())
        return h.hexdigest()

    def backup(self, path: str | os.PathLike) -> None:
        """Write a consistent snapshot of the whole store to a new SQLite file at ``path``."""
        dst = sqlite3.connect(str(path))
        try:
            with self._lock:
                self._conn.backup(dst)
        finally:
            dst.close()

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> "ProfileStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def interactions_from_ratings(ratings, *, source: str = "ratings") -> list[Interaction]:
    """Turn a ratings frame (user_id, item_id, rating, timestamp) into ``rating`` interactions.

    Event ids are ``{source}:{user}:{item}:{timestamp}``, so replaying the same log is idempotent.
    """
    cols = [ratings[c].to_list() for c in ("user_id", "item_id", "rating", "timestamp")]
    return [
        Interaction(f"{source}:{u}:{i}:{t}", int(u), int(i), "rating", float(t), float(r))
        for u, i, r, t in zip(*cols)
    ]
