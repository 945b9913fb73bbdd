"""The ranking scale benchmark runs end to end at toy size and reports every stage."""

from __future__ import annotations

import json

import pytest

from crossrec.cli import main
from recsys.scale_bench import STAGES, ScaleConfig


@pytest.mark.slow  # about a minute: two engine fits
def test_scale_bench_toy(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CROSSREC_HOME", str(tmp_path / "home"))
    assert main(["rank", "bench-scale", "--sizes", "3000", "6000", "--items", "300", "--interactions-per-user", "30",
                 "--eval-users", "50", "--work-dir", str(tmp_path / "w"), "--threads", "1",
                 "--json", str(tmp_path / "s.json")]) == 0
    report = json.loads((tmp_path / "s.json").read_text())
    assert [r["interactions"] for r in report["rows"]] == [3000, 6000]
    for row in report["rows"]:
        assert set(row["stages"]) == set(STAGES) and all(c["peak_rss_gib"] > 0 for c in row["stages"].values())
        assert 0 < row["eval_users"] <= 50 and 0.0 <= row["metrics"]["ndcg@10"] <= 1.0
    assert set(report["growth"]) == set(STAGES) and (tmp_path / "s.png").is_file()
    assert not (tmp_path / "w" / "shop-3000").exists()  # generated data removed unless kept
    assert "time ~ size^b" in capsys.readouterr().out


def test_scale_config_checked():
    with pytest.raises(ValueError, match="sizes="):
        ScaleConfig(sizes=(10,))
    with pytest.raises(ValueError, match="threads=0"):
        ScaleConfig(threads=0)


def test_negative_sampling_without_catalogue_sorts_draws_what_setdiff_would():
    """The scale path samples negatives without sorting the catalogue per user; the draws must be
    the ones ``rng.choice(np.setdiff1d(pool, seen))`` gives, so small-data results do not move."""
    import numpy as np

    from recsys.engine import _choice_excluding

    r = np.random.default_rng(0)
    for _ in range(500):
        pool = np.unique(r.integers(0, 80, int(r.integers(1, 60))))
        seen = np.unique(r.integers(-1, 80, int(r.integers(0, 40))))  # -1: an item unknown to the catalogue
        rest = np.setdiff1d(pool, seen)
        if len(rest) == 0:
            continue
        size, seed = (int(r.integers(1, 4)), int(r.integers(1, 5))), int(r.integers(0, 2**30))
        expected = np.random.default_rng(seed).choice(rest, size=size)
        np.testing.assert_array_equal(_choice_excluding(np.random.default_rng(seed), pool, seen, size), expected)
