"""A consumer's group join is bounded (real broker): a member that holds no group generation for
``join_timeout_s`` rejoins as a new member, then raises ``GroupJoinError`` naming the group,
instead of polling forever (kafka-python retries an unanswered JoinGroup at every poll)."""

from __future__ import annotations

import time

import pytest

from streaming.source import GroupJoinError, KafkaEventSource
from streaming.worker import ConsumerConfig, run_consumer

pytestmark = pytest.mark.broker


def test_a_join_that_does_not_complete_in_time_raises(broker, topics):
    # Tansu answers a JoinGroup only after its join window (about session_timeout / 2 = 3 s), so a
    # 0.3 s bound cannot be met: the join "hangs" as far as this member is concerned.
    source = KafkaEventSource(broker.bootstrap, [topics.user_events], "join-too-slow", join_timeout_s=0.3)
    started = time.monotonic()
    try:
        with pytest.raises(GroupJoinError, match=r"group 'join-too-slow' on .* twice \(the second time as a new member\)"):
            while time.monotonic() - started < 60:
                source.poll(0.1, 10)
    finally:
        source.close()
    assert time.monotonic() - started < 30


def test_the_consumer_loop_raises_the_join_error_and_a_normal_join_works(broker, topics):
    from streaming.events import UserEvent
    from streaming.handlers import ProfileHandler
    from streaming.producer import EventProducer
    from recsys.profiles import ProfileStore

    config = ConsumerConfig(bootstrap=broker.bootstrap, topics=topics, group_id="join-loop", idle_timeout_s=2.0,
                            join_timeout_s=0.3)
    store = ProfileStore(None)
    with pytest.raises(GroupJoinError, match="join-loop"):
        run_consumer(config, [ProfileHandler(store)])
    with pytest.raises(ValueError, match="join_timeout_s=0"):
        ConsumerConfig(bootstrap=broker.bootstrap, join_timeout_s=0)
    with EventProducer(broker.bootstrap) as producer:
        producer.send(topics.user_events, UserEvent(event_id="j1", timestamp=1.0, user_id=1, item_id=2, kind="click"))
    stats = run_consumer(ConsumerConfig(bootstrap=broker.bootstrap, topics=topics, group_id="join-ok",
                                        idle_timeout_s=2.0, join_timeout_s=60.0), [ProfileHandler(store)])
    assert (stats.consumed, stats.applied) == (1, 1)
    store.close()
