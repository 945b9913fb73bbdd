"""The creative bandit: learning, persistence across a restart, replay safety and bad feedback."""

import numpy as np
import pytest

from crossrec_core.errors import UnknownIdError
from generation.bandit import Bandit, BanditConfig, Click, FeedbackError, Impression, Segmenter, Variant
from generation.bandit_sim import DirectChannel, SimulatedWorld, SimulationConfig, new_bandit, simulate

SMALL = SimulationConfig(impressions=6000, n_users=300, n_items=40, hidden_segments=4, round_size=300, tail=2000)


def test_bandit_beats_random_and_best_single_in_a_small_world(tmp_path):
    world = SimulatedWorld(SMALL)
    bandit = new_bandit(world, tmp_path / "bandit")
    report = simulate(world, bandit, DirectChannel(bandit)).summary()
    assert report["bandit"]["expected_ctr_tail"] > report["best_single"]["expected_ctr_tail"]
    assert report["bandit"]["expected_ctr_tail"] > report["random"]["expected_ctr_tail"]
    assert report["oracle"]["regret"] == 0 and report["bandit"]["regret"] < report["random"]["regret"]
    assert report["bandit"]["regret_curve"][-1] == pytest.approx(report["bandit"]["regret"], abs=0.01)
    # every impression the bandit showed came back through the channel
    assert bandit.arm_counts()["impressions"].sum() == SMALL.impressions
    assert bandit.arm_counts()["clicks"].sum() == report["bandit"]["clicks"]


def _toy(tmp_path) -> Bandit:
    seg = Segmenter.fit([{"drama": 1.0}, {"comedy": 1.0}, {"drama": 0.9, "comedy": 0.1}], 2)
    bandit = Bandit.create(tmp_path / "b", BanditConfig(n_segments=2), seg)
    bandit.register_variants([Variant("a:noir", "a", "noir", 0.9), Variant("a:pastel", "a", "pastel", 0.2)])
    bandit.assign_users({"1": {"drama": 1.0}, "2": {"comedy": 1.0}, "3": {}})
    return bandit


def test_state_survives_a_restart_and_replays_count_nothing_twice(tmp_path):
    bandit = _toy(tmp_path)
    events = [Impression(f"i{k}", "1", "a", "a:noir") for k in range(5)] + [Click("c0", "i0", "1", "a:noir")]
    first = bandit.apply(events)
    assert (first.impressions, first.clicks, first.duplicates) == (5, 1, 0)
    bandit.flush()
    digest, counts = bandit.state_digest(), bandit.arm_counts()
    bandit.close()
    reopened = Bandit.open(tmp_path / "b")
    assert reopened.state_digest() == digest
    assert all(np.array_equal(reopened.arm_counts()[k], counts[k]) for k in counts)
    replay = reopened.apply(events + [Click("c1", "i0", "1", "a:noir")])  # a second click on one impression
    assert (replay.impressions, replay.clicks, replay.duplicates) == (0, 0, 7)
    reopened.flush()
    assert reopened.state_digest() == digest
    assert reopened.segment_of("3") == 2 and reopened.segment_of("nobody") == 2  # the cold segment


def test_unflushed_feedback_is_not_kept_after_a_crash(tmp_path):
    bandit = _toy(tmp_path)
    bandit.flush()
    digest = bandit.state_digest()
    bandit.apply([Impression("i0", "1", "a", "a:noir")])
    bandit._conn.close()  # a crash: no flush, no commit
    assert Bandit.open(tmp_path / "b").state_digest() == digest


def test_prior_from_quality_decides_before_evidence(tmp_path):
    bandit = _toy(tmp_path)
    picks = [bandit.choose_variant("1", "a").family for _ in range(300)]
    assert picks.count("noir") > picks.count("pastel")  # quality 0.9 vs 0.2, no clicks yet


def test_bad_feedback_is_rejected_with_its_reason(tmp_path):
    bandit = _toy(tmp_path)
    result = bandit.apply([
        Impression("i1", "1", "a", "zzz"),  # variant never registered
        Impression("i2", "1", "b", "a:noir"),  # variant of another item
        Click("c1", "never-shown", "1", "a:noir"),
        Impression("i3", "1", "a", "a:noir"),
        Click("c2", "i3", "2", "a:noir"),  # someone else's impression
    ])
    reasons = [r for _, r in result.rejected]
    assert result.impressions == 1 and len(reasons) == 4
    assert any("never registered" in r for r in reasons) and any("belongs to item" in r for r in reasons)
    assert any("never shown" in r for r in reasons) and any("does not match" in r for r in reasons)
    with pytest.raises(UnknownIdError, match="item_id='nope'"):
        bandit.choose_variant("1", "nope")
    with pytest.raises(FeedbackError, match="family='sepia'"):
        bandit.register_variants([Variant("x", "a", "sepia")])
    with pytest.raises(FileExistsError):
        Bandit.create(tmp_path / "b", bandit.config, bandit.segmenter)
    with pytest.raises(ValueError, match="prior_ctr"):
        BanditConfig(prior_ctr=0.0)
