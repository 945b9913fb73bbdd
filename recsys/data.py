"""Interaction data for the ranking engine: catalogue, users, chronological splits, item features."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import polars as pl
import scipy.sparse as sp

from crossrec_core.errors import CrossrecError, EmbeddingDimensionError
from crossrec_core.paths import cache_dir as default_cache_dir

__all__ = [
    "Catalogue",
    "UserTable",
    "Split",
    "ItemFeatures",
    "AGE_BUCKETS",
    "LOG_COLUMNS",
    "chronological_split",
    "user_item_matrix",
    "catalogue_from_dataset",
    "users_from_dataset",
    "log_from_dataset",
    "load_item_features",
    "check_log",
    "ItemTrend",
]

LOG_COLUMNS = ("user_id", "item_id", "rating", "timestamp")
AGE_BUCKETS = (18, 25, 35, 45, 50, 56)  # MovieLens-1M style bucket edges


def _lookup(sorted_keys: np.ndarray, values: np.ndarray, keys: Sequence[int] | np.ndarray) -> np.ndarray:
    """(n,) ``values[j]`` where ``sorted_keys[j] == keys[i]``, else -1 (``sorted_keys`` ascending, unique)."""
    keys = np.asarray(keys)
    if keys.size == 0 or len(sorted_keys) == 0:
        return np.full(keys.size, -1, np.int64)
    keys = keys.astype(np.int64, copy=False).reshape(-1)
    at = np.minimum(np.searchsorted(sorted_keys, keys), len(sorted_keys) - 1)
    return np.where(sorted_keys[at] == keys, values[at], -1).astype(np.int64, copy=False)


@dataclass(frozen=True)
class Catalogue:
    """The items that can be recommended: ids (N,), genre flags (N, G), titles (N,)."""

    item_ids: np.ndarray
    genres: np.ndarray
    genre_names: tuple[str, ...]
    titles: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(self.item_ids) == 0:
            raise CrossrecError("the catalogue is empty: nothing can be recommended")
        if self.genres.shape != (len(self.item_ids), len(self.genre_names)):
            raise EmbeddingDimensionError(
                f"genres has shape {self.genres.shape}: expected ({len(self.item_ids)}, {len(self.genre_names)})"
            )
        order = np.argsort(self.item_ids, kind="stable")
        object.__setattr__(self, "_sorted", (np.asarray(self.item_ids, np.int64)[order], order.astype(np.int64)))

    def __len__(self) -> int:
        return len(self.item_ids)

    def positions(self, item_ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """(n,) catalogue row of each id, -1 where the id is not in the catalogue (vectorised: a
        log of millions of events is mapped in one call)."""
        return _lookup(*self._sorted, item_ids)

    def categories(self) -> dict[int, list[str]]:
        return {int(i): [g for g, on in zip(self.genre_names, row) if on] for i, row in zip(self.item_ids, self.genres)}


@dataclass(frozen=True)
class UserTable:
    """Known users' demographics as small categorical codes, for the ranker's sparse features."""

    demographics: dict[int, dict]  # user_id -> {"age": 24, "sex": "M", "occupation": "technician"}
    occupations: tuple[str, ...]

    def codes(self, demographics: dict) -> tuple[int, int, int]:
        """(age bucket, sex, occupation) codes; 0 means unknown."""
        age = demographics.get("age")
        age_code = 0 if age is None else 1 + int(np.searchsorted(AGE_BUCKETS, age, side="right"))
        sex_code = {"M": 1, "F": 2}.get(demographics.get("sex"), 0)
        occ = demographics.get("occupation")
        occ_code = self.occupations.index(occ) + 1 if occ in self.occupations else 0
        return age_code, sex_code, occ_code


@dataclass(frozen=True)
class Split:
    """Per-user chronological split of an interaction log (frames with ``LOG_COLUMNS``)."""

    train: pl.DataFrame
    val: pl.DataFrame
    test: pl.DataFrame


@dataclass(frozen=True)
class ItemFeatures:
    """Aligned multimodal item embeddings, rows in catalogue order: image/text/fused (N, D)."""

    item_ids: np.ndarray
    image: np.ndarray
    text: np.ndarray
    fused: np.ndarray
    image_ok: np.ndarray  # (N,) bool, False where the poster was missing or did not decode
    fingerprint: str

    @property
    def dim(self) -> int:
        return int(self.fused.shape[1])


def check_log(log: pl.DataFrame, name: str = "interactions") -> pl.DataFrame:
    """``log`` with ``LOG_COLUMNS`` (and ``positive``, the evaluation's relevance flag, when present)."""
    missing = [c for c in LOG_COLUMNS if c not in log.columns]
    if missing:
        raise ValueError(f"{name} lacks columns {missing}; expected {LOG_COLUMNS}")
    return log.select([*LOG_COLUMNS, *(["positive"] if "positive" in log.columns else [])])


def chronological_split(log: pl.DataFrame, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)) -> Split:
    """Split each user's events by time: the first 80% train, the next 10% val, the last 10% test.

    Ties in timestamp are broken by item id so the split is deterministic.
    """
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-9:
        raise ValueError(f"fractions={fractions!r}: need three non-negative numbers summing to 1")
    log = check_log(log).sort(["user_id", "timestamp", "item_id"])
    ranked = log.with_columns(
        pl.int_range(pl.len()).over("user_id").alias("_rank"), pl.len().over("user_id").alias("_n")
    )
    train_end = (pl.col("_n") * fractions[0]).round().cast(pl.Int64)
    val_end = (pl.col("_n") * (fractions[0] + fractions[1])).round().cast(pl.Int64)
    part = lambda cond: ranked.filter(cond).drop("_rank", "_n")  # noqa: E731
    return Split(
        train=part(pl.col("_rank") < train_end),
        val=part((pl.col("_rank") >= train_end) & (pl.col("_rank") < val_end)),
        test=part(pl.col("_rank") >= val_end),
    )


