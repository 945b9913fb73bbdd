"""Shared fixtures: a small real slice of MovieLens 100K (first users by id)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from crossrec_datasets import GENRES, load_movielens, open_dataset
from recsys.data import ItemFeatures, catalogue_from_dataset, chronological_split, users_from_dataset
from recsys.engine import EngineConfig, EngineTrainingConfig, RankingEngine
from recsys.profiles import ProfileStore


@pytest.fixture(scope="session")
def movielens():
    return load_movielens()


@pytest.fixture(scope="session")
def ratings_slice(movielens) -> pl.DataFrame:
    """Ratings of the first 60 users (about 6,000 rows)."""
    return movielens.ratings.filter(pl.col("user_id") <= 60)


@pytest.fixture(scope="session")
def item_categories(movielens) -> dict[int, list[str]]:
    items = movielens.items
    return {int(r["item_id"]): [g for g in GENRES if r[g]] for r in items.iter_rows(named=True)}


@pytest.fixture(scope="session")
def item_vectors(movielens) -> tuple[list[int], np.ndarray]:
    """Deterministic stand-in item vectors (N, 32): tests check the maths, not the model."""
    ids = movielens.items["item_id"].to_list()
    vecs = np.random.default_rng(0).normal(size=(len(ids), 32)).astype(np.float32)
    return ids, vecs / np.linalg.norm(vecs, axis=1, keepdims=True)


@pytest.fixture(scope="session")
def ml_dataset():
    return open_dataset("ml100k")


@pytest.fixture(scope="session")
def catalogue(ml_dataset):
    return catalogue_from_dataset(ml_dataset)


@pytest.fixture(scope="session")
def split(ratings_slice):
    return chronological_split(ratings_slice)


@pytest.fixture(scope="session")
def features(catalogue, item_vectors):
    ids, vecs = item_vectors
    rng = np.random.default_rng(1)
    other = rng.normal(size=vecs.shape).astype(np.float32)
    other /= np.linalg.norm(other, axis=1, keepdims=True)
    return ItemFeatures(np.asarray(ids), other, vecs, vecs, np.ones(len(ids), bool), "test-stand-in")


@pytest.fixture(scope="session")
def engine(catalogue, split, features, ml_dataset):
    """A tiny two-stage engine fitted once on the slice (one DMP training run)."""
    config = EngineConfig(n_per_source=30, als_factors=16, bpr_factors=16, embedding_dim=8)
    training = EngineTrainingConfig(epochs=1, held_out=0.2, als_iterations=5, bpr_iterations=20)
    eng = RankingEngine(catalogue, users_from_dataset(ml_dataset), features, ProfileStore(None), config, training)
    return eng.fit(split.train, progress=False)
