"""``crossrec serve`` and ``crossrec serve-bench``: thin wrappers over ``crossrec.service``
(wired by ``crossrec/cli.py``)."""

from __future__ import annotations

import argparse

__all__ = ["add_parser"]


def _positive(kind):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{text!r}: must be > 0")
        return value

    return parse


def _service_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", default=None, help="folder holding grocery-store/ and ml100k-posters/")
    p.add_argument("--catalogues", nargs="+", default=["grocery", "ml100k"], help="catalogues to serve (default both)")
    p.add_argument("--ranker-dir", default=None, help="saved ranking engine (default: the one `crossrec rank train` saved)")
    p.add_argument("--profile-store", default=None,
                   help="the live profile store the stream consumers write (default: the engine's snapshot, in memory)")
    p.add_argument("--workers", type=_positive(int), default=1, help="uvicorn worker processes (default 1 for serve, 2 for serve-bench)")
    p.add_argument("--torch-threads", type=_positive(int), default=1, help="torch threads per worker (default 1)")
    p.add_argument("--recommend-cache", type=int, default=4096, metavar="N",
                   help="recommendations kept per worker while the user's profile is unchanged (default 4096; 0: off)")
    p.add_argument("--search-cache", type=int, default=4096, metavar="N",
                   help="text-search answers kept per worker, per query, k, mode and filters (default 4096; 0: off)")


def add_parser(subparsers) -> None:
    serve = subparsers.add_parser("serve", help="the HTTP API and web page (FastAPI on uvicorn)",
                                  description="Serve search, recommendations, creatives, event ingestion, health, "
                                              "metrics and the web page. Writes need $CROSSREC_API_KEY (or --api-key-file).")
    serve.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    _service_options(serve)
    serve.add_argument("--bootstrap", default=None, help="Kafka host:port for events and creative requests (default: none; writes answer 503)")
    serve.add_argument("--topic-prefix", default="crossrec", help="topic names are PREFIX.user-events, ... (default crossrec)")
    serve.add_argument("--api-key-file", default=None, help="file holding the API key for writes (else $CROSSREC_API_KEY)")
    serve.add_argument("--creatives-dir", default=None, help="finished creatives: DIR/<user>/<item>/poster.png, copy.json ...")
    serve.add_argument("--creative-cache", default=None, metavar="SQLITE",
                       help="the creative worker's cache index (its --state DIR/cache.sqlite): creatives served from it")
    serve.add_argument("--assets-dir", default=None, help="the creative worker's asset store (its --state DIR/assets)")
    serve.add_argument("--bandit", default=None, metavar="DIR",
                       help="a creative bandit state: picks the poster variant each user is shown (needs --creative-cache)")
    serve.add_argument("--reports-dir", default=None, help="evaluation charts (PNG) shown on the page (e.g. runs/)")
    serve.add_argument("--cors-origin", action="append", default=[], help="allow this origin (CORS is off by default)")
    serve.set_defaults(func=_serve)

    bench = subparsers.add_parser("serve-bench", help="open-loop load test of recommend + text search",
                                  description="Start the broker, a consumer and the service (N workers), then send "
                                              "recommend and text-search requests at fixed rates from this process "
                                              "(open loop) and report latency percentiles and errors per rate.")
    bench.add_argument("--json", required=True, help="write the JSON report to PATH")
    _service_options(bench)
    bench.set_defaults(workers=2)
    bench.add_argument("--rate", type=_positive(float), default=50.0, help="requests/s per route in the main run (default 50)")
    bench.add_argument("--duration", type=_positive(float), default=60.0, help="seconds of the main run (default 60)")
    bench.add_argument("--rates", type=_positive(float), nargs="*", default=[75.0, 100.0, 150.0],
                       help="higher rates per route tried after the main run, until p99 > 100 ms (default 75 100 150)")
    bench.add_argument("--step-duration", type=_positive(float), default=20.0, help="seconds per higher rate (default 20)")
    bench.add_argument("--catalogue", default="grocery", help="catalogue of the text searches (default grocery)")
    bench.add_argument("--new-queries", action="store_true",
                       help="search with a text not sent before on every request (default: the catalogue's 20 bench "
                            "queries in turn, as popular queries repeat)")
    bench.add_argument("--in-process", action="store_true",
                       help="no server, broker or load: load the models here and report the CPU time per request of "
                            "each route (recommend, search, search with new texts) sent one at a time through the app")
    bench.add_argument("--requests", type=_positive(int), default=200,
                       help="with --in-process: requests per route (default 200, at most 923)")
    bench.set_defaults(func=_bench)


def _config(args, **extra):
    from crossrec.service import ServiceConfig

    return ServiceConfig(catalogues=tuple(args.catalogues), data_dir=args.data_dir, ranker_dir=args.ranker_dir,
                         profile_store=args.profile_store, torch_threads=args.torch_threads,
                         recommend_cache=args.recommend_cache, search_cache=args.search_cache, **extra)


def _serve(args) -> int:
    from crossrec.service.server import serve

    config = _config(args, bootstrap=args.bootstrap, topic_prefix=args.topic_prefix, api_key_file=args.api_key_file,
                     creatives_dir=args.creatives_dir, reports_dir=args.reports_dir, cors_origins=tuple(args.cors_origin),
                     creative_cache=args.creative_cache, assets_dir=args.assets_dir, bandit_dir=args.bandit)
    config.api_key()  # an unreadable key file fails here, not in every worker
    print(f"crossrec serve: http://{args.host}:{args.port}/ ({args.workers} worker(s); API docs at /docs)", flush=True)
    serve(config, host=args.host, port=args.port, workers=args.workers)
    return 0


def _bench(args) -> int:
    from crossrec.service.bench import BenchOptions, run_cpu_bench, run_serve_bench
    from crossrec_core.persist import write_json

    if args.in_process:
        report = run_cpu_bench(_config(args), args.requests, args.catalogue, echo=print)
        write_json(args.json, report)
        print(f"report written to {args.json}")
        return 0
    options = BenchOptions(rate=args.rate, duration_s=args.duration, rates=tuple(args.rates),
                           step_duration_s=args.step_duration, workers=args.workers, catalogue=args.catalogue,
                           new_queries=args.new_queries)
    report = run_serve_bench(_config(args), options, echo=print)
    write_json(args.json, report)
    print(f"report written to {args.json}")
    return 0
