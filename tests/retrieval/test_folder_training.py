"""`crossrec retrieval train --dataset FOLDER`: a user's folder trains and indexes with no code change."""

from __future__ import annotations

import json

import pytest

from crossrec.cli import main


@pytest.mark.slow  # frozen MobileNetV2 features of 40 photos + a short alignment training
def test_train_on_a_folder_then_rank_with_its_features(shop_folder, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("CROSSREC_HOME", str(tmp_path))
    assert main(["retrieval", "train", "--dataset", str(shop_folder), "--epochs", "2"]) == 0
    model = tmp_path / "models" / "crossclip-shop"
    assert (model / "config.json").is_file() and json.loads((model / "training.json").read_text())["dataset"] == "shop"
    from recsys.training import load_rank_inputs

    data = load_rank_inputs(str(shop_folder))  # the folder's own aligned model gives the item features
    assert data.features is not None and data.features.fused.shape[0] == 40
