"""Vector index: the ``VectorIndex`` role and its FAISS implementation ``FaissIndex``.

Similarity is cosine: vectors and queries are L2-normalised (on copies) and searched by inner
product. Three index types (``IndexConfig.index_type``):

- ``flat``: exact search (``IndexFlatIP``).
- ``ivf``: IVF-Flat (``IndexIVFFlat``), trained on the first ``add`` (k-means on a sample of at
  most ``50 * nlist`` vectors); ``nprobe`` is auto-tuned. IVF-Flat rather than IVF-PQ: PQ codes
  cost recall that the 0.95 target cannot spare without a re-ranking stage.
- ``hnsw``: ``IndexHNSWFlat`` (graph of ``hnsw_m`` links per node); ``efSearch`` is auto-tuned.

Ids. FAISS keeps vectors under internal sequential labels; the index maps them to arbitrary int64
ids (``-1`` is reserved: it pads results). Removing or replacing (upsert) an id tombstones its
label. Searches skip tombstones with an ``IDSelectorBitmap``, and once tombstones exceed
``max_dead_fraction`` of the labels the index is compacted: live vectors are reconstructed and
re-added. One mechanism serves the three types, HNSW included, which cannot remove natively.
Flat compacts at once by default: the copy is cheap at the sizes Flat is chosen for, while a
selector takes Flat search off its BLAS path (about 3x slower, measured at 100k vectors).

Auto-tuning. The first ``add`` into an empty IVF/HNSW index (of at least ``MIN_TUNE_SIZE``
vectors) holds 200 of its vectors out, builds on the rest, picks the smallest ``nprobe`` /
``efSearch`` whose recall@10 on the held-out vectors against exact search reaches
``recall_target``, then adds the held-out ones. Held out, they are unseen queries from the data
itself; an indexed vector would be an easy query for HNSW, whose graph links it to its
neighbours. ``tune(queries)`` re-tunes on real queries.

GPU. With ``use_gpu`` not False and ``faiss.get_num_gpus() > 0``, Flat and IVF searches run on a
replica made by ``faiss.index_cpu_to_all_gpus``; HNSW stays on CPU. Updates go to the CPU index,
which stays the one saved; the replica is rebuilt (after a compaction, as GPU searches take no
selector) at the next search, so the GPU path suits read-heavy serving with batched updates.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from tqdm.auto import tqdm

from crossrec_core.errors import EmbeddingDimensionError, IncompatibleIndexError, ModelLoadError, UnknownIdError
from crossrec_core.persist import atomic_directory, atomic_write_text, load_config, save_config

__all__ = [
    "INDEX_TYPES",
    "MIN_TUNE_SIZE",
    "IndexConfig",
    "SearchResult",
    "VectorIndex",
    "FaissIndex",
    "create_index",
    "choose_index_type",
    "FLAT_MAX_SIZE",
    "HNSW_MAX_SIZE",
    "recall_at_k",
]

logger = logging.getLogger(__name__)

INDEX_TYPES = ("flat", "ivf", "hnsw")
MIN_TUNE_SIZE = 1000  # below this a tuning sample says little; the configured values are kept
_KIND = "FaissIndex"
_INDEX_FILE, _IDS_FILE, _META_FILE, _CHECKSUMS_FILE = "index.faiss", "ids.npy", "metadata.json", "checksums.json"
_TRAIN_POINTS_PER_LIST = 50  # k-means sample per IVF list: faiss warns under 39, gains little over 50
_MIN_POINTS_PER_LIST = 39
_ADD_CHUNK = 65_536  # add in chunks so that long builds show progress
_TUNE_QUERIES = 200
FLAT_MAX_SIZE = 50_000  # auto choice thresholds: see choose_index_type
HNSW_MAX_SIZE = 500_000


def _check_count(value: Any, name: str, low: int = 1) -> int:
    """``value`` as an int >= ``low`` (numpy ints accepted, bools refused)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name}={value!r} is not allowed; expected an int >= {low}")
    return int(value)


