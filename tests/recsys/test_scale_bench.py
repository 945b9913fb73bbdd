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
