"""``crossrec``: the command-line entry point. Each group lives in its own module; this file only
assembles them, turns the engine's errors into one-line messages and sets the exit code."""

from __future__ import annotations

import argparse
import logging
import os
import sys

__all__ = ["main", "build_parser"]

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def build_parser() -> argparse.ArgumentParser:
    from crossrec import cli_creative, cli_data, cli_demo, cli_rank, cli_retrieval, cli_serve, cli_stream

    parser = argparse.ArgumentParser(prog="crossrec", description="Multimodal recommender engine")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more, and show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in (cli_demo, cli_data, cli_retrieval, cli_rank, cli_stream, cli_creative, cli_serve):
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from crossrec_core.errors import CrossrecError

    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (CrossrecError, ValueError, FileNotFoundError) as exc:  # a TypeError is a bug: let it show its traceback
        if args.verbose:
            raise
        print(f"crossrec: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
