"""``crossrec rank train|eval|bench`` and ``crossrec recommend``: thin wrappers over ``recsys``."""

from __future__ import annotations

import argparse
from dataclasses import replace

from crossrec.options import add_data_dir, add_dataset, add_json

__all__ = ["add_parser"]

_MODEL_HELP = "engine directory (default: $CROSSREC_HOME/models/ranker-<dataset>)"


def _common(p: argparse.ArgumentParser) -> None:
    add_dataset(p, "ml100k", names=("ml100k",))
    add_data_dir(p)
    p.add_argument("--embedder", default=None,
                   help="aligned item embedder directory (default: the model trained on the dataset, if any)")


def add_parser(subparsers) -> None:
    rank = subparsers.add_parser("rank", help="ranking engine: train, evaluate, benchmark")
    sub = rank.add_subparsers(dest="rank_command", required=True)

    train = sub.add_parser("train", help="fit candidates + TorchRec ranker on all ratings and save")
    _common(train)
    train.add_argument("--out", default=None, help=_MODEL_HELP)
    train.add_argument("--epochs", type=int, default=None, help="ranker epochs (default: EngineTrainingConfig.epochs)")
    train.add_argument("--no-multimodal", action="store_true", help="train without the aligned item embeddings")
    train.add_argument("--n-models", type=int, default=None, help="rankers averaged (default: EngineConfig.n_models)")
    train.set_defaults(func=_train)

    ev = sub.add_parser("eval", help="offline evaluation (chronological 80/10/10 split)")
    _common(ev)
    add_json(ev, required=True)
    ev.add_argument("--out-dir", default="runs/rank_eval", help="folder for metrics.md and metrics.png")
    ev.add_argument("--epochs", type=int, default=None, help="ranker epochs (default: EngineTrainingConfig.epochs)")
    ev.add_argument("--n-models", type=int, default=None, help="rankers averaged (default: EngineConfig.n_models)")
    ev.add_argument("--max-users", type=int, default=None)
    ev.add_argument("--seeds", type=int, default=None,
                    help="seeded trainings of each ranker row, averaged per user (default: RankingEvalConfig.seeds)")
    ev.set_defaults(func=_eval)

    bench = sub.add_parser("bench", help="training samples/s and recommend latency")
    _common(bench)
    add_json(bench)
    bench.add_argument("--model", default=None, help="a saved engine (default: train one for 1 epoch)")
    bench.set_defaults(func=_bench)

    scale = sub.add_parser("bench-scale", help="train + evaluate ranking on synthetic shops of growing size: "
                           "time and peak memory per stage (JSON + plot)")
    scale.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000], help="interaction counts")
    scale.add_argument("--items", type=int, default=100_000)
    scale.add_argument("--interactions-per-user", type=int, default=50)
    scale.add_argument("--eval-users", type=int, default=10_000)
    scale.add_argument("--epochs", type=int, default=1)
    scale.add_argument("--work-dir", default="runs/rank_scale", help="where the synthetic shops are generated")
    scale.add_argument("--threads", type=int, default=None, help="torch and BLAS threads (default: their own; "
                       "1 on a shared machine)")
    add_json(scale, default_help="default: <work-dir>/rank_scale.json; the plot goes beside it")
    scale.set_defaults(func=_bench_scale)

    rec = subparsers.add_parser("recommend", help="top-k items for a user from a saved engine")
    rec.add_argument("--user", required=True, help="the user's id (as in your data: a number or a string)")
    rec.add_argument("-k", type=int, default=10)
    add_dataset(rec, "ml100k", names=("ml100k",))
    rec.add_argument("--model", default=None, help=_MODEL_HELP)
    rec.add_argument("--profiles", default=None, help="a live profile store (SQLite) to read instead of the saved snapshot")
    rec.add_argument("--genres", nargs="*", default=None)
    add_json(rec)
    rec.set_defaults(func=_recommend)


def _engine_configs(config, training, args):
    """(architecture, training) configs with the options given on the command line."""
    if args.n_models is not None:
        config = replace(config, n_models=args.n_models)
    if args.epochs is not None:
        training = replace(training, epochs=args.epochs)
    return config, training


def _train(args) -> int:
    from recsys.engine import EngineConfig, EngineTrainingConfig
    from recsys.training import default_engine_dir, train_engine

    config, training = _engine_configs(EngineConfig(multimodal=not args.no_multimodal), EngineTrainingConfig(), args)
    out = args.out or default_engine_dir(args.dataset)
    engine = train_engine(out, config, training, args.dataset, data_dir=args.data_dir, embedder_dir=args.embedder)
    s = engine.train_stats
    print(f"saved to {out}: {s.samples} training samples, {s.samples_per_s:.0f} samples/s, final loss {s.final_loss:.4f}")
    return 0


