"""Item vectors a catalogue brings (README "Your data"), e.g. from a CLIP the user runs elsewhere:
``item_vectors.npy`` beside the catalogue, ``(N, D)`` with row i the i-th catalogue row, or a
list-of-floats catalogue column ``embedding`` (Parquet or JSON lines). The engine then indexes,
profiles and ranks with them in place of its aligned model."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

__all__ = ["VECTOR_FILE", "VECTOR_COLUMN", "ItemVectors", "VectorProblem", "inspect_vectors"]

VECTOR_FILE = "item_vectors.npy"
VECTOR_COLUMN = "embedding"


@dataclass(frozen=True)
class ItemVectors:
    """``vectors (N, D)`` float32, L2-normalised, in catalogue order; ``source`` names where they came
    from; ``fingerprint`` is a content hash (caches and indexes built on them key by it)."""

    vectors: np.ndarray
    source: str
    fingerprint: str

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])


@dataclass(frozen=True)
class VectorProblem:
    code: str
    message: str
    count: int
    examples: tuple[str, ...] = ()


def _rows_of(mask: np.ndarray) -> tuple[str, ...]:
    return tuple(f"row {int(i) + 1}" for i in np.flatnonzero(mask)[:10])


def inspect_vectors(root: Path, catalogue: pl.DataFrame) -> tuple[ItemVectors | None, list[VectorProblem]]:
    """The folder's item vectors (None when it brings none) and every problem found with them:
    both forms given, unreadable file, wrong shape, row count that differs from the catalogue's,
    rows of another length, missing rows, non-finite values, zero vectors. Vectors come back only
    when there is no problem."""
    path, has_column = root / VECTOR_FILE, VECTOR_COLUMN in catalogue.columns
    if not path.is_file() and not has_column:
        return None, []
    if path.is_file() and has_column:
        return None, [VectorProblem("vectors_twice", f"both {VECTOR_FILE} and a catalogue column {VECTOR_COLUMN!r}: "
                                    "keep one", 1)]
    problems: list[VectorProblem] = []
    if path.is_file():
        source = str(path)
        try:
            raw = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            return None, [VectorProblem("unreadable_vectors", f"{path.name} is not a NumPy .npy array: {exc}", 1)]
        if raw.ndim != 2 or not np.issubdtype(raw.dtype, np.number):
            return None, [VectorProblem("vector_shape", f"{path.name} has shape {raw.shape} and dtype {raw.dtype}; "
                                        "expected a numeric (items, dim) array", 1)]
        if raw.shape[0] != catalogue.height:
            return None, [VectorProblem("vector_rows", f"{path.name} has {raw.shape[0]} rows for {catalogue.height} "
                                        "catalogue items; row i must be the i-th catalogue row", abs(raw.shape[0] - catalogue.height))]
        vectors = raw.astype(np.float32)
    else:
        source = f"catalogue column {VECTOR_COLUMN!r}"
        column = catalogue[VECTOR_COLUMN]
        if not isinstance(column.dtype, (pl.List, pl.Array)):
            return None, [VectorProblem("vector_shape", f"{source} is {column.dtype}; expected a list of floats per item", 1)]
        lengths = column.list.len().fill_null(0).to_numpy()
        null = column.is_null().to_numpy() | (lengths == 0)
        problems.append(VectorProblem("missing_vector", f"items without a vector in {source}", int(null.sum()), _rows_of(null)))
        dim = int(np.bincount(lengths[~null]).argmax()) if (~null).any() else 0
        odd = ~null & (lengths != dim)
        problems.append(VectorProblem("vector_length", f"vectors in {source} whose length is not {dim}", int(odd.sum()), _rows_of(odd)))
        if null.any() or odd.any():
            return None, [p for p in problems if p.count]
        vectors = np.asarray(column.cast(pl.List(pl.Float32)).to_list(), dtype=np.float32)
    finite = np.isfinite(vectors).all(axis=1)
    problems.append(VectorProblem("nonfinite_vector", f"vectors holding NaN or infinity ({source})", int((~finite).sum()),
                                  _rows_of(~finite)))
    norms = np.linalg.norm(np.where(finite[:, None], vectors, 0), axis=1)
    zero = finite & (norms == 0)
    problems.append(VectorProblem("zero_vector", f"all-zero vectors ({source})", int(zero.sum()), _rows_of(zero)))
    problems = [p for p in problems if p.count]
    if problems:
        return None, problems
    import hashlib

    vectors = vectors / norms[:, None]
    return ItemVectors(vectors, source, "vectors:" + hashlib.sha256(vectors.tobytes()).hexdigest()[:16]), []
