"""kill -9 of the creative worker (a real process, the real studio in light mode) during a burst."""

import pytest

from crossrec.loop_bench import LoopBenchConfig, run_loop_bench

pytestmark = [pytest.mark.broker, pytest.mark.slow]  # loads the poster models in two worker processes


def test_kill9_during_a_burst_loses_nothing_and_stores_no_second_asset(broker, tmp_path):
    report = run_loop_bench(LoopBenchConfig(burst=6, kill_after=0.34, skip=("bandit", "trailer"),
                                            bootstrap=broker.bootstrap), json_path=tmp_path / "loop.json", progress=False)
    worker = report["worker"]
    assert 2 <= worker["killed_after_answered"] < 6
    assert worker["lost"] == 0 and worker["answered"] + worker["dead_lettered"] == 6
    assert worker["extra_assets"] == 0 and report["worker.duplicates"] == worker["duplicates"]
    assert (tmp_path / "loop.json").is_file()
