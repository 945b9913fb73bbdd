"""Produce -> consume -> profile store through the real broker, with replays and bad input."""

import base64
import json
import threading
import time

import pytest

from recsys.profiles import Interaction, ProfileStore
from streaming.events import MAX_EVENT_BYTES, ItemEvent, UserEvent
from streaming.handlers import ProfileHandler
from streaming.producer import EventProducer
from streaming.replay import publish
from streaming.source import KafkaEventSource
from streaming.worker import ConsumerConfig, run_consumer

pytestmark = pytest.mark.broker


def _reference(events, path=None) -> ProfileStore:
    """The profiles a direct, Kafka-free load of ``events`` builds."""
    store = ProfileStore(path)
    store.apply([Interaction(e.event_id, e.user_id, e.item_id, e.kind, e.timestamp, e.value) for e in events])
    return store


def _consume(broker, topics, store, group, handler_kw=None):
    config = ConsumerConfig(bootstrap=broker.bootstrap, topics=topics, group_id=group, consume=("user_events",),
                            idle_timeout_s=3.0)
    return run_consumer(config, [ProfileHandler(store, **(handler_kw or {}))])


def test_replay_builds_the_same_profiles_as_a_direct_load_and_replays_count_nothing_twice(broker, topics, ml_events,
                                                                                          tmp_path):
    with EventProducer(broker.bootstrap) as producer:
        sent = publish(producer, topics.user_events, ml_events)
    assert sent.sent == len(ml_events)
    store = ProfileStore(tmp_path / "profiles.db")
    stats = _consume(broker, topics, store, "g1")
    assert (stats.consumed, stats.applied, stats.duplicates, stats.dlq, stats.lag) == (len(ml_events), len(ml_events), 0, 0, 0)
    assert len(stats.latencies_ms) == len(ml_events) and stats.percentile_ms(99) > 0
    assert store.fingerprint() == _reference(ml_events).fingerprint()

    # The same events again (a producer retry or a full replay): all ignored as duplicates.
    with EventProducer(broker.bootstrap) as producer:
        publish(producer, topics.user_events, ml_events[:500])
    again = _consume(broker, topics, store, "g1")
    assert (again.consumed, again.applied, again.duplicates) == (500, 0, 500)
    # A new group re-reads the whole topic into the same store: nothing counted twice.
    third = _consume(broker, topics, store, "g2")
    assert third.applied == 0 and third.duplicates == len(ml_events) + 500
    assert store.fingerprint() == _reference(ml_events).fingerprint()


def test_out_of_order_delivery_gives_the_same_profiles(broker, topics, ml_events):
    shuffled = ml_events[:600][::-1]
    with EventProducer(broker.bootstrap) as producer:
        publish(producer, topics.user_events, shuffled)
    store = ProfileStore()
    stats = _consume(broker, topics, store, "g-rev")
    assert stats.applied == 600
    assert store.fingerprint() == _reference(ml_events[:600]).fingerprint()


def test_bad_input_is_dead_lettered_with_the_reason_and_valid_events_survive(broker, topics, ml_events):
    good = ml_events[:300]
    known_users = {e.user_id for e in good}
    known_items = {e.item_id for e in good}
    bad_payloads = [
        (b"1", b"{oops"),
        (b"1", json.dumps({**json.loads(good[0].to_json()), "v": 99}).encode()),
        (b"1", json.dumps({**json.loads(good[0].to_json()), "event_id": "x-kind", "kind": "love"}).encode()),
        (b"1", b"y" * (MAX_EVENT_BYTES + 10)),
        (b"1", None),  # a tombstone
    ]
    unknown = [
        UserEvent(event_id="unknown-user", timestamp=1.0, user_id=999_999, item_id=good[0].item_id, kind="click"),
        UserEvent(event_id="unknown-item", timestamp=1.0, user_id=good[0].user_id, item_id=999_999, kind="click"),
    ]
    # An item event on the user topic has no handler in a profile-only worker: dead-lettered too.
    stray = ItemEvent(event_id="stray", timestamp=1.0, item_id=5, text="x",
                      image_b64=base64.b64encode(b"junk").decode())
    with EventProducer(broker.bootstrap) as producer:
        for i, e in enumerate(good):
            producer.send(topics.user_events, e)
            if i % 60 == 0 and bad_payloads:
                producer.send_raw(topics.user_events, *bad_payloads.pop())
        producer.send_many(topics.user_events, unknown)
        producer.send(topics.user_events, stray)
    store = ProfileStore()
    stats = _consume(broker, topics, store, "g-bad", handler_kw={"known_users": known_users, "known_items": known_items})
    assert stats.applied == len(good)
    assert stats.dlq == 5 + 2 + 1
    assert store.fingerprint() == _reference(good).fingerprint()

    letters = _read_all(broker, topics.dead_letter, stats.dlq)
    reasons = " | ".join(sorted(d.event.reason for d in letters))
    for expected in ("invalid JSON", "version", "kind", "oversized", "empty", "unknown user_id", "unknown item_id",
                     "no handler"):
        assert expected in reasons
    assert all(d.event.source_topic == topics.user_events and d.event.offset >= 0 for d in letters)


def test_latency_is_measured_from_sent_at_and_stop_ends_the_worker_gracefully(broker, topics, ml_events):
    store = ProfileStore()
    stop = threading.Event()
    config = ConsumerConfig(bootstrap=broker.bootstrap, topics=topics, group_id="g-live", consume=("user_events",))
    result = {}
    worker = threading.Thread(target=lambda: result.setdefault("stats", run_consumer(config, [ProfileHandler(store)], stop=stop)))
    worker.start()
    try:
        time.sleep(4.0)  # join the group (Tansu answers JoinGroup after ~session_timeout/2)
        with EventProducer(broker.bootstrap, linger_ms=1) as producer:
            publish(producer, topics.user_events, ml_events[:300], rate=300.0)
        deadline = time.monotonic() + 20
        while store.n_events() < 300 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        stop.set()
        worker.join(timeout=30)
    stats = result["stats"]
    assert stats.applied == 300 and stats.lag == 0
    assert len(stats.latencies_ms) == 300 and 0 < stats.percentile_ms(50) < 5000


def _read_all(broker, topic, n, timeout_s=20.0):
    source = KafkaEventSource(broker.bootstrap, [topic], f"reader-{topic}")
    got, deadline = [], time.monotonic() + timeout_s
    try:
        while len(got) < n and time.monotonic() < deadline:
            got.extend(source.poll(0.5, 100))
    finally:
        source.close()
    return got


def test_online_item_features_count_each_event_once(broker, topics, ml_events, tmp_path):
    from collections import Counter

    from streaming.features import FeatureHandler, OnlineFeatureStore

    events = ml_events[:800]
    with EventProducer(broker.bootstrap) as producer:
        publish(producer, topics.user_events, events + events[:200])  # 200 redelivered
    features = OnlineFeatureStore(tmp_path / "features.db")
    config = ConsumerConfig(bootstrap=broker.bootstrap, topics=topics, group_id="g-feat", consume=("user_events",),
                            idle_timeout_s=3.0)
    stats = run_consumer(config, [ProfileHandler(ProfileStore()), FeatureHandler(features)])
    assert (stats.consumed, stats.applied, stats.duplicates) == (1000, 800, 200)
    expected = Counter(e.item_id for e in events)
    (item, n), = expected.most_common(1)
    assert features.item(item)["rating"] == n and features.item(item)["click"] == 0
    assert features.top_items("rating", 1)[0][1] == n
    assert sum(c for _, c in features.top_items("rating", 10_000)) == len(events)
