"""Which class loads a saved recommender: one table above the models, so that no model module
imports another to load it (``candidates`` and ``engine`` no longer import each other)."""

from __future__ import annotations

import importlib
import os

from crossrec_core.errors import ModelLoadError
from crossrec_core.persist import saved_kind

__all__ = ["RECOMMENDERS", "load_recommender"]

# kind recorded in config.json -> (module, class); modules are imported on use (the engine pulls in torch)
RECOMMENDERS = {
    "recsys.popularity": ("recsys.candidates", "PopularityRecommender"),
    "recsys.als": ("recsys.candidates", "ALSRecommender"),
    "recsys.bpr": ("recsys.candidates", "BPRRecommender"),
    "recsys.engine": ("recsys.engine", "RankingEngine"),
}


def load_recommender(directory: str | os.PathLike, profiles=None):
    """Any saved recommender (popularity, ALS, BPR or the ranking engine), chosen by the kind its
    ``config.json`` records; ``profiles`` (a live store) replaces the saved snapshot."""
    kind = saved_kind(directory)
    if kind not in RECOMMENDERS:
        raise ModelLoadError(f"{directory!s} holds a {kind!r}, not a recommender (one of {sorted(RECOMMENDERS)})")
    module, name = RECOMMENDERS[kind]
    return getattr(importlib.import_module(module), name).from_pretrained(directory, profiles=profiles)
