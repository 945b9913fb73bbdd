"""The in-memory EventSource: the Kafka source's contract without a broker, for worker unit tests."""

from __future__ import annotations

from streaming.events import UserEvent
from streaming.source import MemoryEventSource


def _events(n: int) -> list[UserEvent]:
    return [UserEvent(event_id=f"t:{i}", timestamp=float(i), user_id=i % 3, item_id=i, kind="click") for i in range(n)]


def test_poll_commit_and_redelivery_after_a_restart():
    source = MemoryEventSource({"user-events": _events(5)})
    first = source.poll(0.0, max_records=3)
    assert [d.offset for d in first] == [0, 1, 2] and all(d.event and d.event.event_id == f"t:{d.offset}" for d in first)
    source.commit()
    assert [d.offset for d in source.poll(0.0, 10)] == [3, 4] and source.lag() == {("user-events", 0): 0}
    source.close()  # 3 and 4 were delivered but never committed
    assert [d.offset for d in source.reopen().poll(0.0, 10)] == [3, 4]


def test_bad_messages_become_dead_letter_deliveries():
    source = MemoryEventSource({"user-events": [b"not json", _events(1)[0]]})
    bad, good = source.poll(0.0, 10)
    assert bad.event is None and "invalid JSON" in bad.error and bad.raw == b"not json"
    assert good.error is None and good.event.kind == "click"
