"""Every location the engine reads or writes, resolved in one place.

- data: ``--data-dir`` > ``$CROSSREC_DATA_DIR`` > ``../shared/data`` beside the checkout.
- home: ``$CROSSREC_HOME`` (default ``~/.cache/crossrec``): trained models and caches.
- broker: ``$CROSSREC_BROKER_DIR`` (default ``./runs/broker``): the embedded broker's state.
"""

from __future__ import annotations

import os
from pathlib import Path

from crossrec_core.errors import DatasetNotFoundError

__all__ = [
    "DATA_DIR_ENV", "CROSSREC_HOME_ENV", "BROKER_DIR_ENV",
    "resolve_data_dir", "crossrec_home", "models_dir", "cache_dir", "default_broker_dir",
]

DATA_DIR_ENV = "CROSSREC_DATA_DIR"
CROSSREC_HOME_ENV = "CROSSREC_HOME"
BROKER_DIR_ENV = "CROSSREC_BROKER_DIR"


def _default_candidates() -> list[Path]:
    # ../shared/data relative to the project root (a source checkout) and to the working directory.
    project_root = Path(__file__).resolve().parents[1]
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


def crossrec_home() -> Path:
    """``$CROSSREC_HOME``, by default ``~/.cache/crossrec``: trained models and caches."""
    return Path(os.environ.get(CROSSREC_HOME_ENV) or Path.home() / ".cache" / "crossrec").expanduser()


def models_dir() -> Path:
    """``$CROSSREC_HOME/models``: every trained model, one folder each."""
    return crossrec_home() / "models"


def cache_dir(kind: str) -> Path:
    """``$CROSSREC_HOME/cache/<kind>``: derived data (features, converted weights, assets) that
    every run shares whatever its working directory."""
    return crossrec_home() / "cache" / kind


def default_broker_dir() -> Path:
    """``$CROSSREC_BROKER_DIR`` or ``./runs/broker`` (``runs/`` is git-ignored)."""
    return Path(os.environ.get(BROKER_DIR_ENV) or Path.cwd() / "runs" / "broker")
