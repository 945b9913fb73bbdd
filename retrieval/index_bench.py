"""Benchmark of the FAISS index types: build time, size, QPS and recall@k against exact search.

Data. Synthetic clustered vectors standing in for text/image embeddings: a Gaussian mixture of
2,000 unit centres with Zipf-like weights (cluster sizes spread over ~45x); each point is its
centre plus noise of per-cluster scale 0.4-0.8, in a 16-dimensional subspace shared by all
clusters plus 30% isotropic noise, then L2-normalised. Queries are fresh draws from the same
mixture. The parameters were picked against all-MiniLM-L6-v2 embeddings of the 1,664 MovieLens
item texts: on 1,664 points each, the synthetic set is a little harder, its recall@10 on
held-out queries 0.04-0.11 below the real one for IVF (32 lists, nprobe 1-16) and 0.02-0.06
below for HNSW (M 8, efSearch 10-32). Behaviour at 1M cannot be checked that way: there IVF
profits from having more lists (4096) than the mixture has clusters. Alternatively ``base`` vectors (real
embeddings) are tiled: random base rows plus isotropic noise, normalised.

Measures per (size, kind): build seconds (create + add: IVF training and the auto-tuning of
nprobe / efSearch included), bytes of the saved index directory, batch QPS (all queries in one
call) and single-query QPS (one query per call, at most 100), and recall@k against ``flat``.
"""

from __future__ import annotations

import dataclasses
import gc
import math
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm.auto import tqdm

from retrieval.index import INDEX_TYPES, FaissIndex, create_index, recall_at_k
from crossrec_core.reports import Report

__all__ = ["IndexBenchRow", "IndexBenchReport", "ClusteredVectors", "TiledVectors", "run_index_benchmark"]

_SINGLE_QUERIES = 100
_CHUNK = 100_000


class ClusteredVectors:
    """Gaussian mixture of normalised vectors (see the module docstring); ``sample(n, rng)`` ``(n, dim)``."""

    def __init__(self, dim: int, seed: int = 0, n_centres: int = 2000, rank: int = 16,
                 spread: tuple[float, float] = (0.4, 0.8), isotropic: float = 0.3):
        rng = np.random.default_rng(seed)
        self.dim, self.rank, self.isotropic = dim, rank, isotropic
        self.centres = _normalise(rng.standard_normal((n_centres, dim), dtype=np.float32))
        self.scale = rng.uniform(*spread, n_centres).astype(np.float32)
        self.basis = rng.standard_normal((rank, dim), dtype=np.float32) / math.sqrt(dim)
        weights = 1.0 / np.sqrt(np.arange(1, n_centres + 1))
        self.weights = rng.permutation(weights / weights.sum())

    def describe(self) -> str:
        return (f"gaussian mixture: {len(self.centres)} centres, zipf-like weights, spread "
                f"{self.scale.min():.1f}-{self.scale.max():.1f}, rank-{self.rank} noise + {self.isotropic} isotropic")

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        out = np.empty((n, self.dim), np.float32)
        for start in range(0, n, _CHUNK):
            m = min(_CHUNK, n - start)
            which = rng.choice(len(self.centres), m, p=self.weights)
            noise = rng.standard_normal((m, self.rank), dtype=np.float32) @ self.basis / math.sqrt(self.rank)
            noise += self.isotropic * rng.standard_normal((m, self.dim), dtype=np.float32) / math.sqrt(self.dim)
            out[start:start + m] = self.centres[which] + self.scale[which, None] * noise
        return _normalise(out)


class TiledVectors:
    """Real embeddings ``base`` ``(M, D)`` tiled to any size: random rows plus isotropic noise."""

    def __init__(self, base: np.ndarray, noise: float = 0.3):
        base = np.asarray(base, dtype=np.float32)
        if base.ndim != 2 or len(base) == 0:
            raise ValueError(f"base must be a non-empty (M, D) array, got shape {base.shape}")
        norms = np.linalg.norm(base, axis=1)
        bad = np.flatnonzero(~np.isfinite(norms) | (norms == 0))
        if len(bad):
            raise ValueError(f"base rows {bad[:10].tolist()} ({len(bad)} in all) are zero or not finite: "
                             "drop them (e.g. items without an image)")
        self.base, self.noise, self.dim = _normalise(base.copy()), noise, base.shape[1]

    def describe(self) -> str:
        return f"{len(self.base)} real embeddings tiled with {self.noise} isotropic noise"

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        out = np.empty((n, self.dim), np.float32)
        for start in range(0, n, _CHUNK):
            m = min(_CHUNK, n - start)
            noise = rng.standard_normal((m, self.dim), dtype=np.float32) * (self.noise / math.sqrt(self.dim))
            out[start:start + m] = self.base[rng.integers(len(self.base), size=m)] + noise
        return _normalise(out)


def _normalise(x: np.ndarray) -> np.ndarray:
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


@dataclass(frozen=True)
class IndexBenchRow:
    """Figures of one index type at one size; ``params`` are the tuned FAISS knobs."""

    size: int
    kind: str
    build_s: float
    memory_bytes: int
    batch_qps: float
    single_qps: float
    recall_at_k: float
    params: dict


