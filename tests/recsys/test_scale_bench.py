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


def test_catalogue_positions_map_arrays_and_lists_with_minus_one_for_unknown_ids():
    """The vectorised id -> row lookup (a 10M-event log is mapped in one call) agrees with a dict."""
    import numpy as np

    from recsys.data import Catalogue

    r = np.random.default_rng(0)
    ids = r.choice(10_000, size=500, replace=False).astype(np.int64)  # unsorted ids
    cat = Catalogue(ids, np.zeros((500, 1), bool), ("g",), tuple(str(i) for i in ids))
    queries = r.integers(-5, 10_005, 2_000)
    expected = {int(i): p for p, i in enumerate(ids)}
    want = [expected.get(int(q), -1) for q in queries]
    np.testing.assert_array_equal(cat.positions(queries), want)
    np.testing.assert_array_equal(cat.positions(queries.tolist()), want)
    assert cat.positions([]).shape == (0,) and cat.positions([]).dtype == np.int64


def test_als_and_bpr_passes_are_bounded_by_the_sample_budget():
    from recsys.candidates import ALSTrainingConfig, BPRTrainingConfig

    assert ALSTrainingConfig().passes(80_000) == 15 and ALSTrainingConfig().passes(800_000) == 15
    assert ALSTrainingConfig().passes(8_000_000) == 6

    t = BPRTrainingConfig(iterations=100, max_samples=50_000_000)
    assert t.passes(80_000) == 100  # ML-100K: unchanged
    assert t.passes(8_000_000) == 6 and t.passes(10**9) == 1
    assert BPRTrainingConfig(max_samples=None).passes(10**9) == 100
    with pytest.raises(ValueError, match="max_samples=0"):
        BPRTrainingConfig(max_samples=0)


def test_ranker_examples_come_from_at_most_max_label_users(catalogue, split):
    """The label-user budget bounds the ranker's examples; a budget above the user count changes nothing."""
    import numpy as np

    from recsys.engine import EngineConfig, EngineTrainingConfig, RankingEngine
    from recsys.data import UserTable

    cfg = EngineConfig(multimodal=False, n_per_source=20, n_models=1)
    users = UserTable({}, ())

    def examples(cap):
        eng = RankingEngine(catalogue, users, None, None, cfg, EngineTrainingConfig(epochs=1, max_label_users=cap))
        labels = eng._label_sample(split.train)
        return labels["user_id"].n_unique(), labels

    n_all, full = examples(None)
    n_big, same = examples(n_all)
    assert n_big == n_all and same.equals(full)
    n_small, part = examples(7)
    assert n_small == 7 and part.height < full.height
    assert examples(7)[1].equals(part)  # seeded
    with pytest.raises(ValueError, match="max_label_users=0"):
        EngineTrainingConfig(max_label_users=0)


def test_top_k_metrics_equal_the_full_ranking_metrics():
    import numpy as np

    from recsys.evaluate import per_user_metrics
    from recsys.scale_bench import _top_k_metrics

    r = np.random.default_rng(0)
    scores = np.full((40, 500), -np.inf, np.float32)
    for b in range(40):  # 30 to 100 candidates per user, the rest not candidates
        cand = r.choice(500, int(r.integers(30, 100)), replace=False)
        scores[b, cand] = r.normal(size=len(cand))
    relevant = [np.unique(r.integers(0, 500, int(r.integers(0, 6)))) for _ in range(40)]
    relevant = [np.union1d(rel, r.choice(np.flatnonzero(np.isfinite(s)), 2)) if b % 3 else rel
                for b, (rel, s) in enumerate(zip(relevant, scores))]  # some relevant items among the candidates
    seen = [np.unique(r.integers(0, 500, 20)) for _ in range(40)]
    full, top = per_user_metrics(scores, relevant, seen), _top_k_metrics(scores, relevant, seen)
    for m in ("ndcg@10", "recall@10"):
        assert len(top[m]) == len(full[m]) > 20
        np.testing.assert_allclose(top[m], full[m], atol=1e-12)
    assert full["ndcg@10"].max() > 0
