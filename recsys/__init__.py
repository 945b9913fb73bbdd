"""Ranking engine: user profiles, candidate generation (ALS, BPR, ANN, popularity) and a TorchRec ranker."""

from recsys.base import Filters, Recommendations, Recommender
from recsys.candidates import (
    ALSConfig,
    ALSRecommender,
    ALSTrainingConfig,
    BPRConfig,
    BPRRecommender,
    BPRTrainingConfig,
    PopularityRecommender,
)
from recsys.data import Catalogue, ItemFeatures, UserTable, chronological_split, load_item_features
from recsys.profiles import (
    INTERACTION_KINDS,
    KIND_WEIGHTS,
    ApplyResult,
    Interaction,
    ProfileStore,
    UserProfile,
    event_weights,
    interactions_from_ratings,
)
from recsys.registry import RECOMMENDERS, load_recommender

__all__ = [
    "INTERACTION_KINDS", "KIND_WEIGHTS", "ApplyResult", "Interaction", "ProfileStore", "UserProfile",
    "event_weights", "interactions_from_ratings",
    "Filters", "Recommendations", "Recommender",
    "ALSConfig", "ALSTrainingConfig", "ALSRecommender", "BPRConfig", "BPRTrainingConfig", "BPRRecommender",
    "PopularityRecommender",
    "RECOMMENDERS", "load_recommender",
    "Catalogue", "ItemFeatures", "UserTable", "chronological_split", "load_item_features",
    "EngineConfig", "EngineTrainingConfig", "RankingEngine",
]


def __getattr__(name: str):
    # The engine pulls in torch/torchrec; importing recsys for profiles alone stays light.
    if name in ("EngineConfig", "EngineTrainingConfig", "RankingEngine"):
        from recsys import engine

        return getattr(engine, name)
    raise AttributeError(f"module 'recsys' has no attribute {name!r}")
