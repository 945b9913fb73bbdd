"""CLI for the vector index: ``crossrec retrieval bench`` (wired by ``crossrec/cli.py``)."""

from __future__ import annotations

import argparse

__all__ = ["add_bench_arguments", "run_bench_from_args", "QUICK_SIZE"]

QUICK_SIZE = 20_000


def _sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(part.replace("_", "")) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--sizes {text!r}: expected comma-separated ints, e.g. 100000,1000000") from None
    if any(s <= 0 for s in sizes):
        raise argparse.ArgumentTypeError(f"--sizes {text!r}: sizes must be positive")
    return sizes


def _kinds(text: str) -> tuple[str, ...]:
    from retrieval.index import INDEX_TYPES

    kinds = tuple(text.split(","))
    if not set(kinds) <= set(INDEX_TYPES):
        raise argparse.ArgumentTypeError(f"--kinds {text!r}: expected a comma-separated subset of {','.join(INDEX_TYPES)}")
    return kinds


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the options of ``crossrec retrieval bench`` on ``parser``."""
    parser.add_argument("--json", required=True, metavar="PATH", help="write the report as JSON here (e.g. runs/index_bench.json)")
    parser.add_argument("--sizes", type=_sizes, default=(100_000, 1_000_000), help="catalogue sizes (default 100000,1000000)")
    parser.add_argument("--quick", action="store_true", help=f"one size of {QUICK_SIZE:,} vectors (overrides --sizes)")
    parser.add_argument("--kinds", type=_kinds, default=("flat", "ivf", "hnsw"), help="index types (default flat,ivf,hnsw)")
    parser.add_argument("--dim", type=int, default=384, help="vector width (default 384)")
    parser.add_argument("--queries", type=int, default=1000, help="number of queries (default 1000)")
    parser.add_argument("--k", type=int, default=10, help="neighbours per query, recall@k (default 10)")
    parser.add_argument("--recall-target", type=float, default=0.95, help="recall the IVF/HNSW knobs are tuned to (default 0.95)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--base", default=None, metavar="NPY",
                        help="real embeddings (M, D) in a .npy file, tiled with noise to each size (default: clustered synthetic vectors)")


def run_bench_from_args(args: argparse.Namespace) -> int:
    """Run the benchmark with parsed ``args``, print a Markdown table, write the JSON; exit code."""
    import numpy as np

    from retrieval.index_bench import run_index_benchmark

    base = None
    if args.base is not None:
        try:
            base = np.load(args.base, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise SystemExit(f"--base {args.base!r}: not a readable .npy array ({exc})") from None
        if base.ndim != 2 or len(base) == 0 or not np.issubdtype(base.dtype, np.floating):
            raise SystemExit(f"--base {args.base!r}: expected a non-empty float (M, D) array, got {base.dtype} {base.shape}")
    report = run_index_benchmark(sizes=(QUICK_SIZE,) if args.quick else args.sizes, dim=args.dim, kinds=args.kinds,
                                 n_queries=args.queries, k=args.k, seed=args.seed, recall_target=args.recall_target,
                                 base=base)
    report.to_json(args.json)
    print(report.to_markdown())
    print(f"\nwrote {args.json}")
    return 0