@dataclass(frozen=True)
class IndexConfig:
    """Configuration of a ``FaissIndex``, saved as ``config.json`` beside the index.

    ``fingerprint`` names the embedding model that produced the vectors; loading checks it.
    ``nlist`` 0 means "choose at training": ``4 * sqrt(n)`` rounded up to a power of two, capped so
    that each list gets at least 39 training vectors. ``max_dead_fraction`` None means 0 for flat
    and 0.2 for ivf/hnsw (see the module docstring). ``tuned_recall`` is the recall@k measured by
    the last tuning (None if never tuned).
    """

    dim: int
    index_type: str = "flat"
    metric: str = "cosine"
    fingerprint: str = ""
    nlist: int = 0
    nprobe: int = 8
    hnsw_m: int = 32
    ef_construction: int = 80
    ef_search: int = 64
    recall_target: float = 0.95
    max_dead_fraction: float | None = None
    tuned_recall: float | None = None

    def __post_init__(self) -> None:
        for name, low in (("dim", 1), ("nlist", 0), ("nprobe", 1), ("hnsw_m", 2), ("ef_construction", 1), ("ef_search", 1)):
            object.__setattr__(self, name, _check_count(getattr(self, name), name, low))  # numpy ints -> int (JSON)
        if self.index_type not in INDEX_TYPES:
            raise ValueError(f"index_type={self.index_type!r} is not allowed; expected one of {INDEX_TYPES}")
        if self.metric != "cosine":
            raise ValueError(f"metric={self.metric!r} is not allowed; only 'cosine' is supported")
        if not isinstance(self.fingerprint, str):
            raise ValueError(f"fingerprint={self.fingerprint!r} is not allowed; expected a str")
        if not 0.0 < self.recall_target <= 1.0:
            raise ValueError(f"recall_target={self.recall_target!r} is not allowed; expected 0 < recall_target <= 1")
        if self.max_dead_fraction is not None and not 0.0 <= self.max_dead_fraction < 1.0:
            raise ValueError(f"max_dead_fraction={self.max_dead_fraction!r} is not allowed; expected None or 0 <= x < 1")

    @property
    def dead_fraction_limit(self) -> float:
        """Tombstone share that triggers a compaction (resolves the None default)."""
        if self.max_dead_fraction is not None:
            return self.max_dead_fraction
        return 0.0 if self.index_type == "flat" else 0.2


@dataclass(frozen=True, eq=False)  # arrays: identity equality, not an ambiguous elementwise ==
class SearchResult:
    """Hits of a batch of queries, best first.

    ``ids`` ``(Q, k)`` int64, ``-1`` where there is no hit (an approximate index may find fewer
    than ``k``); ``scores`` ``(Q, k)`` float32 cosine similarities, ``-inf`` where ``ids`` is -1.
    """

    ids: np.ndarray
    scores: np.ndarray
    _metadata: Mapping[int, dict] = field(default_factory=dict, repr=False, compare=False)

    def hit_metadata(self) -> list[list[dict | None]]:
        """Metadata of each hit, ``(Q, k)`` nested lists; None for padding or hits without any.

        Looked up when called: an id updated since the search shows its new metadata.
        """
        return [[self._metadata.get(i) if i != -1 else None for i in row] for row in self.ids.tolist()]


