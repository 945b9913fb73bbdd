"""Which catalogue an aligned model was trained on, and the warning when it is used on another.

``crossrec retrieval train`` writes ``training.json`` beside the weights with the data set's name
and its catalogue fingerprint (``Dataset.fingerprint()``: item ids and texts). The fingerprint
lives there, not in the model's ``config.json``: the config is the architecture, and index
fingerprints are derived from it. A model aligned on one catalogue can score below chance on
another (2% image -> text Acc@1 measured with the grocery model on a 10-category catalogue of
another domain), so every consumer calls :func:`check_catalogue` and says so.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from crossrec_core.persist import atomic_write_text

__all__ = ["TRAINING_RECORD", "write_training_record", "training_record", "check_catalogue", "train_first_hint"]

log = logging.getLogger(__name__)
TRAINING_RECORD = "training.json"


def train_first_hint(dataset: str | os.PathLike) -> str:
    """The one first step for a new catalogue, as every message words it."""
    return f"train one on this catalogue first: crossrec retrieval train --dataset {dataset}"


def write_training_record(model_dir: str | os.PathLike, dataset: Any, **extra: Any) -> dict:
    """Write ``training.json``: ``dataset`` (name), ``catalogue_fingerprint``, ``items`` and ``extra``."""
    record = {"dataset": dataset.name, "catalogue_fingerprint": dataset.fingerprint(),
              "items": int(dataset.catalogue().select("item_id").collect().height), **extra}
    atomic_write_text(Path(model_dir) / TRAINING_RECORD, json.dumps(record, indent=2))
    return record


def training_record(model_dir: str | os.PathLike | None) -> dict | None:
    """The model's ``training.json``, or None (no record: a model from before the record existed)."""
    path = Path(model_dir) / TRAINING_RECORD if model_dir else None
    if path is None or not path.is_file():
        return None
    try:
        return json.loads(path.read_text("utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def check_catalogue(model_dir: str | os.PathLike | None, dataset: Any) -> str | None:
    """The warning (also logged) when the model in ``model_dir`` was trained on another catalogue
    than ``dataset``'s (fingerprints differ; by name for records without one); None when it matches
    or nothing was recorded."""
    record = training_record(model_dir)
    if record is None:
        return None
    fingerprint = record.get("catalogue_fingerprint")
    if fingerprint is not None:
        if fingerprint == dataset.fingerprint():
            return None
        what = (f"catalogue {record.get('dataset')!r} (fingerprint {fingerprint}), not on this one "
                f"({dataset.name!r}, fingerprint {dataset.fingerprint()})")
    elif record.get("dataset") in (None, dataset.name):
        return None
    else:
        what = f"{record.get('dataset')!r}, not on {dataset.name!r}"
    message = (f"the aligned model {model_dir} was trained on {what}: its scores may be at or below chance here; "
               f"{train_first_hint(dataset.root if not _named(dataset) else dataset.name)}")
    log.warning(message)
    return message


def _named(dataset: Any) -> bool:
    from crossrec_datasets import is_named

    return is_named(dataset.name)
