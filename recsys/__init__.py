"""Ranking engine: user profiles, candidate generation and a TorchRec ranker."""

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

__all__ = [
    "INTERACTION_KINDS",
    "KIND_WEIGHTS",
    "ApplyResult",
    "Interaction",
    "ProfileStore",
    "UserProfile",
    "event_weights",
    "interactions_from_ratings",
]
