"""``crossrec demo``: a thin wrapper over ``crossrec.demo.run_demo`` (wired by ``crossrec/cli.py``)."""

from __future__ import annotations

import argparse

from crossrec.options import dataset_arg

__all__ = ["add_parser"]


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: must be >= 1")
    return value


def add_parser(subparsers) -> None:
    """Register the top-level ``demo`` command."""
    demo = subparsers.add_parser(
        "demo", help="the main job: train or reuse the models, search, rank, stream events through the embedded broker",
        description="Train (or reuse) the aligned retrieval models and the ranking engine, show cross-media search, "
                    "stream MovieLens ratings through the embedded Kafka broker into a live profile store, and show "
                    "recommendations before and after a click and a new item becoming searchable.")
    demo.add_argument("--dataset", default=None, type=dataset_arg(()), metavar="FOLDER",
                      help="run the demo on a folder of your own data (README 'Your data'): trains light models on it, "
                           "replays its interactions through the broker (default: grocery + MovieLens)")
    demo.add_argument("--data-dir", default=None,
                      help="folder holding grocery-store/ and ml100k-posters/ (default: $CROSSREC_DATA_DIR or ../shared/data)")
    demo.add_argument("--out-dir", default="runs/demo", help="broker data, profile store, item index, summary.json")
    demo.add_argument("--quick", action="store_true",
                      help="5,000 events, 1 ranker epoch and 2 alignment epochs when training (minutes when models exist)")
    demo.add_argument("--full-training", action="store_true",
                      help="train the aligned models with the evaluation commands' full defaults (30 epochs, 4 "
                           "augmented views; tens of minutes on 2 cores) instead of the demo's lighter settings "
                           "(8 epochs, 1 augmented view)")
    demo.add_argument("--retrain", action="store_true", help="train every model again even when one exists")
    demo.add_argument("--events", type=_positive_int, default=None,
                      help="MovieLens ratings to replay, first by time (default 20,000; 5,000 with --quick)")
    demo.add_argument("--user", type=_positive_int, default=None,
                      help="user whose recommendations are shown (default: a median-history user of the slice)")
    demo.add_argument("--no-progress", action="store_true", help="no progress bars")
    demo.add_argument("--serve", action="store_true",
                      help="then keep the service and its web page running on the demo's profile store (Ctrl-C stops)")
    demo.add_argument("--port", type=_positive_int, default=8000, help="port of the page with --serve (default 8000)")
    demo.set_defaults(func=_demo)


def _demo(args) -> int:
    from crossrec.demo import DemoOptions, run_demo, serve_demo

    options = DemoOptions(data_dir=args.data_dir, out_dir=args.out_dir, quick=args.quick,
                          full_training=args.full_training, retrain=args.retrain,
                          events=args.events, user_id=args.user, progress=not args.no_progress)
    if args.dataset is not None:
        from crossrec.demo_folder import run_folder_demo

        report = run_folder_demo(args.dataset, options)
    else:
        report = run_demo(options)
    print(report.summary())
    print(f"\nreport: {report.outputs['report']}")
    if args.serve:
        serve_demo(options, port=args.port)
    return 0