def _eval(args) -> int:
    from recsys.evaluate import RankingEvalConfig, evaluate_ranking

    base = RankingEvalConfig()
    engine, training = _engine_configs(base.engine, base.training, args)
    config = replace(base, dataset=args.dataset, data_dir=args.data_dir, out_dir=args.out_dir, max_users=args.max_users,
                     embedder_dir=args.embedder, engine=engine, training=training,
                     seeds=base.seeds if args.seeds is None else args.seeds)
    report = evaluate_ranking(config)
    report.to_json(args.json)
    print(report.to_markdown())
    print(f"JSON: {args.json}  table: {report.markdown_path}  plot: {report.plot_path}")
    return 0


def _bench(args) -> int:
    from recsys.bench import RankingBenchConfig, benchmark_ranking

    report = benchmark_ranking(RankingBenchConfig(model_dir=args.model, dataset=args.dataset, data_dir=args.data_dir,
                                                  embedder_dir=args.embedder), json_path=args.json)
    print(report.to_markdown())
    print(f"JSON: {args.json}")
    return 0


def _bench_scale(args) -> int:
    from recsys.scale_bench import ScaleConfig, run_scale_bench

    report = run_scale_bench(ScaleConfig(sizes=tuple(args.sizes), items=args.items,
                                         interactions_per_user=args.interactions_per_user, eval_users=args.eval_users,
                                         epochs=args.epochs, work_dir=args.work_dir, threads=args.threads),
                             json_path=args.json)
    for row in report.rows:
        stages = ", ".join(f"{s} {c['seconds']:.1f} s ({c['cpu_s']:.0f} s CPU) / {c['peak_rss_gib']:.2f} GiB"
                           for s, c in row["stages"].items())
        print(f"{row['interactions']:>11,d} interactions, {row['users']:,d} users: {stages}; "
              f"NDCG@10 {row['metrics']['ndcg@10']:.4f} on {row['eval_users']:,d} users")
    if report.growth:
        print("time ~ size^b: " + ", ".join(f"{s} b={b:.2f}" for s, b in report.growth.items()))
    print(f"JSON: {report.json_path}  plot: {report.plot_path}")
    return 0


def _recommend(args) -> int:
    from crossrec_core.persist import write_json
    from recsys import ProfileStore, RankingEngine
    from recsys.training import default_engine_dir, load_id_maps

    model = args.model or default_engine_dir(args.dataset)
    profiles = ProfileStore.open(args.profiles) if args.profiles else None
    engine = RankingEngine.from_pretrained(model, profiles=profiles)
    items, users = load_id_maps(model)
    user = _engine_user(args.user, users)
    filters = {"genres": tuple(args.genres)} if args.genres else None
    rec = engine.recommend(user, k=args.k, filters=filters)
    titles = engine.catalogue.titles
    pos = engine.catalogue.positions(rec.item_ids)
    # the user's own ids at the edge: SKUs for a folder with string ids
    item_ids = items.external(rec.item_ids) if items is not None else [int(i) for i in rec.item_ids]
    if args.json:
        write_json(args.json, {
            "user_id": args.user, "item_ids": item_ids, "titles": [titles[p] for p in pos], "scores": rec.scores.tolist(),
            "sources": rec.sources, "top_feature_group": rec.top_feature_group, "cold_start": rec.cold_start,
            "reason": rec.reason})
    print(f"user {args.user}: {rec.reason}")
    for rank, (i, s, src, g, p) in enumerate(zip(item_ids, rec.scores, rec.sources, rec.top_feature_group, pos), 1):
        print(f"{rank:3d}. {str(i):>10s} {s:8.3f}  {titles[p][:50]:50s} via {'+'.join(src)}; top feature group: {g}")
    return 0


def _engine_user(user: str, users) -> int:
    """The engine's int64 id of the user's id ``user``; a user the engine never saw gets an id
    outside the map (the engine answers with its cold-start fallback)."""
    from crossrec_core.errors import UnknownIdError

    if users is None:
        try:
            return int(user)
        except ValueError:
            raise ValueError(f"--user={user!r}: this engine was saved without an id map, so user ids are integers") from None
    try:
        return users.internal([user])[0]
    except UnknownIdError:
        return int(user) if users.identity and user.lstrip("-").isdigit() else -1
