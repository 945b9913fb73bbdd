"""The loaders read the real data sets and fail clearly when they are missing."""

from __future__ import annotations

import polars as pl
import pytest

from crossrec_datasets import (
    DATA_DIR_ENV, DatasetNotFoundError, GENRES, load_grocery, load_manifest, load_movielens, resolve_data_dir,
)


def test_grocery_matches_manifest():
    g = load_grocery()
    counts = load_manifest("grocery").counts
    assert len(g.products) == counts["products"]
    for split, n in counts["photos"].items():
        assert len(g.split(split)) == n
    assert {p.category for p in g.products} == {"Fruit", "Vegetables", "Packages"}
    assert all(p.description.strip() and p.iconic_image.is_file() for p in g.products)
    assert g.products_frame().height == 81 and g.photos_frame()["split"].n_unique() == 3


def test_grocery_split_name_checked():
    with pytest.raises(ValueError, match="split='dev'"):
        load_grocery().split("dev")


def test_movielens_frames():
    ml = load_movielens()
    assert ml.ratings.height == load_manifest("ml100k").counts["ratings"]
    assert ml.users["user_id"].n_unique() == 943
    assert ml.items["item_id"].is_unique().all()  # the source CSV has duplicate rows
    assert set(GENRES) <= set(ml.items.columns)
    posters = ml.poster_paths()
    assert sum(p is not None for p in posters) > 1600 and all(p.is_file() for p in posters if p)
    assert len(ml.item_texts()) == ml.items.height
    assert ml.ratings.schema["timestamp"] == pl.Int64


def test_missing_data_dir_names_expected_layout(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="grocery-store/dataset/classes.csv"):
        load_grocery(tmp_path)
    with pytest.raises(DatasetNotFoundError, match="is not a directory"):
        resolve_data_dir(tmp_path / "nope")


def test_env_var_wins_over_default(tmp_path, monkeypatch):
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    assert resolve_data_dir() == tmp_path
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "missing"))
    with pytest.raises(DatasetNotFoundError, match=DATA_DIR_ENV):
        resolve_data_dir()
