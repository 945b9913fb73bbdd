"""``crossrec broker start|stop|status`` and ``crossrec stream replay|consume|bench``: thin wrappers
over ``streaming`` (wired by ``crossrec/cli.py``)."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict

from crossrec.options import dataset_arg

__all__ = ["add_parser"]


def _positive(kind):
    def parse(text: str):
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{text!r}: must be > 0")
        return value

    return parse


def _connection(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bootstrap", default=None,
                   help="host:port of your Kafka cluster (default: $CROSSREC_BOOTSTRAP, else the embedded broker)")
    p.add_argument("--broker-dir", default=None, help="embedded broker data dir (default: $CROSSREC_BROKER_DIR or runs/broker)")
    p.add_argument("--topic-prefix", default="crossrec", help="topic names are PREFIX.user-events, ... (default crossrec)")
    p.add_argument("--partitions", type=_positive(int), default=4, help="partitions of topics created here (default 4)")


def _storage(p: argparse.ArgumentParser) -> None:
    p.add_argument("--storage", choices=["s3", "memory"], default="s3",
                   help="embedded broker log: s3 (SeaweedFS, durable; default) or memory (lowest latency, "
                        "lost when the broker stops)")


def _fetch_wait(p: argparse.ArgumentParser) -> None:
    p.add_argument("--fetch-wait-ms", type=_positive(int), default=100,
                   help="Kafka fetch max wait: lower cuts latency on quiet topics, costs idle polling (default 100)")


def add_parser(subparsers) -> None:
    """Register the ``broker`` and ``stream`` command groups."""
    broker = subparsers.add_parser("broker", help="the embedded Kafka-protocol broker (Tansu + SeaweedFS S3)")
    bsub = broker.add_subparsers(dest="broker_command", required=True)
    start = bsub.add_parser("start", help="start it in the background and wait until healthy")
    start.add_argument("--data-dir", default=None, help="where the log and state live (default: $CROSSREC_BROKER_DIR or runs/broker)")
    start.add_argument("--port", type=int, default=9092, help="Kafka port on 127.0.0.1 (0 = any free; default 9092)")
    start.add_argument("--s3-port", type=int, default=8333, help="S3 port on 127.0.0.1 (0 = any free; default 8333)")
    _storage(start)
    start.set_defaults(func=_broker_start)
    for name, func, text in (("stop", _broker_stop, "stop it (Tansu, then SeaweedFS)"),
                             ("status", _broker_status, "health of the processes and services; exit 1 if unhealthy")):
        cmd = bsub.add_parser(name, help=text)
        cmd.add_argument("--data-dir", default=None)
        cmd.set_defaults(func=func)

    stream = subparsers.add_parser("stream", help="Kafka event streams: replay, consume, benchmark")
    ssub = stream.add_subparsers(dest="stream_command", required=True)

    replay = ssub.add_parser("replay", help="publish MovieLens ratings (timed) or simulated grocery shoppers")
    _connection(replay)
    replay.add_argument("--source", default="movielens", type=dataset_arg(("movielens", "shoppers")),
                        metavar="movielens|shoppers|FOLDER",
                        help="MovieLens ratings, simulated grocery shoppers, or the interactions of a dataset folder")
    replay.add_argument("--data-dir", default=None, help="folder holding ml100k-posters/ and grocery-store/")
    pace = replay.add_mutually_exclusive_group()
    pace.add_argument("--speed", type=_positive(float), default=None,
                      help="event-time seconds per wall second (e.g. 86400: a day a second); default: no pacing")
    pace.add_argument("--rate", type=_positive(float), default=None, help="events per second; default: no pacing")
    replay.add_argument("--limit", type=_positive(int), default=None, help="first N ratings by time (default all)")
    replay.add_argument("--processes", type=_positive(int), default=1, help="producer processes (movielens, no --speed)")
    replay.add_argument("--users", type=_positive(int), default=50, help="shoppers: number of users")
    replay.add_argument("--events", type=_positive(int), default=2000, help="shoppers: number of user events")
    replay.add_argument("--seed", type=int, default=0)
    replay.set_defaults(func=_replay)

    consume = ssub.add_parser("consume", help="apply events to profiles (and the item index) until stopped")
    _connection(consume)
    consume.add_argument("--store", default="runs/stream/profiles.db", help="profile store (SQLite) path")
    consume.add_argument("--features", default=None, help="also keep online item counters (SQLite) here")
    consume.add_argument("--group", default="crossrec-workers", help="consumer group id")
    consume.add_argument("--workers", type=_positive(int), default=1, help="worker processes sharing the user events")
    consume.add_argument("--index-dir", default=None, help="also apply item events to the FAISS index kept here")
    consume.add_argument("--embedder", default=None, help="aligned item embedder directory (with --index-dir)")
    consume.add_argument("--recommender", default=None,
                         help="a saved recommender (ranking engine, ALS, BPR or popularity): publish creative requests for newly recommended items")
    consume.add_argument("--creative-k", type=_positive(int), default=5, help="top-k watched for creative requests")
    consume.add_argument("--max-events", type=_positive(int), default=None, help="stop after N events (per worker)")
    consume.add_argument("--idle-timeout", type=_positive(float), default=None,
                         help="stop after this many idle seconds with zero lag (default: run until Ctrl+C/SIGTERM)")
    _fetch_wait(consume)
    consume.set_defaults(func=_consume)

    bench = ssub.add_parser("bench", help="throughput, latency, kill -9, broker restart and new-item scenarios")
    bench.add_argument("--json", required=True, metavar="PATH", help="write the figures here (e.g. runs/stream_bench.json)")
    bench.add_argument("--scenario", action="append", default=None,
                       help="one of throughput, latency, kill9, broker_restart, new_item (repeatable; default all)")
    bench.add_argument("--events", type=_positive(int), default=None, help="throughput: first N ratings (default all 100k)")
    bench.add_argument("--workers", type=_positive(int), default=2, help="throughput: consumer processes")
    bench.add_argument("--producers", type=_positive(int), default=2, help="throughput: producer processes")
    bench.add_argument("--latency-rate", type=_positive(float), default=1000.0, help="latency: events/s (default 1000)")
    bench.add_argument("--latency-events", type=_positive(int), default=10_000)
    bench.add_argument("--crash-events", type=_positive(int), default=20_000, help="kill9/broker_restart: events")
    bench.add_argument("--out-dir", default="runs/stream-bench", help="stores and the private broker live here")
    bench.add_argument("--bootstrap", default=None, help="use this cluster instead of a private embedded broker")
    bench.add_argument("--data-dir", default=None)
    bench.add_argument("--partitions", type=_positive(int), default=4, help="partitions of the topics it creates (default 4)")
    _storage(bench)
    _fetch_wait(bench)
    bench.set_defaults(func=_bench)


def _broker(data_dir, **kw):
    from streaming.broker import Broker, BrokerConfig

    return Broker(BrokerConfig(data_dir=data_dir or "", **kw))


def _print_status(status) -> None:
    print(json.dumps(asdict(status), indent=2))


def _broker_start(args) -> int:
    status = _broker(args.data_dir, kafka_port=args.port, s3_port=args.s3_port, storage=args.storage).start()
    _print_status(status)
    print(f"bootstrap: {status.bootstrap}", file=sys.stderr)
    return 0 if status.healthy else 1


def _broker_stop(args) -> int:
    _print_status(_broker(args.data_dir).stop())
    return 0


def _broker_status(args) -> int:
    status = _broker(args.data_dir).status()
    _print_status(status)
    return 0 if status.healthy else 1


def _topics(args):
    from streaming.events import Topics

    return Topics(prefix=args.topic_prefix, partitions=args.partitions)


def _replay(args) -> int:
    from streaming.broker import resolve_bootstrap
    from streaming.replay import replay_dataset, simulate_shoppers

    bootstrap = resolve_bootstrap(args.bootstrap, args.broker_dir)
    if args.source != "shoppers":
        dataset = "ml100k" if args.source == "movielens" else args.source
        stats = replay_dataset(bootstrap, dataset, topics=_topics(args), speed=args.speed, rate=args.rate,
                               limit=args.limit, data_dir=args.data_dir, processes=args.processes)
    else:
        if args.speed is not None:
            raise SystemExit("--speed applies to --source movielens or a folder; use --rate for shoppers")
        stats = simulate_shoppers(bootstrap, topics=_topics(args), n_users=args.users, n_events=args.events,
                                  seed=args.seed, rate=args.rate, data_dir=args.data_dir)
    print(json.dumps({"sent": stats.sent, "elapsed_s": round(stats.elapsed_s, 3),
                      "events_per_s": round(stats.events_per_s, 1), "bootstrap": bootstrap}))
    return 0


def _consume(args) -> int:
    from crossrec.wiring import ProfileWiring, consume_stream
    from streaming.broker import resolve_bootstrap
    from streaming.worker import ConsumerConfig

    config = ConsumerConfig(bootstrap=resolve_bootstrap(args.bootstrap, args.broker_dir), topics=_topics(args),
                            group_id=args.group, consume=("user_events",), max_events=args.max_events,
                            idle_timeout_s=args.idle_timeout, fetch_max_wait_ms=args.fetch_wait_ms)
    wiring = ProfileWiring(args.store, features_path=args.features, recommender_dir=args.recommender,
                           creative_k=args.creative_k)
    stats = consume_stream(config, wiring, workers=args.workers, index_dir=args.index_dir, embedder_dir=args.embedder)
    print(json.dumps(stats.summary(), indent=2))
    return 0


def _bench(args) -> int:
    from crossrec.stream_bench import SCENARIOS, BenchConfig, run_bench

    config = BenchConfig(n_events=args.events, workers=args.workers, producers=args.producers,
                         latency_rate=args.latency_rate, latency_events=args.latency_events,
                         crash_events=args.crash_events, scenarios=tuple(args.scenario or SCENARIOS),
                         out_dir=args.out_dir, bootstrap=args.bootstrap, data_dir=args.data_dir,
                         storage=args.storage, fetch_max_wait_ms=args.fetch_wait_ms, partitions=args.partitions)
    summary = run_bench(config, json_path=args.json)
    print(json.dumps({k: v for k, v in summary.items() if k != "scenarios"}, indent=2))
    print(f"details: {args.json}", file=sys.stderr)
    return 0