@dataclass(frozen=True)
class IndexBenchReport(Report):
    """All rows of a benchmark run plus its setting."""

    rows: tuple[IndexBenchRow, ...]
    dim: int
    n_queries: int
    k: int
    seed: int
    threads: int
    data: str
    load_avg: tuple[float, float]  # 1-minute load average of the machine at start and end


    def speedup(self, row: IndexBenchRow) -> float:
        """Batch QPS of ``row`` over that of exact search at the same size (nan without a flat row)."""
        flat = [r for r in self.rows if r.size == row.size and r.kind == "flat"]
        return row.batch_qps / flat[0].batch_qps if flat else float("nan")

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        for row, raw in zip(self.rows, out["rows"]):
            raw["speedup_vs_flat"] = round(self.speedup(row), 2)
        return out

    def to_markdown(self) -> str:
        lines = [
            f"recall@{self.k} vs exact, {self.n_queries} queries, dim {self.dim}, {self.threads} threads "
            f"(machine load {self.load_avg[0]:.1f} -> {self.load_avg[1]:.1f}); data: {self.data}",
            "",
            "| size | kind | build s | memory MiB | batch QPS | single QPS | recall@k | x flat QPS | params |",
            "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
        ]
        for r in self.rows:
            params = ", ".join(f"{k}={v}" for k, v in r.params.items())
            lines.append(f"| {r.size:,} | {r.kind} | {r.build_s:.1f} | {r.memory_bytes / 2**20:,.0f} | "
                         f"{r.batch_qps:,.0f} | {r.single_qps:,.0f} | {r.recall_at_k:.3f} | {self.speedup(r):.1f} | {params} |")
        return "\n".join(lines)


def _saved_bytes(index: FaissIndex) -> int:
    with tempfile.TemporaryDirectory(prefix="index-bench-") as tmp:
        index.save(Path(tmp) / "index")
        return sum(f.stat().st_size for f in (Path(tmp) / "index").iterdir())


def _measure(index: FaissIndex, queries: np.ndarray, k: int) -> tuple[float, float, np.ndarray]:
    """``(batch QPS, single-query QPS, ids (Q, k))`` of ``index`` on ``queries``."""
    start = time.perf_counter()
    ids = index.search(queries, k).ids
    batch_qps = len(queries) / (time.perf_counter() - start)
    singles = queries[:_SINGLE_QUERIES]
    start = time.perf_counter()
    for q in singles:
        index.search(q[None, :], k)
    return batch_qps, len(singles) / (time.perf_counter() - start), ids


def run_index_benchmark(sizes: Sequence[int] = (100_000, 1_000_000), dim: int = 384,
                        kinds: Sequence[str] = ("flat", "ivf", "hnsw"), n_queries: int = 1000, k: int = 10,
                        seed: int = 0, *, recall_target: float = 0.95, base: np.ndarray | None = None,
                        threads: int | None = None, progress: bool = True) -> IndexBenchReport:
    """Build each index type at each size and measure it (see the module docstring).

    ``base`` ``(M, D)``: real embeddings to tile instead of the synthetic mixture (``dim`` is
    then taken from it). ``threads``: FAISS OpenMP threads, default the CPUs this process may
    use. Exact search is always run for the ground truth; its row is reported when "flat" is in
    ``kinds``.
    """
    import faiss

    unknown = sorted(set(kinds) - set(INDEX_TYPES))
    if unknown or not kinds:
        raise ValueError(f"kinds={list(kinds)!r} is not allowed; expected a non-empty subset of {INDEX_TYPES}")
    if not sizes or any(not isinstance(s, int) or s <= k for s in sizes):
        raise ValueError(f"sizes={list(sizes)!r} is not allowed; expected ints > k={k}")
    if n_queries < 1 or k < 1:
        raise ValueError(f"n_queries={n_queries} and k={k} must be >= 1")
    threads = threads or len(os.sched_getaffinity(0))
    load_start = os.getloadavg()[0]
    faiss.omp_set_num_threads(threads)
    source = TiledVectors(base) if base is not None else ClusteredVectors(dim, seed)
    rows = []
    steps = tqdm(total=len(sizes) * (len(kinds) + ("flat" not in kinds)), desc="index bench", disable=not progress)
    for size in sizes:
        rng = np.random.default_rng([seed, size])
        vectors, queries = source.sample(size, rng), source.sample(n_queries, rng)
        ids = np.arange(size, dtype=np.int64)
        truth = None
        for kind in ("flat", *[x for x in kinds if x != "flat"]):
            steps.set_postfix_str(f"{kind} @ {size:,}")
            start = time.perf_counter()
            index = create_index(source.dim, expected_size=size, recall_target=recall_target, kind=kind, use_gpu=False)
            index.add(ids, vectors)
            build_s = time.perf_counter() - start
            batch_qps, single_qps, found = _measure(index, queries, k)
            if kind == "flat":
                truth = found
            if kind in kinds:
                c = index.config
                params = {"flat": {}, "ivf": {"nlist": c.nlist, "nprobe": c.nprobe},
                          "hnsw": {"M": c.hnsw_m, "efConstruction": c.ef_construction, "efSearch": c.ef_search}}[kind]
                row = IndexBenchRow(size, kind, round(build_s, 3), _saved_bytes(index), round(batch_qps, 1),
                               round(single_qps, 1), round(recall_at_k(found, truth), 4), params)
                rows.append(row)
                if progress:
                    tqdm.write(f"{kind:>5} @ {size:>9,}: build {row.build_s:7.1f}s  {row.memory_bytes / 2**20:7,.0f} MiB  "
                               f"batch {row.batch_qps:9,.0f} q/s  single {row.single_qps:8,.0f} q/s  "
                               f"recall@{k} {row.recall_at_k:.3f}  {params}")
            del index
            gc.collect()
            steps.update()
        del vectors
    steps.close()
    return IndexBenchReport(tuple(rows), source.dim, n_queries, k, seed, threads, source.describe(),
                       (round(load_start, 2), round(os.getloadavg()[0], 2)))
