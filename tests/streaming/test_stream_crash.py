"""Crash scenarios through the benchmark code: kill -9 a worker, restart the broker, mid-replay."""

import json

import pytest

from crossrec.stream_bench import BenchConfig, run_bench
from crossrec.wiring import ProfileWiring, user_event_handlers

pytestmark = pytest.mark.broker


def test_kill9_worker_mid_replay_loses_nothing_and_counts_nothing_twice(broker, tmp_path):
    summary = run_bench(BenchConfig(scenarios=("kill9",), crash_events=3000, crash_rate=1500.0,
                                    bootstrap=broker.bootstrap, out_dir=str(tmp_path)),
                        json_path=tmp_path / "bench.json", progress=False)
    kill9 = summary["scenarios"]["kill9"]
    assert 0 < kill9["interrupted_at_applied"] < 3000
    assert (kill9["lost"], kill9["duplicates"], kill9["stored"]) == (0, 0, 3000) and kill9["identical"]
    assert json.loads((tmp_path / "bench.json").read_text())["lost"] == 0


@pytest.mark.slow
def test_bench_with_its_own_broker_restart_and_dead_letters(tmp_path):
    summary = run_bench(BenchConfig(scenarios=("throughput", "broker_restart"), n_events=3000, crash_events=3000,
                                    crash_rate=1000.0, out_dir=str(tmp_path)),
                        json_path=tmp_path / "bench.json", progress=False)
    for key in ("events_per_s", "p50_ms", "p99_ms", "lost", "duplicates", "dlq"):
        assert key in summary
    restart = summary["scenarios"]["broker_restart"]
    assert (restart["lost"], restart["duplicates"], restart["stored"]) == (0, 0, 3000) and restart["identical"]
    throughput = summary["scenarios"]["throughput"]
    assert summary["dlq"] == throughput["malformed_sent"] == 5
    assert throughput["identical"] and summary["lost"] == 0 and summary["events_per_s"] > 0


def test_latency_scenario_on_an_in_memory_broker(tmp_path):
    summary = run_bench(BenchConfig(scenarios=("latency",), latency_events=400, latency_rate=400.0, storage="memory",
                                    fetch_max_wait_ms=20, partitions=2, out_dir=str(tmp_path)), progress=False)
    latency = summary["scenarios"]["latency"]
    assert latency["applied"] == 400 and 0 < summary["p50_ms"] <= summary["p99_ms"]
    assert summary["broker"] == "embedded, memory log"
    assert (summary["fetch_max_wait_ms"], summary["partitions"]) == (20, 2)


def test_bench_and_worker_settings_are_checked():
    from streaming.worker import ConsumerConfig

    with pytest.raises(ValueError, match="durable log"):
        BenchConfig(scenarios=("broker_restart",), storage="memory")
    with pytest.raises(ValueError, match="partitions=0"):
        BenchConfig(partitions=0)
    with pytest.raises(ValueError, match="fetch_max_wait_ms=0"):
        ConsumerConfig(bootstrap="127.0.0.1:9092", fetch_max_wait_ms=0)
    with pytest.raises(TypeError):  # streaming transports: what a worker applies is the composition root's
        ConsumerConfig(bootstrap="127.0.0.1:9092", store_path="x.db")
    with pytest.raises(ValueError, match="store_path is empty"):
        ProfileWiring("")
    with pytest.raises(ValueError, match="creative_k=0"):
        ProfileWiring("x.db", creative_k=0)
    with pytest.raises(ValueError, match="without producer and topics"):
        user_event_handlers(object(), recommender=object())
