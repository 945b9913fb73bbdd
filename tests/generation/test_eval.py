"""The eval's statistics (the run itself is the `crossrec creative eval` command)."""

from __future__ import annotations

import numpy as np
import pytest

from generation.evaluate import EvalOptions, _training_settings, auc, auc_interval, paired_bootstrap
from retrieval.align.model import AlignConfig, AlignedModel, AlignTrainingConfig


def test_auc_and_paired_bootstrap():
    assert auc([2, 3], [1, 0]) == 1.0 and auc([1], [1]) == 0.5 and auc([0], [1]) == 0.0
    rng = np.random.default_rng(0)
    pos, neg = rng.integers(0, 5, 60), rng.integers(0, 4, 80)  # many ties
    pairwise = ((pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()) / (60 * 80)
    assert auc(pos, neg) == pytest.approx(pairwise)
    lo, hi = auc_interval(pos, neg[:60], np.repeat(np.arange(12), 5), n=300)
    assert lo < auc(pos, neg[:60]) < hi
    # unpaired: 6 negatives per group (the ceiling compares each poster with several other users)
    lo2, hi2 = auc_interval(pos, neg[:72], np.repeat(np.arange(12), 5), np.repeat(np.arange(12), 6), n=300)
    assert lo2 < auc(pos, neg[:72]) < hi2
    wins = (rng.random(400) < 0.8).astype(float)
    groups = np.repeat(np.arange(40), 10)
    lo, hi = paired_bootstrap(wins, groups, n=500)
    assert lo < wins.mean() < hi and hi - lo < 0.15
    # clustered wins (whole users win or lose) give a wider interval than independent ones
    clustered = np.repeat((rng.random(40) < 0.8).astype(float), 10)
    c_lo, c_hi = paired_bootstrap(clustered, groups, n=500)
    assert c_hi - c_lo > hi - lo


def test_options():
    quick = EvalOptions.quick()
    assert (quick.users, quick.items) == (10, 5) and EvalOptions().users * EvalOptions().items >= 1000
    with pytest.raises(ValueError, match="weights"):
        EvalOptions(weights=(1.5,))


def test_the_report_names_the_scorers_training(tmp_path):
    AlignedModel(AlignConfig.baseline(fusion=False)).save_pretrained(tmp_path, AlignTrainingConfig(epochs=3, image_views=0))
    settings = _training_settings(str(tmp_path))
    assert settings["epochs"] == 3 and settings["image_views"] == 0
    assert _training_settings(str(tmp_path / "absent")) is None and _training_settings("") is None
