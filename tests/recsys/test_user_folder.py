"""Ranking on a user's own folder (string SKUs and user ids) through the CLI, no code change."""

from __future__ import annotations

import json

import polars as pl
import pytest

from crossrec.cli import main
from recsys.training import load_id_maps, load_rank_inputs

_SMALL = ["--epochs", "1", "--n-models", "1"]


@pytest.fixture(scope="module")
def trained(shop_folder, tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    mp = pytest.MonkeyPatch()
    mp.setenv("CROSSREC_HOME", str(home))
    out = home / "engine"
    assert main(["rank", "train", "--dataset", str(shop_folder), "--out", str(out), *_SMALL]) == 0
    yield out
    mp.undo()


def test_folder_as_engine_inputs(shop_folder, caplog):
    data = load_rank_inputs(str(shop_folder))
    assert len(data.catalogue) == 40 and data.log.height == 2_000 and data.log["user_id"].dtype == pl.Int64
    assert data.features is None and "no aligned model" in caplog.text  # said, not silently random
    # implicit kinds weigh as streamed: a purchase is the strongest signal
    rating = dict(data.log.group_by("rating").len().iter_rows())
    assert max(rating) == 10.0
    assert data.log.filter(pl.col("positive")).height == pl.read_parquet(shop_folder / "interactions.parquet").filter(
        pl.col("kind").is_in(["purchase", "click"]) | ((pl.col("kind") == "rating") & (pl.col("value") >= 4))).height


def test_train_and_recommend_speak_the_users_ids(trained, shop_folder, tmp_path, capsys):
    items, users = load_id_maps(trained)
    assert len(items) == 40 and not users.identity
    assert main(["recommend", "--model", str(trained), "--user", "U0000003", "-k", "5", "--json", str(tmp_path / "r.json")]) == 0
    rec = json.loads((tmp_path / "r.json").read_text())
    catalogue = set(pl.read_parquet(shop_folder / "catalogue.parquet")["item_id"])
    assert rec["user_id"] == "U0000003" and len(rec["item_ids"]) == 5 and set(rec["item_ids"]) <= catalogue
    assert not rec["cold_start"]
    assert main(["recommend", "--model", str(trained), "--user", "someone-new", "-k", "3"]) == 0
    assert "popularity fallback" in capsys.readouterr().out


@pytest.mark.slow
def test_eval_on_the_folder(shop_folder, tmp_path, monkeypatch):
    monkeypatch.setenv("CROSSREC_HOME", str(tmp_path))
    assert main(["rank", "eval", "--dataset", str(shop_folder), "--json", str(tmp_path / "e.json"), "--out-dir",
                 str(tmp_path / "ev"), "--seeds", "1", *_SMALL]) == 0
    report = json.loads((tmp_path / "e.json").read_text())
    assert report["protocol"]["dataset"] == "shop" and report["protocol"]["test_users"] > 0
    assert 0.0 <= report["ranker"]["ndcg@10"] <= 1.0 and (tmp_path / "ev" / "metrics.png").is_file()