def user_item_matrix(log: pl.DataFrame, user_rows: dict[int, int], catalogue: Catalogue,
                     weight: str | None = None) -> sp.csr_matrix:
    """(U, N) CSR of interactions (1, or the ``weight`` column) over known users and catalogue items."""
    keys = np.fromiter(user_rows, np.int64, len(user_rows))
    order = np.argsort(keys)
    rows = np.fromiter(user_rows.values(), np.int64, len(user_rows))[order]
    users = _lookup(keys[order], rows, log["user_id"].to_numpy())
    items = catalogue.positions(log["item_id"].to_numpy())
    keep = (users >= 0) & (items >= 0)
    vals = np.ones(int(keep.sum()), np.float32) if weight is None else log[weight].to_numpy()[keep].astype(np.float32)
    mat = sp.csr_matrix((vals, (users[keep], items[keep])), shape=(len(user_rows), len(catalogue)))
    mat.sum_duplicates()
    return mat


def catalogue_from_dataset(ds: Any, items: Any = None) -> Catalogue:
    """The catalogue of a ``crossrec_datasets.Dataset`` (``open_dataset("ml100k")`` or a folder)
    with int64 ids from ``items`` (default: its own IdMap); genres are the data set's multi-hot
    ``genre_columns``, else one flag per category."""
    items = ds.items if items is None else items
    cat = ds.catalogue().with_columns(items.to_internal("item_id").alias("_id")).collect()
    if ds.genre_columns:
        names = tuple(ds.genre_columns)
        genres = cat.select(names).to_numpy().astype(bool)
    else:
        category = cat["category"].fill_null("").to_list()
        names = tuple(sorted(set(category) - {""})) or ("none",)
        genres = np.array([[c == g for g in names] for c in category], dtype=bool).reshape(len(category), len(names))
    return Catalogue(item_ids=cat["_id"].to_numpy().astype(np.int64), genres=genres, genre_names=names,
                     titles=tuple(cat["title"].fill_null("").to_list()))


def users_from_dataset(ds: Any, users: Any = None) -> UserTable:
    """Demographics (``age``, ``sex``, ``occupation`` where the users table has them) by int64 user
    id (``users``: default the data set's own IdMap)."""
    users = ds.users_map if users is None else users
    frame = ds.users()
    if frame is None:
        return UserTable({}, ())
    frame = frame.with_columns(users.to_internal("user_id").alias("_id")).collect()
    cols = [c for c in ("age", "sex", "occupation") if c in frame.columns]
    if "age" in cols:
        frame = frame.with_columns(pl.col("age").cast(pl.Int64, strict=False))
    demo = {int(r["_id"]): {c: r[c] for c in cols if r[c] is not None} for r in frame.iter_rows(named=True)}
    occupations = tuple(sorted(frame["occupation"].drop_nulls().cast(pl.Utf8).unique().to_list())) if "occupation" in cols else ()
    return UserTable(demographics=demo, occupations=occupations)


