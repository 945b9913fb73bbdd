"""Where the real data lives: ``--data-dir`` > ``$CROSSREC_DATA_DIR`` > ``../shared/data``."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["DATA_DIR_ENV", "DatasetNotFoundError", "resolve_data_dir"]

DATA_DIR_ENV = "CROSSREC_DATA_DIR"


class DatasetNotFoundError(FileNotFoundError):
    """A data set is missing or not laid out as its manifest says."""


def _default_candidates() -> list[Path]:
    # ../shared/data relative to the project root (a source checkout) and to the working directory.
    project_root = Path(__file__).resolve().parents[2]
    return [project_root.parent / "shared" / "data", Path.cwd().parent / "shared" / "data", Path.cwd() / "shared" / "data"]


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """Return the root holding ``grocery-store/`` and ``ml100k-posters/``.

    ``data_dir`` wins, then the ``CROSSREC_DATA_DIR`` environment variable, then ``../shared/data``
    beside the project checkout.
    """
    if data_dir is not None:
        path = Path(data_dir).expanduser()
        if not path.is_dir():
            raise DatasetNotFoundError(f"data_dir={str(path)!r} is not a directory")
        return path
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        path = Path(env).expanduser()
        if not path.is_dir():
            raise DatasetNotFoundError(f"${DATA_DIR_ENV}={env!r} is not a directory")
        return path
    for candidate in _default_candidates():
        if candidate.is_dir():
            return candidate
    raise DatasetNotFoundError(
        "no data directory found: pass --data-dir / data_dir=, or set "
        f"${DATA_DIR_ENV}, to a folder holding grocery-store/ and ml100k-posters/"
    )
