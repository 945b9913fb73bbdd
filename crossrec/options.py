"""Shared command-line options, one meaning each:

- ``--dataset NAME|FOLDER``: a data set name or a folder of the user's own data (README "Your data").
- ``--data-dir DIR``: where the *named* data sets live (``grocery-store/``, ``ml100k-posters/``).
- ``--json PATH``: write the command's JSON report to PATH (never a print switch).
"""

from __future__ import annotations

import argparse
import os

__all__ = ["add_dataset", "add_data_dir", "add_json", "dataset_arg"]


def dataset_arg(names: tuple[str, ...]):
    """An argparse ``type`` accepting one of ``names`` or an existing folder."""

    def parse(value: str) -> str:
        if value in names or os.path.isdir(value):
            return value
        raise argparse.ArgumentTypeError(f"{value!r} is neither one of {', '.join(names)} nor an existing folder")

    parse.__name__ = "dataset"
    return parse


def add_dataset(parser: argparse.ArgumentParser, default: str, names: tuple[str, ...] = ("grocery", "ml100k")) -> None:
    parser.add_argument("--dataset", default=default, type=dataset_arg(names), metavar="NAME|FOLDER",
                        help=f"{' or '.join(names)}, or a folder of your own data (catalogue.*, interactions.*, ...; "
                             f"see README 'Your data'; check it with `crossrec data check`) (default: {default})")


def add_data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", default=None, metavar="DIR",
                        help="folder holding the named data sets grocery-store/ and ml100k-posters/ "
                             "(default: $CROSSREC_DATA_DIR or ../shared/data)")


def add_json(parser: argparse.ArgumentParser, required: bool = False, default_help: str = "") -> None:
    parser.add_argument("--json", default=None, required=required, metavar="PATH",
                        help="write the JSON report to PATH" + (f" ({default_help})" if default_help else ""))
