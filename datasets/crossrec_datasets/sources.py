"""``open_dataset``: a data set name or a folder -> the :class:`~crossrec_datasets.base.Dataset` that reads it."""

from __future__ import annotations

import os
from pathlib import Path

from crossrec_core.errors import DatasetNotFoundError
from crossrec_datasets.base import NAMES, Dataset, is_named
from crossrec_datasets.folder import FolderDataset, RecBoleDataset
from crossrec_datasets.grocery import GroceryDataset
from crossrec_datasets.movielens import MovieLensDataset
from crossrec_datasets.schema import Positives

__all__ = ["open_dataset"]


def open_dataset(source: str | os.PathLike, *, data_dir: str | os.PathLike | None = None,
                 positives: Positives | None = None) -> Dataset:
    """A data set by name (``grocery``, ``ml100k``; read from ``data_dir``) or a folder path.

    A folder holds either the user-data layout (``catalogue.{parquet,csv,jsonl}`` ...) or RecBole
    atomic files (``<name>.inter``, ``<name>.item``, ``<name>.user``).
    """
    if is_named(source):
        ds: Dataset = GroceryDataset(data_dir) if source == "grocery" else MovieLensDataset(data_dir)
    else:
        path = Path(source).expanduser()
        if not path.is_dir():
            raise DatasetNotFoundError(f"dataset={str(source)!r} is neither a data set name {NAMES} nor a folder")
        recbole = any(path.glob("*.inter")) and not any(path.glob("catalogue.*"))
        ds = RecBoleDataset(path) if recbole else FolderDataset(path)
    if positives is not None:
        ds.positives = positives
    return ds
