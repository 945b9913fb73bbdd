"""Training entry points of the ranking engine: a data set (name or folder) as engine inputs, and
one call that fits the engine on it and saves it with the data set's id maps."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from crossrec_core.paths import models_dir
from recsys.data import Catalogue, ItemFeatures, UserTable, catalogue_from_dataset, load_item_features, log_from_dataset, users_from_dataset
from recsys.engine import EngineConfig, EngineTrainingConfig, RankingEngine
from recsys.profiles import ProfileStore

__all__ = ["RankInputs", "load_rank_inputs", "default_engine_dir", "train_engine", "ID_MAPS", "load_id_maps"]

log = logging.getLogger(__name__)
ID_MAPS = ("items.parquet", "users.parquet")  # saved beside the engine, in ids/


@dataclass(frozen=True)
class RankInputs:
    """A data set as the engine reads it: ``log`` has ``LOG_COLUMNS`` plus ``positive`` (the data
    set's positives setting), with int64 ids; ``items``/``user_ids`` map them to the user's ids."""

    dataset: Any  # crossrec_datasets.Dataset
    catalogue: Catalogue
    users: UserTable
    log: pl.DataFrame
    features: ItemFeatures | None
    items: Any  # IdMap
    user_ids: Any  # IdMap


def _embedder_for(dataset, embedder: Any, embedder_dir: str | os.PathLike | None):
    """The aligned item embedder: given, loaded from ``embedder_dir``, or the model trained on this
    data set (``$CROSSREC_HOME/models/crossclip-<name>``); ``None`` when none was trained yet
    (random projections would only add noise features)."""
    if embedder is not None:
        return embedder
    from retrieval.align.embedder import default_model_dir, load_item_embedder

    if embedder_dir is None and not (default_model_dir(dataset.name) / "config.json").is_file():
        return None
    from retrieval.provenance import check_catalogue

    emb = load_item_embedder(embedder_dir, dataset=dataset.name)
    check_catalogue(emb.source, dataset)  # a model aligned on another catalogue can score below chance here
    return emb


def load_rank_inputs(dataset: str | os.PathLike = "ml100k", data_dir: str | None = None, *, embedder: Any = None,
                     embedder_dir: str | None = None, max_users: int | None = None,
                     multimodal: bool = True) -> RankInputs:
    """A data set (``ml100k`` or a folder) as engine inputs; item features from the vectors the
    catalogue brings (``Dataset.item_vectors``), else from the aligned embedder (cached under
    ``$CROSSREC_HOME/cache/recsys``). A folder without a trained aligned model (train
    one with ``crossrec retrieval train --dataset FOLDER``, or pass ``embedder_dir``) gets no
    multimodal features, with a warning."""
    from crossrec_datasets import open_dataset

    ds = open_dataset(dataset, data_dir=data_dir)
    items, users_map = ds.items, ds.users_map
    catalogue = catalogue_from_dataset(ds, items)
    log_frame = log_from_dataset(ds, items, users_map)
    if log_frame.is_empty():
        from crossrec_core.errors import DataFormatError

        raise DataFormatError(f"dataset {ds.name!r} ({ds.root}) has no usable interactions: ranking needs interactions.* "
                              "(run `crossrec data check` on the folder)")
    if max_users is not None:
        keep = sorted(log_frame["user_id"].unique().to_list())[:max_users]
        log_frame = log_frame.filter(pl.col("user_id").is_in(keep))
    feats = None
    vectors = ds.item_vectors() if multimodal and embedder is None and embedder_dir is None else None
    if vectors is not None:  # the catalogue's own item vectors stand in for the aligned model's
        log.info("dataset %r brings its own item vectors (%s, dim %d): the ranker uses them as item features",
                 ds.name, vectors.source, vectors.dim)
        feats = ItemFeatures(catalogue.item_ids, vectors.vectors, vectors.vectors, vectors.vectors,
                             np.ones(len(vectors.vectors), bool), vectors.fingerprint)
    elif multimodal:
        emb = _embedder_for(ds, embedder, embedder_dir)
        if emb is None:
            from crossrec_datasets import is_named

            log.warning("dataset %r has no aligned model (train one: crossrec retrieval train --dataset %s); "
                        "ranking without multimodal item features", ds.name, ds.name if is_named(ds.name) else ds.root)
        else:
            cat = ds.catalogue().select("image").collect()
            images = [Path(p) if p else None for p in cat["image"].to_list()]
            feats = load_item_features(catalogue.item_ids, ds.item_texts(), images, embedder=emb)
    return RankInputs(ds, catalogue, users_from_dataset(ds, users_map), log_frame, feats, items, users_map)


def default_engine_dir(dataset: str | os.PathLike = "ml100k") -> Path:
    """``$CROSSREC_HOME/models/ranker-<name>`` (a folder's name for a folder), beside the aligned
    models: where ``crossrec rank train`` and the demo save the engine and ``recommend`` reads it."""
    from crossrec_datasets import is_named

    name = str(dataset) if is_named(dataset) else Path(dataset).expanduser().resolve().name
    return models_dir() / f"ranker-{name}"


def load_id_maps(engine_dir: str | os.PathLike):
    """The (items, users) id maps saved beside an engine, or ``(None, None)`` for an engine saved
    without them (ids are then the engine's integers)."""
    from crossrec_datasets import IdMap

    folder = Path(engine_dir) / "ids"
    if not all((folder / f).is_file() for f in ID_MAPS):
        return None, None
    return tuple(IdMap.load(folder / f) for f in ID_MAPS)


def train_engine(out_dir: str | os.PathLike, config: EngineConfig = EngineConfig(),
                 training: EngineTrainingConfig = EngineTrainingConfig(), dataset: str | os.PathLike = "ml100k",
                 data_dir: str | None = None, embedder: Any = None, embedder_dir: str | None = None,
                 progress: bool = True) -> RankingEngine:
    """Fit the engine on every interaction of ``dataset`` and save it (with its profile store and
    the id maps, in ``ids/``) to ``out_dir``.

    Runs as is in one process, or under ``torchrun --nproc_per_node N`` (the ranker trains with N
    ranks; each rank fits the candidate models itself).
    """
    from dataclasses import replace

    data = load_rank_inputs(dataset, data_dir, embedder=embedder, embedder_dir=embedder_dir, multimodal=config.multimodal)
    if data.features is None and config.multimodal:
        config = replace(config, multimodal=False)
    engine = RankingEngine(data.catalogue, data.users, data.features, ProfileStore(None), config, training)
    engine.fit(data.log, progress=progress)
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun every rank trains, rank 0 saves
        engine.save_pretrained(out_dir)
        for id_map, name in zip((data.items, data.user_ids), ID_MAPS):
            id_map.save(Path(out_dir) / "ids" / name)
    return engine
