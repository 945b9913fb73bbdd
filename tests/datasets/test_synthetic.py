"""The synthetic shop: shaped like a real log, reproducible, streamed in chunks, CLI-reachable."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from crossrec.cli import main
from crossrec_datasets.synthetic import KINDS, SynthConfig, make_shop


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    # a small chunk size so that several chunks are written and concatenated
    return make_shop(tmp_path_factory.mktemp("shop") / "s", n_items=500, n_users=80, n_interactions=12_345,
                     seed=3, config=SynthConfig(chunk=5_000))


def test_shop_tables_and_shapes(shop):
    cat = pl.read_parquet(shop / "catalogue.parquet")
    assert cat.height == 500 and cat["item_id"].is_unique().all()
    assert {"item_id", "title", "text", "category", "brand", "colour", "price", "in_stock", "image"} <= set(cat.columns)
    assert (cat["text"].str.len_chars() > 40).all() and (cat["price"] > 0).all()
    # every title names its brand and colour, and the text repeats the title
    assert all(r["brand"] in r["title"] and r["colour"] in r["title"] and r["text"].startswith(r["title"])
               for r in cat.iter_rows(named=True))
    inter = pl.read_parquet(shop / "interactions.parquet")
    assert inter.height == 12_345 and inter["timestamp"].is_sorted()
    assert set(inter["kind"].unique()) <= set(KINDS)
    assert set(inter["item_id"].unique()) <= set(cat["item_id"]) and inter["user_id"].n_unique() <= 80
    ratings = inter.filter(pl.col("kind") == "rating")["value"]
    assert ratings.is_between(1, 5).all() and inter.filter(pl.col("kind") == "view")["value"].null_count() > 0
    assert pl.read_parquet(shop / "users.parquet").height == 80
    assert json.loads((shop / "synthetic.json").read_text())["seed"] == 3


def test_popularity_is_long_tailed(shop):
    counts = np.sort(pl.read_parquet(shop / "interactions.parquet")["item_id"].value_counts()["count"].to_numpy())[::-1]
    # the top 10% of items draw far more than 10% of the events
    assert counts[: len(counts) // 10].sum() > 0.4 * counts.sum()


def test_same_seed_same_shop(tmp_path, shop):
    again = make_shop(tmp_path / "again", n_items=500, n_users=80, n_interactions=12_345, seed=3,
                      config=SynthConfig(chunk=5_000))
    for name in ("catalogue.parquet", "interactions.parquet", "users.parquet"):
        assert pl.read_parquet(again / name).equals(pl.read_parquet(shop / name))


def test_images_and_photos(tmp_path):
    out = make_shop(tmp_path / "img", n_items=12, n_users=5, n_interactions=100, images=True)
    cat = pl.read_parquet(out / "catalogue.parquet")
    photos = pl.read_parquet(out / "photos.parquet")
    assert all((out / p).is_file() for p in cat["image"]) and all((out / p).is_file() for p in photos["image"])
    assert set(photos["item_id"]) == set(cat["item_id"])


@pytest.mark.parametrize("kwargs, match", [
    ({"n_items": 0}, "n_items=0"), ({"n_users": -1}, "n_users=-1"), ({"n_interactions": 1.5}, "n_interactions=1.5"),
])
def test_bad_sizes_named(tmp_path, kwargs, match):
    args = {"n_items": 10, "n_users": 10, "n_interactions": 10, **kwargs}
    with pytest.raises(ValueError, match=match):
        make_shop(tmp_path / "bad", **args)
    assert not (tmp_path / "bad").exists()


def test_cli_synth(tmp_path, capsys):
    assert main(["data", "synth", "--out", str(tmp_path / "c"), "--items", "30", "--users", "7", "--interactions", "200"]) == 0
    assert pl.read_parquet(tmp_path / "c" / "interactions.parquet").height == 200
    assert "30 items" in capsys.readouterr().out
