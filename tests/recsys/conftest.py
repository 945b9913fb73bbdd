"""Shared fixtures: a small real slice of MovieLens 100K (first users by id)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from crossrec_datasets import GENRES, load_movielens


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
