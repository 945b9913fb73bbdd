"""``crossrec retrieval train|eval|search|eval-queries|search-bench|bench``: thin wrappers over ``retrieval``."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

from crossrec.cli_index import add_bench_arguments, run_bench_from_args
from crossrec.options import add_dataset

__all__ = ["add_parser"]


def _data_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", default=None,
                   help="folder holding grocery-store/ and ml100k-posters/ (default: $CROSSREC_DATA_DIR or ../shared/data)")


def add_parser(subparsers) -> None:
    group = subparsers.add_parser("retrieval", help="cross-media retrieval: train, evaluate, search, benchmark")
    sub = group.add_subparsers(dest="retrieval_command", required=True)

    train = sub.add_parser("train", help="train the CrossCLIP-style model and index the catalogue")
    add_dataset(train, "grocery")
    _data_dir(train)
    train.add_argument("--out", default=None, help="model directory (default: $CROSSREC_HOME/models/crossclip-<dataset>)")
    train.add_argument("--epochs", type=int, default=None)
    train.add_argument("--view-loss-weight", type=float, default=None, metavar="W",
                       help="weight of an image<->image term between two views of each training image (default 0: "
                            "off); keeps an image's own look in the image space, e.g. so generated posters still "
                            "find their source poster, at some cost to alignment (NOTES, session 13)")
    train.add_argument("--generated-queries", type=int, default=None, metavar="N",
                       help="up to N short shopper queries per item, written from its title, classes and description, "
                            "trained as more texts of that item (default 0: off; grocery and folders)")
    train.add_argument("--query-writer", default=None, metavar="templates|lm|both",
                       help="who writes the --generated-queries: attribute templates (default), the local language "
                            "model (doc2query; cached after the first training) or both")
    train.add_argument("--text-encoder", default="minilm", help="minilm, e5 (multilingual) or a local model directory")
    train.set_defaults(func=_train)

    ev = sub.add_parser("eval", help="baseline vs CrossCLIP: closed set, open set (5 folds), MovieLens posters, your folder")
    add_dataset(ev, "grocery", names=("grocery", "ml100k", "all"))
    _data_dir(ev)
    ev.add_argument("--json", default=None, metavar="PATH", help="report JSON (default: <out-dir>/retrieval_eval.json)")
    ev.add_argument("--out-dir", default="runs/retrieval_eval", help="folder for the Markdown table and plots")
    ev.add_argument("--quick", action="store_true", help="a slice, fewer epochs and 2 folds: a smoke run of a few minutes")
    ev.add_argument("--folds", type=int, default=5)
    ev.add_argument("--seeds", type=int, default=1,
                    help="seeded trainings of each model per grocery open-set fold, averaged per fold (default 1)")
    ev.add_argument("--text-encoder", default="minilm")
    ev.set_defaults(func=_eval)

    search = sub.add_parser("search", help="search the catalogue by text (hybrid by default) or by image")
    search.add_argument("query", nargs="?", default=None, help="query text (English, Chinese or mixed)")
    search.add_argument("--image", default=None, help="query image path")
    search.add_argument("--vector", default=None, metavar="PATH.npy",
                        help="query vector (a .npy of dim D) against the item vectors your catalogue brings "
                             "(item_vectors.npy): made by the same model as they were")
    search.add_argument("--query-encoder", default=None, metavar="DIR",
                        help="text query against the item vectors your catalogue brings: the local checkpoint of the "
                             "model that made them (sentence-transformers or CLIP/SigLIP directory); without it a text "
                             "query searches the item texts with the engine's own encoders")
    search.add_argument("-k", type=int, default=5)
    search.add_argument("--mode", default="hybrid",
                        help="text search: hybrid (learned weights), rrf, or one signal: bm25, trigram, minilm, "
                             "minilm_title, e5, e5_title, image, fused")
    search.add_argument("--space", choices=["fused", "image", "text"], default="fused",
                        help="image search: match fused items, catalogue images or item texts")
    search.add_argument("--filter", action="append", default=[], metavar="FIELD=VALUE",
                        help="restrict results, e.g. category=Fruit, price=[0,20], in_stock=true (JSON values; repeatable)")
    search.add_argument("--dataset", default="grocery", help="grocery, ml100k or a folder of your own data (README 'Your data')")
    _data_dir(search)
    search.add_argument("--model", default=None, help="aligned model directory (default: the one `train` wrote)")
    search.add_argument("--json", default=None, metavar="PATH", help="write the result JSON to PATH")
    _knowledge(search)
    search.set_defaults(func=_search)

    evq = sub.add_parser("eval-queries", help="search quality on a judged query set (dev-learned fusion, held-out figures)")
    add_dataset(evq, "grocery")
    evq.add_argument("--queries", default=None, metavar="PATH",
                     help="JSONL query set with graded judgements (required for a folder; default: the committed set)")
    _data_dir(evq)
    evq.add_argument("--model", default=None, help="aligned model directory (default: the one `train` wrote)")
    evq.add_argument("--json", default=None, metavar="PATH", help="report JSON (default: runs/eval_queries_<dataset or folder name>.json)")
    _knowledge(evq)
    evq.set_defaults(func=_eval_queries)

    sb = sub.add_parser("search-bench", help="one-query latency p50/p99 of the warm Searcher at 81 and 100k items")
    sb.add_argument("--sizes", default="81,100000", help="catalogue sizes, comma-separated (81 = the grocery products)")
    sb.add_argument("--queries", type=int, default=200)
    sb.add_argument("--encode-sample", type=int, default=1000,
                    help="synthetic sizes: item texts encoded per dense signal, tiled with noise to the size")
    _data_dir(sb)
    sb.add_argument("--model", default=None)
    sb.add_argument("--json", default="runs/search_bench.json", metavar="PATH", help="report JSON")
    sb.set_defaults(func=_search_bench)

    bench = sub.add_parser("bench", help="FAISS index benchmark: Flat / IVF / HNSW build time, memory, QPS, recall@10")
    add_bench_arguments(bench)
    bench.set_defaults(func=run_bench_from_args)


def _train(args) -> int:
    from retrieval.align.model import AlignConfig, AlignTrainingConfig
    from retrieval.pipeline import train_retrieval

    overrides = {k: v for k, v in (("epochs", args.epochs), ("view_loss_weight", args.view_loss_weight),
                                   ("generated_queries", args.generated_queries),
                                   ("query_writer", args.query_writer)) if v is not None}
    training = AlignTrainingConfig(**overrides)
    summary = train_retrieval(args.dataset, data_dir=args.data_dir, out_dir=args.out,
                              config=AlignConfig(text_encoder=args.text_encoder), training=training)
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


def _filters(pairs: list[str]) -> dict:
    out = {}
    for pair in pairs:
        field, sep, value = pair.partition("=")
        if not sep or not field:
            raise SystemExit(f"--filter {pair!r}: expected FIELD=VALUE")
        try:
            out[field] = json.loads(value)
        except json.JSONDecodeError:
            out[field] = value  # a bare word: a category name
    return out


def _knowledge(parser) -> None:
    parser.add_argument("--knowledge", action=argparse.BooleanOptionalAction, default=None,
                        help="append WordNet glosses and hypernyms to the item texts searched (default: on for "
                             "grocery, off for ml100k and folders)")


def _search(args) -> int:
    from crossrec_core.persist import write_json
    from retrieval.searcher import Searcher

    if sum(x is not None for x in (args.query, args.image, args.vector)) != 1:
        raise SystemExit("give exactly one of a query text, --image PATH or --vector PATH.npy")
    if args.vector is not None or args.query_encoder is not None:
        return _search_vector(args)
    searcher = Searcher.load(args.dataset, model_dir=args.model, data_dir=args.data_dir, knowledge=args.knowledge)
    filters = _filters(args.filter) or None
    result = (searcher.search(args.query, k=args.k, filters=filters, mode=args.mode) if args.query is not None
              else searcher.search_image(args.image, k=args.k, space=args.space, filters=filters))
    if result.english:
        print(f"(English signals read: {result.english!r})")
    for rank, h in enumerate(result.hits, 1):
        why = ", ".join(f"{n} #{s.rank}" for n, s in sorted(h.signals.items(), key=lambda kv: kv[1].rank or 10**9) if s.rank)
        print(f"{rank:2d}. {str(h.item_id):<8s} {h.score:7.3f}  {h.title:<40s} [{why}]")
    if result.note:
        print(f"note: {result.note}")
        if "no aligned model" in result.note:
            from crossrec_datasets import is_named, open_dataset
            from retrieval.provenance import train_first_hint

            if not is_named(args.dataset) and open_dataset(args.dataset).item_vectors() is not None:
                print("note: your catalogue brings its own item vectors: this text query searched the item texts with "
                      "the engine's own encoders; to search your vectors, give a query vector from the same model "
                      "(--vector PATH.npy) or that model's local checkpoint (--query-encoder DIR)")
            print(f"hint: {train_first_hint(args.dataset)}")
    if args.json:
        write_json(args.json, result.to_dict())
        print(f"wrote {args.json}")
    return 0


def _search_vector(args) -> int:
    """Search the item vectors the catalogue brings: by --vector, or by a text query through --query-encoder."""
    import numpy as np

    from crossrec_core.persist import write_json
    from crossrec_datasets import open_dataset
    from retrieval.search import ItemVectorSearch

    if args.query_encoder is not None and args.query is None:
        raise SystemExit("--query-encoder encodes a text query: give the query text")
    search = ItemVectorSearch(open_dataset(args.dataset, data_dir=args.data_dir), query_encoder=args.query_encoder)
    if args.vector is not None:
        try:
            query = np.load(args.vector, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise SystemExit(f"--vector {args.vector!r}: not a readable .npy array ({exc})") from None
        hits = search.search_vector(query, k=args.k)
    else:
        hits = search.search_text(args.query, k=args.k)
        print(f"(text encoded by {search.query_encoder.fingerprint}, searched against {search.source})")
    for rank, h in enumerate(hits, 1):
        print(f"{rank:2d}. {str(h.metadata['item_id']):<12s} {h.score:7.3f}  {h.metadata['title']}")
    if args.json:
        write_json(args.json, {"query_vector": args.vector, "query": args.query, "query_encoder": args.query_encoder,
                               "hits": [
            {"item_id": h.metadata["item_id"], "title": h.metadata["title"], "score": h.score} for h in hits]})
        print(f"wrote {args.json}")
    return 0


def _eval_queries(args) -> int:
    from retrieval.plots import plot_query_eval
    from retrieval.query_eval import QueryEvalOptions, evaluate_queries, markdown, write_report

    report = evaluate_queries(QueryEvalOptions(args.dataset, data_dir=args.data_dir, model_dir=args.model,
                                               query_set=args.queries, knowledge=args.knowledge))
    path = write_report(report, args.json or f"runs/eval_queries_{Path(args.dataset).name}.json")
    plot = plot_query_eval(report, path.with_suffix(".png"))
    print(markdown(report))
    print(f"learned weights (dev): {json.dumps(report['learned_weights'])}")
    print(f"wrote {path} and {plot}")
    return 0


def _search_bench(args) -> int:
    from crossrec_core.persist import write_json
    from retrieval.search_bench import SearchBenchOptions, run_search_bench

    sizes = tuple(int(s) for s in args.sizes.split(","))
    report = run_search_bench(SearchBenchOptions(sizes=sizes, queries=args.queries, encode_sample=args.encode_sample,
                                                 data_dir=args.data_dir, model_dir=args.model))
    write_json(args.json, report)
    print(f"wrote {args.json}")
    return 0