def log_from_dataset(ds: Any, items: Any, users: Any) -> pl.DataFrame:
    """The engine's log (``LOG_COLUMNS`` + ``positive``) from a data set's interactions, int64 ids.

    ``rating`` is the rating for rating events; for the other kinds it is the value whose profile
    weight equals the kind's (``KIND_WEIGHTS``), so implicit events weigh in profiles as they would
    streamed. Events for unknown items, of unknown kinds or without a timestamp are skipped.
    """
    from recsys.profiles import KIND_WEIGHTS

    scale = {k: 5.0 * w / KIND_WEIGHTS["rating"] for k, w in KIND_WEIGHTS.items() if k != "rating"}
    frame = ds.interactions().filter(pl.col("kind").is_in(list(KIND_WEIGHTS)) & pl.col("timestamp").is_not_null()
                                     & (pl.col("timestamp") >= 0))
    frame = frame.filter((pl.col("kind") != "rating") | pl.col("value").is_not_null())
    out = frame.select(
        users.to_internal("user_id").alias("user_id"), items.to_internal("item_id").alias("item_id"),
        pl.when(pl.col("kind") == "rating").then(pl.col("value"))
        .otherwise(pl.col("kind").replace_strict(scale, default=None, return_dtype=pl.Float64)).alias("rating"),
        pl.col("timestamp").cast(pl.Int64), ds.positives.expr().fill_null(False).alias("positive"),
    ).collect()
    return out.drop_nulls(["user_id", "item_id"])


def _cache_file(cache_dir: Path, fingerprint: str, texts: list[str], images: list[Any]) -> Path:
    key = hashlib.sha256(repr((fingerprint, texts, [str(i) for i in images])).encode()).hexdigest()[:20]
    return cache_dir / f"item_features-{key}.npz"


def load_item_features(
    item_ids: Sequence[int],
    texts: list[str],
    images: list[Any],
    embedder: Any,
    cache_dir: str | os.PathLike | None = None,
) -> ItemFeatures:
    """Embed items with an aligned ``retrieval`` item embedder (``retrieval.load_item_embedder``),
    cached by its fingerprint under ``cache_dir`` (default ``$CROSSREC_HOME/cache/recsys``).

    Any object with ``embed(texts, images)`` returning image/text/fused/image_ok and a
    ``fingerprint`` works.
    """
    if not (len(item_ids) == len(texts) == len(images)):
        raise ValueError(f"item_ids, texts and images differ in length: {len(item_ids)}, {len(texts)}, {len(images)}")
    cache = _cache_file(Path(cache_dir) if cache_dir else default_cache_dir("recsys"), embedder.fingerprint, list(texts), list(images))
    if cache.is_file():
        z = np.load(cache)
        return ItemFeatures(np.asarray(item_ids, np.int64), z["image"], z["text"], z["fused"], z["image_ok"],
                            embedder.fingerprint)
    emb = embedder.embed(list(texts), list(images))
    feats = ItemFeatures(
        item_ids=np.asarray(item_ids, np.int64),
        image=np.asarray(emb.image, np.float32),
        text=np.asarray(emb.text, np.float32),
        fused=np.asarray(emb.fused, np.float32),
        image_ok=np.asarray(emb.image_ok, bool),
        fingerprint=embedder.fingerprint,
    )
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp.npz")
    np.savez(tmp, image=feats.image, text=feats.text, fused=feats.fused, image_ok=feats.image_ok)
    os.replace(tmp, cache)
    return feats


@dataclass(frozen=True)
class ItemTrend:
    """How much each item was consumed in the ``window_days`` before a given time (from a fitted log).

    ``cumulative`` (n_days + 1, N): interactions per catalogue item up to the end of each day since
    ``start`` (unix seconds). Only events before the asked time count, so a user's trend feature
    never sees the future.
    """

    start: float
    cumulative: np.ndarray
    window_days: float = 30.0

    @classmethod
    def fit(cls, log: pl.DataFrame, catalogue: Catalogue, window_days: float = 30.0) -> "ItemTrend":
        pos = catalogue.positions(log["item_id"].to_numpy())
        ts = log["timestamp"].to_numpy().astype(np.float64)
        keep = pos >= 0
        start = float(ts.min()) if len(ts) else 0.0
        days = ((ts[keep] - start) // 86_400).astype(np.int64)
        n_days = int(days.max()) + 1 if len(days) else 1
        counts = np.zeros((n_days + 1, len(catalogue)), np.int32)
        np.add.at(counts, (days + 1, pos[keep]), 1)
        return cls(start, np.cumsum(counts, axis=0, dtype=np.int32), window_days)

    def at(self, times: np.ndarray) -> np.ndarray:
        """(B, N) log-counts in the window before each of ``times`` (B,), scaled to [0, 1] per row."""
        last = len(self.cumulative) - 1
        end = np.clip(((np.asarray(times, np.float64) - self.start) // 86_400).astype(np.int64) + 1, 0, last)
        begin = np.clip(end - int(self.window_days), 0, last)
        counts = np.log1p((self.cumulative[end] - self.cumulative[begin]).astype(np.float32))
        return counts / np.maximum(counts.max(axis=1, keepdims=True), 1.0)