class VectorIndex(ABC):
    """An updatable nearest-neighbour index over int64 ids, persisted as one directory."""

    @abstractmethod
    def add(self, ids: np.ndarray, vectors: np.ndarray, metadata: Sequence[dict | None] | None = None) -> None:
        """Insert or replace (upsert) ``ids`` ``(N,)`` with ``vectors`` ``(N, D)`` and optional metadata."""

    @abstractmethod
    def remove(self, ids: np.ndarray, *, missing_ok: bool = False) -> int:
        """Remove ``ids`` ``(N,)``; return how many were present."""

    @abstractmethod
    def search(self, queries: np.ndarray, k: int) -> SearchResult:
        """The ``k`` nearest ids of each query ``(Q, D)``."""

    @abstractmethod
    def save(self, path: str | os.PathLike) -> None:
        """Write the index as one directory, atomically."""

    @classmethod
    @abstractmethod
    def load(cls, path: str | os.PathLike, expected_fingerprint: str | None = None) -> VectorIndex:
        """Read a directory written by ``save``; check it was built by ``expected_fingerprint``."""

    @abstractmethod
    def ids(self) -> np.ndarray:
        """Ids present, ``(N,)`` int64, in insertion order."""

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def __contains__(self, item: object) -> bool: ...


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean share of the valid (not -1) ids of each ``truth`` row ``(Q, k)`` present in ``found`` ``(Q, k')``."""
    found, truth = np.asarray(found), np.asarray(truth)
    hits = (found[:, :, None] == truth[:, None, :]) & (truth[:, None, :] != -1)
    valid = (truth != -1).sum()
    return float(hits.any(axis=1).sum() / valid) if valid else 1.0


def _check_ids(ids: Any, name: str = "ids") -> np.ndarray:
    arr = np.asarray(ids)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D (N,), got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{name} must hold integers (int64), got dtype {arr.dtype}")
    arr = arr.astype(np.int64, copy=False)
    if (arr == -1).any():
        raise ValueError(f"{name} contains -1, which is reserved to pad search results")
    return arr


def _check_vectors(vectors: Any, dim: int, name: str) -> np.ndarray:
    """Validate ``(N, dim)`` finite non-zero float vectors; return an L2-normalised float32 copy."""
    import faiss

    arr = np.asarray(vectors)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (N, D), got shape {arr.shape}; use x[None, :] for one vector")
    if not np.issubdtype(arr.dtype, np.floating):
        raise TypeError(f"{name} must be floating point (float32), got dtype {arr.dtype}")
    if arr.shape[1] != dim:
        raise EmbeddingDimensionError(f"{name} has width {arr.shape[1]}, but this index holds dim={dim} vectors")
    out = np.array(arr, dtype=np.float32, order="C", copy=True)
    bad = np.flatnonzero(~np.isfinite(out).all(axis=1))
    if bad.size:
        raise ValueError(f"{name} rows {bad[:10].tolist()} hold NaN or inf")
    zero = np.flatnonzero(~out.any(axis=1))
    if zero.size:
        raise ValueError(f"{name} rows {zero[:10].tolist()} are all zero; a cosine index cannot normalise them")
    faiss.normalize_L2(out)
    return out


def _check_metadata(metadata: Sequence[dict | None] | None, n: int) -> list[dict | None] | None:
    if metadata is None:
        return None
    if isinstance(metadata, dict) or len(metadata) != n:
        raise ValueError(f"metadata must be a list of {n} dicts (or None entries), one per id; got {type(metadata).__name__}")
    for i, entry in enumerate(metadata):
        if entry is None:
            continue
        if not isinstance(entry, dict) or not all(isinstance(key, str) for key in entry):
            raise TypeError(f"metadata[{i}] must be a dict with str keys or None, got {entry!r:.80}")
        try:
            json.dumps(entry, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"metadata[{i}] is not JSON-serialisable ({exc}); it is saved as JSON") from exc
    return list(metadata)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 23), b""):
            digest.update(block)
    return digest.hexdigest()


def _gpu_count() -> int:
    import faiss

    get = getattr(faiss, "get_num_gpus", None)  # absent from some CPU builds
    return get() if get is not None else 0


