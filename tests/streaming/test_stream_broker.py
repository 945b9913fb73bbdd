import pytest

from streaming.broker import Broker, BrokerConfig, BrokerError, resolve_bootstrap
from streaming.events import UserEvent
from streaming.producer import EventProducer
from streaming.source import KafkaEventSource

pytestmark = pytest.mark.broker


def test_fixture_broker_is_healthy_on_loopback(broker):
    status = broker.status()
    assert status.healthy, status.detail
    assert status.bootstrap.startswith("127.0.0.1:")
    assert status.s3_endpoint.startswith("http://127.0.0.1:")
    # A second manager on the same data dir finds the running pair through the state file.
    again = Broker(BrokerConfig(data_dir=status.data_dir))
    assert again.status().healthy and again.bootstrap == broker.bootstrap
    assert resolve_bootstrap(None, status.data_dir) == broker.bootstrap


def test_status_of_a_broker_never_started(tmp_path):
    status = Broker(BrokerConfig(data_dir=str(tmp_path))).status()
    assert not status.running and not status.healthy
    with pytest.raises(BrokerError, match="crossrec broker start"):
        resolve_bootstrap(None, tmp_path)


def test_bad_config_and_bootstrap_are_refused():
    with pytest.raises(ValueError, match="kafka_port"):
        BrokerConfig(kafka_port=70000)
    with pytest.raises(ValueError, match="host:port"):
        resolve_bootstrap("localhost")
    with pytest.raises(ValueError, match="storage='disk'"):
        BrokerConfig(storage="disk")


def test_memory_storage_runs_tansu_alone_and_refuses_a_storage_switch(broker, tmp_path):
    from streaming.events import Topics
    from streaming.producer import ensure_topics

    with Broker(BrokerConfig(data_dir=str(tmp_path), kafka_port=0, s3_port=0, storage="memory")) as memory:
        status = memory.status()
        assert status.healthy and status.weed_pid is None and status.s3_endpoint is None, status.detail
        assert "in-memory log" in status.detail
        topics = Topics(prefix="mem", partitions=2)
        ensure_topics(memory.bootstrap, topics)
        events = [UserEvent(event_id=f"m{i}", timestamp=float(i), user_id=i % 3, item_id=i, kind="click") for i in range(10)]
        with EventProducer(memory.bootstrap) as producer:
            producer.send_many(topics.user_events, events)
        got = _drain(memory.bootstrap, topics.user_events, "mem-group", 10)
        assert sorted(d.event.event_id for d in got) == sorted(e.event_id for e in events)
        # The bench's broker CPU accounting covers Tansu alone when no SeaweedFS runs.
        from crossrec.stream_bench import BenchConfig, _Bench

        cpu = _Bench(BenchConfig(scenarios=("latency",), storage="memory", out_dir=str(tmp_path / "bench")), memory.bootstrap, memory).broker_cpu_s()
        # a number (not None: no SeaweedFS pid to read); it can be 0 when 10 events took Tansu under one clock tick
        assert cpu is not None and cpu >= 0.0
    # The session broker keeps its S3 log: asking for memory storage on its data dir is refused.
    with pytest.raises(BrokerError, match="storage='s3' already runs"):
        Broker(BrokerConfig(data_dir=broker.status().data_dir, storage="memory")).start()


def test_restart_keeps_the_log_and_the_committed_offsets(broker, topics):
    events = [UserEvent(event_id=f"r{i}", timestamp=float(i), user_id=i % 7, item_id=i, kind="view") for i in range(40)]
    with EventProducer(broker.bootstrap) as producer:
        producer.send_many(topics.user_events, events[:20])
    first = _drain(broker.bootstrap, topics.user_events, "restart-group", 20)
    assert sorted(d.event.event_id for d in first) == sorted(e.event_id for e in events[:20])
    broker.restart()  # the log lives in S3 (SeaweedFS): it survives both processes restarting
    assert broker.status().healthy
    with EventProducer(broker.bootstrap) as producer:
        producer.send_many(topics.user_events, events[20:])
    second = _drain(broker.bootstrap, topics.user_events, "restart-group", 20)
    assert sorted(d.event.event_id for d in second) == sorted(e.event_id for e in events[20:])


def _drain(bootstrap, topic, group, n, timeout_s=30.0):
    import time

    source = KafkaEventSource(bootstrap, [topic], group)
    got, deadline = [], time.monotonic() + timeout_s
    try:
        while len(got) < n and time.monotonic() < deadline:
            got.extend(source.poll(0.5, 100))
        source.commit()
    finally:
        source.close()
    return got
