"""Offline metrics: per-user values, their means, the paired bootstraps and the eval config."""

from __future__ import annotations

import numpy as np
import pytest

from recsys.evaluate import (
    RankingEvalConfig,
    _positions_among,
    gain_gap_bootstrap,
    paired_bootstrap,
    per_user_metrics,
    ranking_metrics,
)


def test_per_user_metrics_and_their_means():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(4, 50))
    relevant = [np.array([3, 7]), np.array([], np.int64), np.array([10]), np.array([0, 1, 2])]
    excluded = [np.array([5]), np.array([], np.int64), np.array([11, 12]), np.array([], np.int64)]
    scores[2, 10] = 100.0  # user 2's only relevant item ranks first
    per_user = per_user_metrics(scores, relevant, excluded)
    assert len(per_user["ndcg@10"]) == 3  # the user without relevant items is skipped
    assert per_user["ndcg@10"][1] == pytest.approx(1.0) and per_user["recall@10"][1] == 1.0
    means = ranking_metrics(scores, relevant, excluded)
    assert means["users"] == 3
    for metric, values in per_user.items():
        assert means[metric] == pytest.approx(values.mean())
    # An excluded item never counts, however high it scores.
    scores[0, 5] = 1e9
    assert per_user_metrics(scores, relevant, excluded)["ndcg@10"][0] == per_user["ndcg@10"][0]


def test_paired_bootstrap():
    base = np.random.default_rng(1).uniform(0.1, 0.5, size=200)
    better = paired_bootstrap(base + 0.05, base)
    assert better["value"] == pytest.approx(0.05) and better["p_not_better"] == 0.0
    assert better["ci95_low"] == pytest.approx(0.05) and better["ci95_high"] == pytest.approx(0.05)
    noisy = base + np.random.default_rng(2).normal(0, 0.2, size=200)
    diff = paired_bootstrap(noisy, base)
    assert diff["ci95_low"] < diff["value"] < diff["ci95_high"] and diff["users"] == 200
    ratio = paired_bootstrap(base * 1.1, base, ratio=True)
    assert ratio["value"] == pytest.approx(1.1) and ratio["p_not_better"] == 0.0
    assert paired_bootstrap(base, base)["p_not_better"] == 1.0
    with pytest.raises(ValueError, match="shapes"):
        paired_bootstrap(base, base[:10])


def test_gain_gap_bootstrap_lines_up_the_cold_users():
    rng = np.random.default_rng(3)
    gain_all = rng.normal(0.01, 0.001, size=300)
    cold_users = np.arange(0, 300, 3)
    bigger = gain_gap_bootstrap(gain_all, gain_all[cold_users] + 0.02, cold_users)
    assert bigger["value"] == pytest.approx(gain_all[cold_users].mean() + 0.02 - gain_all.mean())
    assert bigger["ci95_low"] > 0.0 and bigger["p_not_better"] == 0.0 and bigger["cold_users"] == 100
    smaller = gain_gap_bootstrap(gain_all, gain_all[cold_users] - 0.02, cold_users)
    assert smaller["ci95_high"] < 0.0 and smaller["p_not_better"] == 1.0
    with pytest.raises(ValueError, match="cold_users"):
        gain_gap_bootstrap(gain_all, gain_all[:5], cold_users)


def test_positions_among_skips_users_without_outer_items():
    outer = [np.array([1, 2]), np.array([], np.int64), np.array([3]), np.array([4, 5])]
    inner = [np.array([2]), np.array([], np.int64), np.array([], np.int64), np.array([5])]
    # Users 0 and 3 have inner items; among the users with outer items (0, 2, 3) they are 0 and 2.
    assert _positions_among(outer, inner).tolist() == [0, 2]


def test_eval_config_needs_a_seed():
    assert RankingEvalConfig().seeds >= 1
    with pytest.raises(ValueError, match="seeds=0"):
        RankingEvalConfig(seeds=0)


def test_reports_share_one_shape(tmp_path):
    import json

    from crossrec_core.reports import Report
    from recsys.bench import RankingBenchReport
    from recsys.evaluate import RankingEvalReport
    from retrieval.evaluate import RetrievalEvalReport
    from retrieval.index_bench import IndexBenchReport

    assert all(issubclass(c, Report) for c in (RankingBenchReport, RankingEvalReport, RetrievalEvalReport, IndexBenchReport))
    report = RankingBenchReport(device="cpu", catalogue_size=1682, train_samples=None, train_samples_per_s=None,
                                train_world_size=None, single_p50_ms=3.0, single_p99_ms=9.0, single_rounds=[],
                                batch={"16": {"p50_ms": 20.0, "p99_ms": 30.0, "users_per_s": 800.0}}, torch_threads=1)
    report.to_json(tmp_path / "bench.json")
    assert json.loads((tmp_path / "bench.json").read_text())["single_p99_ms"] == 9.0
    assert "| score 16 users | 20.0 | 30.0 | 800 |" in report.to_markdown()