class FaissIndex(VectorIndex):
    """``VectorIndex`` on FAISS (flat / ivf / hnsw); build one with ``create_index``."""

    def __init__(self, config: IndexConfig, *, use_gpu: bool | None = None):
        if use_gpu and _gpu_count() == 0:
            raise ValueError("use_gpu=True, but faiss sees no GPU (faiss.get_num_gpus() == 0); pass None or False")
        self._config = config
        self._use_gpu = use_gpu is not False and config.index_type != "hnsw" and _gpu_count() > 0
        self._cpu = self._new_faiss_index()
        self._labels = np.empty(0, dtype=np.int64)  # label -> id, -1 for a tombstone
        self._pos: dict[int, int] = {}  # id -> label
        self._meta: dict[int, dict] = {}
        self._n_dead = 0
        self._gpu = None  # search replica, None when stale
        self._bitmap: np.ndarray | None = None  # live-label bitmap behind _selector
        self._selector = None

    # -- accessors -------------------------------------------------------------------------

    @property
    def config(self) -> IndexConfig:
        return self._config

    @property
    def dim(self) -> int:
        return self._config.dim

    @property
    def fingerprint(self) -> str:
        return self._config.fingerprint

    @property
    def on_gpu(self) -> bool:
        """Whether searches run on a GPU replica."""
        return self._use_gpu

    def __len__(self) -> int:
        return len(self._pos)

    def __contains__(self, item: object) -> bool:
        return isinstance(item, (int, np.integer)) and int(item) in self._pos

    def ids(self) -> np.ndarray:
        return self._labels[self._labels != -1]

    def __repr__(self) -> str:
        c = self._config
        return f"FaissIndex(type={c.index_type!r}, dim={c.dim}, size={len(self)}, fingerprint={c.fingerprint!r})"

    # -- updates ---------------------------------------------------------------------------

    def add(self, ids: np.ndarray, vectors: np.ndarray, metadata: Sequence[dict | None] | None = None) -> None:
        """Upsert: ids ``(N,)`` int64, vectors ``(N, D)`` float, metadata a list of N dicts/None.

        An id already present is replaced, vector and metadata (None drops its metadata). An
        untrained IVF index is trained on this batch; the first IVF/HNSW build is auto-tuned.
        """
        ids = _check_ids(ids)
        vectors = _check_vectors(vectors, self.dim, "vectors")
        if len(vectors) != len(ids):
            raise ValueError(f"ids has {len(ids)} entries but vectors has {len(vectors)} rows; they must match")
        uniq, counts = np.unique(ids, return_counts=True)
        if (counts > 1).any():
            raise ValueError(f"ids repeats {uniq[counts > 1][:10].tolist()} within one add() call; pass each id once")
        metadata = _check_metadata(metadata, len(ids))
        if len(ids) == 0:
            return
        first_build = self._cpu.ntotal == 0 and self._config.index_type != "flat" and len(ids) >= MIN_TUNE_SIZE
        if not self._cpu.is_trained:
            self._train(vectors)
        id_list = ids.tolist()
        self._tombstone([self._pos[i] for i in id_list if i in self._pos])
        if first_build:
            # Tune on a random sample held out of the build: unseen queries drawn from the data
            # itself (an indexed vector is an easy query for HNSW, whose graph links it to its
            # neighbours). The sample is swapped to the end of our own copy, to add it last.
            n, t = len(ids), _TUNE_QUERIES
            held, tail = np.random.default_rng(0).choice(n, t, replace=False), np.arange(n - t, n)
            a, b = np.setdiff1d(held, tail), np.setdiff1d(tail, held)
            ids = ids.copy()
            vectors[a], vectors[b], ids[a], ids[b] = vectors[b], vectors[a], ids[b], ids[a]
            self._append(ids[:-t], vectors[:-t])
            self._tune(vectors[-t:], vectors[:-t], np.arange(n - t), k=10)
            self._append(ids[-t:], vectors[-t:])
        else:
            self._append(ids, vectors)
        for i, entry in zip(id_list, metadata if metadata is not None else [None] * len(ids)):
            if entry is None:
                self._meta.pop(i, None)
            else:
                self._meta[i] = entry

    def _append(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add new labels for ``ids`` ``(N,)`` (none present) with normalised ``vectors`` ``(N, D)``."""
        first = self._cpu.ntotal
        self._add_to_faiss(vectors)
        self._labels = np.concatenate([self._labels, ids])
        self._pos.update(zip(ids.tolist(), range(first, first + len(ids))))
        self._changed()

    def remove(self, ids: np.ndarray, *, missing_ok: bool = False) -> int:
        """Remove ids ``(N,)``; unknown ids raise ``UnknownIdError`` unless ``missing_ok``."""
        id_list = np.unique(_check_ids(ids)).tolist()
        unknown = [i for i in id_list if i not in self._pos]
        if unknown and not missing_ok:
            raise UnknownIdError(f"ids {unknown[:10]} ({len(unknown)} in all) are not in the index; pass missing_ok=True to ignore")
        labels = [self._pos.pop(i) for i in id_list if i in self._pos]
        for i in id_list:
            self._meta.pop(i, None)
        self._tombstone(labels)
        self._changed()
        return len(labels)

    def compact(self) -> None:
        """Drop tombstones: rebuild the FAISS index from the live vectors (keeps IVF training)."""
        if self._n_dead == 0:
            return
        live = np.flatnonzero(self._labels != -1)
        vectors = self._reconstruct(live)
        self._cpu.reset()
        self._add_to_faiss(vectors)
        self._labels = self._labels[live]
        self._pos = dict(zip(self._labels.tolist(), range(len(live))))
        self._n_dead = 0
        self._changed()

    def _tombstone(self, labels: list[int]) -> None:
        if not labels:
            return
        self._labels[labels] = -1
        self._n_dead += len(labels)
        if self._n_dead > self._config.dead_fraction_limit * len(self._labels):
            self.compact()

    def _changed(self) -> None:
        self._gpu = None
        self._bitmap = self._selector = None

    # -- FAISS plumbing --------------------------------------------------------------------

    def _new_faiss_index(self):
        import faiss

        c = self._config
        if c.index_type == "flat":
            return faiss.IndexFlatIP(c.dim)
        if c.index_type == "hnsw":
            index = faiss.IndexHNSWFlat(c.dim, c.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = c.ef_construction
            return index
        return self._new_ivf(c.nlist or 1)  # replaced at training, once nlist fits the data

    def _new_ivf(self, nlist: int):
        import faiss

        return faiss.IndexIVFFlat(faiss.IndexFlatIP(self.dim), self.dim, nlist, faiss.METRIC_INNER_PRODUCT)

    def _train(self, vectors: np.ndarray) -> None:
        """Create and train the IVF index on (a sample of) ``vectors`` ``(N, D)`` normalised."""
        n = len(vectors)
        nlist = self._config.nlist or _default_nlist(n)
        nlist = max(1, min(nlist, n // _MIN_POINTS_PER_LIST))
        sample_size = min(n, _TRAIN_POINTS_PER_LIST * nlist)
        rng = np.random.default_rng(0)
        sample = vectors[np.sort(rng.choice(n, sample_size, replace=False))] if sample_size < n else vectors
        index = self._new_ivf(nlist)
        index.train(sample)
        self._cpu = index
        self._config = dataclasses.replace(self._config, nlist=nlist, nprobe=min(self._config.nprobe, nlist))

    def _add_to_faiss(self, vectors: np.ndarray) -> None:
        starts = range(0, len(vectors), _ADD_CHUNK)
        for start in tqdm(starts, desc=f"indexing ({self._config.index_type})", unit="chunk",
                          disable=len(starts) < 4, leave=False):
            self._cpu.add(vectors[start:start + _ADD_CHUNK])

    def _reconstruct(self, labels: np.ndarray) -> np.ndarray:
        """Stored vectors of sorted ``labels`` ``(M,)``, as ``(M, D)``; read in chunks to bound memory."""
        parts = []
        for start in range(0, self._cpu.ntotal, _ADD_CHUNK):
            stop = min(start + _ADD_CHUNK, self._cpu.ntotal)
            chunk = self._cpu.reconstruct_n(start, stop - start)
            lo, hi = np.searchsorted(labels, [start, stop])
            parts.append(chunk[labels[lo:hi] - start])
        return np.concatenate(parts) if parts else np.empty((0, self.dim), np.float32)

    def _search_params(self, nprobe: int | None = None, ef_search: int | None = None):
        """FAISS search parameters: the tuned knobs plus a tombstone selector (CPU only)."""
        import faiss

        selector = None
        if self._n_dead:
            if self._selector is None:
                self._bitmap = np.packbits(self._labels != -1, bitorder="little")
                self._selector = faiss.IDSelectorBitmap(len(self._bitmap), faiss.swig_ptr(self._bitmap))
            selector = self._selector
        c = self._config
        if c.index_type == "ivf":
            return faiss.SearchParametersIVF(sel=selector, nprobe=nprobe or c.nprobe)
        if c.index_type == "hnsw":
            return faiss.SearchParametersHNSW(sel=selector, efSearch=ef_search or c.ef_search)
        return faiss.SearchParameters(sel=selector) if selector is not None else None

    def _search_labels(self, queries: np.ndarray, k: int, nprobe: int | None = None,
                       ef_search: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Raw FAISS search of normalised ``queries`` ``(Q, D)``: ``(scores, labels)``, each ``(Q, k)``."""
        index = self._cpu
        if self._use_gpu:
            import faiss

            if self._gpu is None:
                self.compact()  # GPU indexes take no selector: the replica holds no tombstone
                self._gpu = faiss.index_cpu_to_all_gpus(self._cpu)
            index = self._gpu
        return index.search(queries, k, params=self._search_params(nprobe, ef_search))

    # -- search ----------------------------------------------------------------------------

    def search(self, queries: np.ndarray, k: int) -> SearchResult:
        """The ``k`` most similar ids of each query ``(Q, D)``: ``SearchResult`` of ``(Q, k')`` arrays.

        ``k' = min(k, len(self))``: asking for more neighbours than the index holds is clamped
        (an empty index gives ``(Q, 0)``). Rows may end in -1 padding when an approximate
        index finds fewer than ``k'`` hits.
        """
        k = min(_check_count(k, "k"), len(self))
        queries = _check_vectors(queries, self.dim, "queries")
        if k == 0:
            empty = np.empty((len(queries), 0))
            return SearchResult(empty.astype(np.int64), empty.astype(np.float32), self._meta)
        scores, labels = self._search_labels(queries, k)
        ids = np.where(labels >= 0, self._labels[np.maximum(labels, 0)], -1)  # the selector hides tombstones
        scores = np.where(ids != -1, scores, -np.inf).astype(np.float32)
        return SearchResult(ids, scores, self._meta)

    def tune(self, queries: np.ndarray, *, k: int = 10, recall_target: float | None = None) -> float:
        """Pick the smallest ``nprobe`` (IVF) / ``efSearch`` (HNSW) reaching ``recall_target``.

        ``queries`` ``(Q, D)``: a sample of real queries (a few hundred). Recall@k is measured
        against exact search over the live vectors. Returns the recall reached (also stored as
        ``config.tuned_recall``); if no setting reaches the target, the largest one tried is kept
        and a warning is logged. Flat is exact: returns 1.0.
        """
        k = _check_count(k, "k")
        if recall_target is not None and not 0.0 < recall_target <= 1.0:
            raise ValueError(f"recall_target={recall_target!r} is not allowed; expected 0 < recall_target <= 1")
        queries = _check_vectors(queries, self.dim, "queries")
        live = np.flatnonzero(self._labels != -1)
        return self._tune(queries, self._reconstruct(live), live, k=k, recall_target=recall_target)

    def _tune(self, queries: np.ndarray, base: np.ndarray, base_labels: np.ndarray, k: int,
              recall_target: float | None = None) -> float:
        """Tune on normalised ``queries`` ``(Q, D)``; ``base`` ``(N, D)`` are the live vectors under ``base_labels`` ``(N,)``."""
        import faiss

        c = self._config
        target = c.recall_target if recall_target is None else recall_target
        if c.index_type == "flat" or len(base) <= k:
            return 1.0
        _, rows = faiss.knn(queries, base, k, metric=faiss.METRIC_INNER_PRODUCT)
        truth = base_labels[rows]
        if c.index_type == "ivf":
            grid = [p for p in (1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512) if p < c.nlist] + [c.nlist]
            knob = "nprobe"
        else:
            grid = [e for e in (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 2048) if e >= k] or [k]
            knob = "ef_search"
        recall = 0.0
        for value in grid:
            _, labels = self._search_labels(queries, k, **{knob: value})
            recall = recall_at_k(labels, truth)
            if recall >= target:
                break
        if recall < target:
            logger.warning("%s index: %s=%d reaches recall@%d %.3f < target %.3f", c.index_type, knob, value, k, recall, target)
        self._config = dataclasses.replace(c, **{knob: value}, tuned_recall=round(recall, 4))
        return recall

    # -- persistence -----------------------------------------------------------------------

    def save(self, path: str | os.PathLike) -> None:
        """Write config.json, index.faiss, ids.npy, metadata.json and checksums.json to ``path``.

        Written into a temporary sibling directory renamed into place: a failure leaves the
        previous index at ``path`` intact. Always a CPU index.
        """
        import faiss

        with atomic_directory(path) as tmp:
            save_config(self._config, tmp, _KIND)
            faiss.write_index(self._cpu, str(tmp / _INDEX_FILE))
            np.save(tmp / _IDS_FILE, self._labels)
            meta = {str(i): m for i, m in self._meta.items()}
            (tmp / _META_FILE).write_text(json.dumps(meta, allow_nan=False), "utf-8")
            sums = {name: _sha256(tmp / name) for name in (_INDEX_FILE, _IDS_FILE, _META_FILE)}
            atomic_write_text(tmp / _CHECKSUMS_FILE, json.dumps(sums, indent=2))

    @classmethod
    def load(cls, path: str | os.PathLike, expected_fingerprint: str | None = None, *,
             expected_dim: int | None = None, use_gpu: bool | None = None) -> FaissIndex:
        """Read a directory written by ``save``.

        Raises ``IncompatibleIndexError`` when ``expected_fingerprint`` / ``expected_dim`` differ
        from the saved ones, ``ModelLoadError`` when a file is missing, truncated or corrupt
        (checked against checksums.json before FAISS reads anything).
        """
        import faiss

        path = Path(path)
        if not path.is_dir():
            raise FileNotFoundError(f"path={str(path)!r} is not a directory written by FaissIndex.save()")
        try:
            config = load_config(IndexConfig, path, _KIND)
        except (TypeError, ValueError) as exc:
            raise ModelLoadError(f"{path}: invalid {_KIND} config ({exc})") from exc
        if expected_fingerprint is not None and config.fingerprint != expected_fingerprint:
            raise IncompatibleIndexError(
                f"index at {str(path)!r} was built from vectors of {config.fingerprint!r}, "
                f"not expected_fingerprint={expected_fingerprint!r}; rebuild it with that model")
        if expected_dim is not None and config.dim != expected_dim:
            raise IncompatibleIndexError(f"index at {str(path)!r} holds dim={config.dim} vectors, not expected_dim={expected_dim}")
        _verify_checksums(path)
        try:
            cpu = faiss.read_index(str(path / _INDEX_FILE))
            labels = np.load(path / _IDS_FILE, allow_pickle=False)
            meta = {int(i): m for i, m in json.loads((path / _META_FILE).read_text("utf-8")).items()}
        except (RuntimeError, ValueError, OSError) as exc:
            raise ModelLoadError(f"{path}: cannot read the index files ({exc})") from exc
        expected_type = {"flat": faiss.IndexFlat, "ivf": faiss.IndexIVFFlat, "hnsw": faiss.IndexHNSWFlat}[config.index_type]
        if cpu.d != config.dim or not isinstance(cpu, expected_type) or cpu.metric_type != faiss.METRIC_INNER_PRODUCT \
                or labels.dtype != np.int64 or labels.shape != (cpu.ntotal,):
            raise ModelLoadError(f"{path}: {_INDEX_FILE} / {_IDS_FILE} do not match config.json "
                                 f"({type(cpu).__name__} d={cpu.d} n={cpu.ntotal}, ids {labels.shape})")
        index = cls(config, use_gpu=use_gpu)
        index._cpu = cpu
        index._labels = labels
        live = np.flatnonzero(labels != -1)
        index._pos = dict(zip(labels[live].tolist(), live.tolist()))
        index._n_dead = len(labels) - len(live)
        index._meta = meta
        return index


def _verify_checksums(path: Path) -> None:
    try:
        sums = json.loads((path / _CHECKSUMS_FILE).read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{path}: missing or unreadable {_CHECKSUMS_FILE} ({exc})") from exc
    for name in (_INDEX_FILE, _IDS_FILE, _META_FILE):
        file = path / name
        if not file.is_file():
            raise ModelLoadError(f"{path}: {name} is missing")
        if _sha256(file) != sums.get(name):
            raise ModelLoadError(f"{file}: checksum mismatch (truncated or corrupt); re-save or rebuild the index")


def _default_nlist(n: int) -> int:
    """IVF lists for ``n`` vectors: ``4 * sqrt(n)`` rounded up to a power of two.

    Rounded up: at 100k clustered vectors 2048 lists reached recall@10 0.95 at nprobe 8 where
    1024 lists needed over 128 (retrieval.index_bench data).
    """
    return 2 ** math.ceil(math.log2(max(1.0, 4 * math.sqrt(n))))


def choose_index_type(expected_size: int, recall_target: float = 0.95) -> str:
    """Index type for a CPU catalogue of ``expected_size`` vectors searched at ``recall_target``.

    From ``crossrec retrieval bench`` (384-d clustered vectors, 2 cores, recall@10 >= 0.95):

    - under ``FLAT_MAX_SIZE`` (50k), or ``recall_target >= 0.999``: flat. It is exact and needs
      no build; at 20k HNSW gave only ~3x its batch QPS for a 14 s build.
    - up to ``HNSW_MAX_SIZE`` (500k): hnsw. At 100k: 31x flat's batch QPS (efSearch 24, recall
      0.962, 53 s build) against 18x for IVF (nprobe 24 of 2048, 155 s build).
    - above: ivf. At 1M: 203x flat (nprobe 4 of 4096, recall 0.973, 790 s build, 1.45 GiB)
      against 82x for HNSW (efSearch 96, recall 0.980, 910 s build, 1.69 GiB); IVF also compacts
      without re-training, where an HNSW compaction rebuilds the graph.
    """
    if expected_size < FLAT_MAX_SIZE or recall_target >= 0.999:
        return "flat"
    return "hnsw" if expected_size <= HNSW_MAX_SIZE else "ivf"


def create_index(dim: int, *, expected_size: int, recall_target: float = 0.95, kind: str = "auto",
                 fingerprint: str = "", use_gpu: bool | None = None, **params: Any) -> FaissIndex:
    """A new empty ``FaissIndex`` of width ``dim`` for about ``expected_size`` vectors.

    ``kind`` "auto" picks with ``choose_index_type`` (ivf in place of hnsw when a GPU is used,
    as HNSW is CPU-only); "flat" / "ivf" / "hnsw" force a type. ``params`` set ``IndexConfig`` fields
    (nlist, nprobe, hnsw_m, ef_construction, ef_search, max_dead_fraction). Search knobs are
    auto-tuned to ``recall_target`` after training / the first build.
    """
    dim, expected_size = _check_count(dim, "dim"), _check_count(expected_size, "expected_size", low=0)
    if kind not in ("auto", *INDEX_TYPES):
        raise ValueError(f"kind={kind!r} is not allowed; expected 'auto' or one of {INDEX_TYPES}")
    allowed = {"nlist", "nprobe", "hnsw_m", "ef_construction", "ef_search", "max_dead_fraction"}
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise ValueError(f"unknown index params {unknown}; allowed: {sorted(allowed)}")
    if kind == "auto":
        kind = choose_index_type(expected_size, recall_target)
        if kind == "hnsw" and use_gpu is not False and _gpu_count() > 0:
            kind = "ivf"
    if kind == "ivf" and "nlist" not in params:
        params["nlist"] = _default_nlist(expected_size)
    config = IndexConfig(dim=dim, index_type=kind, fingerprint=fingerprint, recall_target=recall_target, **params)
    return FaissIndex(config, use_gpu=use_gpu)
