"""``crossrec retrieval train|eval|search|bench``: thin wrappers over ``retrieval``."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict

from crossrec.cli_index import add_bench_arguments, run_bench_from_args

__all__ = ["add_parser"]


def _data_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", default=None,
                   help="folder holding grocery-store/ and ml100k-posters/ (default: $CROSSREC_DATA_DIR or ../shared/data)")


def add_parser(subparsers) -> None:
    group = subparsers.add_parser("retrieval", help="cross-media retrieval: train, evaluate, search, benchmark")
    sub = group.add_subparsers(dest="retrieval_command", required=True)

    train = sub.add_parser("train", help="train the CrossCLIP-style model and index the catalogue")
    train.add_argument("--dataset", choices=["grocery", "ml100k"], default="grocery")
    _data_dir(train)
    train.add_argument("--out", default=None, help="model directory (default: $CROSSREC_HOME/models/crossclip-<dataset>)")
    train.add_argument("--epochs", type=int, default=None)
    train.add_argument("--text-encoder", default="minilm", help="minilm, e5 (multilingual) or a local model directory")
    train.set_defaults(func=_train)

    ev = sub.add_parser("eval", help="baseline vs CrossCLIP: closed set, open set (5 folds), MovieLens posters")
    ev.add_argument("--dataset", choices=["grocery", "ml100k", "all"], default="grocery")
    _data_dir(ev)
    ev.add_argument("--json", default=None, metavar="PATH", help="report JSON (default: <out-dir>/retrieval_eval.json)")
    ev.add_argument("--out-dir", default="runs/retrieval_eval", help="folder for the Markdown table and plots")
    ev.add_argument("--quick", action="store_true", help="a slice, fewer epochs and 2 folds: a smoke run of a few minutes")
    ev.add_argument("--folds", type=int, default=5)
    ev.add_argument("--seeds", type=int, default=1,
                    help="seeded trainings of each model per grocery open-set fold, averaged per fold (default 1)")
    ev.add_argument("--text-encoder", default="minilm")
    ev.set_defaults(func=_eval)

    search = sub.add_parser("search", help="search the trained catalogue by text or by image")
    search.add_argument("query", nargs="?", default=None, help="query text")
    search.add_argument("--image", default=None, help="query image path")
    search.add_argument("-k", type=int, default=5)
    search.add_argument("--space", choices=["fused", "image", "text"], default="fused",
                        help="what to match: fused items, catalogue images or item texts")
    search.add_argument("--dataset", choices=["grocery", "ml100k"], default="grocery")
    search.add_argument("--model", default=None, help="model directory (default: the one `train` wrote)")
    search.add_argument("--json", action="store_true", help="print JSON")
    search.set_defaults(func=_search)

    bench = sub.add_parser("bench", help="FAISS index benchmark: Flat / IVF / HNSW build time, memory, QPS, recall@10")
    add_bench_arguments(bench)
    bench.set_defaults(func=run_bench_from_args)


def _train(args) -> int:
    from retrieval.align.model import AlignConfig
    from retrieval.pipeline import train_retrieval

    overrides = {"text_encoder": args.text_encoder}
    if args.epochs is not None:
        overrides["epochs"] = args.epochs
    summary = train_retrieval(args.dataset, data_dir=args.data_dir, out_dir=args.out, config=AlignConfig(**overrides))
    print(json.dumps({k: str(v) if not isinstance(v, (int, float, type(None))) else v for k, v in asdict(summary).items()}, indent=2))
    return 0


def _eval(args) -> int:
    from retrieval.evaluate import EvalOptions
    from retrieval.pipeline import run_retrieval_eval

    opts = EvalOptions(data_dir=args.data_dir, quick=args.quick, folds=args.folds, seeds=args.seeds,
                       text_encoder=args.text_encoder)
    report = run_retrieval_eval(args.dataset, opts, args.out_dir, args.json)
    print(report.to_markdown() if args.dataset != "ml100k" else json.dumps(report.data, indent=2)[:4000])
    print(f"wrote {args.json or args.out_dir + '/retrieval_eval.json'} and plots under {args.out_dir}")
    return 0


def _search(args) -> int:
    from retrieval.pipeline import search_catalogue

    hits = search_catalogue(args.query, args.image, k=args.k, space=args.space, dataset=args.dataset, model_dir=args.model)
    if args.json:
        print(json.dumps([asdict(h) for h in hits], indent=2))
    else:
        for rank, h in enumerate(hits, 1):
            meta = h.metadata or {}
            print(f"{rank:2d}. id={h.item_id:<6d} score={h.score:.3f}  {meta.get('name') or meta.get('title') or ''}")
    return 0
