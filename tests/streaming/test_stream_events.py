import base64
import json

import pytest

from streaming.events import (
    MAX_EVENT_BYTES, SCHEMA_VERSION, CreativeRequest, CreativeResult, DeadLetter, EventSchemaError, ItemEvent,
    Topics, UserEvent, decode_event,
)

EXAMPLES = [
    UserEvent(event_id="u1", timestamp=10.0, user_id=3, item_id=7, kind="rating", value=4.0, sent_at=11.0),
    UserEvent(event_id="u2", timestamp=10.0, user_id=3, item_id=7, kind="click"),
    ItemEvent(event_id="i1", timestamp=1.0, item_id=9, text="Red apple", categories=["Fruit", "Apple"],
              image_b64=base64.b64encode(b"not an image").decode()),
    ItemEvent(event_id="i2", timestamp=2.0, item_id=9, op="delete"),
    CreativeRequest(event_id="c1", timestamp=1.0, user_id=3, item_id=9, rank=0, score=0.5),
    CreativeResult(event_id="r1", timestamp=1.0, request_id="c1", user_id=3, item_id=9, uri="runs/x.png"),
    DeadLetter(event_id="d1", timestamp=1.0, source_topic="t", partition=0, offset=5, reason="invalid JSON", payload="{"),
]


@pytest.mark.parametrize("event", EXAMPLES, ids=lambda e: e.event_id)
def test_round_trip_keeps_every_field_and_the_version(event):
    raw = event.to_json()
    assert json.loads(raw)["v"] == SCHEMA_VERSION
    assert decode_event(raw) == event
    assert type(event).from_json(raw) == event


def test_keys_give_per_user_and_per_item_ordering():
    assert EXAMPLES[0].key() == EXAMPLES[1].key() == b"3"
    assert EXAMPLES[2].key() == b"9"


def _user(**fields):
    base = {"schema": "user_event", "v": 1, "event_id": "e", "timestamp": 1.0, "user_id": 1, "item_id": 2,
            "kind": "view"}
    base.update(fields)
    return json.dumps({k: v for k, v in base.items() if v is not ...}).encode()


@pytest.mark.parametrize(
    "raw, reason",
    [
        (b"{not json", "invalid JSON"),
        (b"\xff\xfe\x00", "invalid JSON"),
        (b"[1, 2]", "JSON object"),
        (_user(v=2), "version"),
        (_user(schema="nope"), "unknown schema"),
        (_user(user_id="seven"), "user_id"),
        (_user(kind="like"), "kind"),
        (_user(kind="rating"), "value"),
        (_user(timestamp=...), "missing"),
        (_user(extra=1), "unknown fields"),
        (_user(user_id=True), "user_id"),
        (b"x" * (MAX_EVENT_BYTES + 1), "oversized"),
        (None, "empty"),
    ],
)
def test_bad_messages_are_rejected_with_a_reason(raw, reason):
    with pytest.raises(EventSchemaError, match=reason):
        decode_event(raw)


def test_producer_side_validation_and_size_limit():
    with pytest.raises(EventSchemaError, match="kind"):
        UserEvent(event_id="e", timestamp=1.0, user_id=1, item_id=1, kind="like")
    with pytest.raises(EventSchemaError, match="upsert needs"):
        ItemEvent(event_id="e", timestamp=1.0, item_id=1)
    big = ItemEvent(event_id="e", timestamp=1.0, item_id=1, text="x" * MAX_EVENT_BYTES)
    with pytest.raises(EventSchemaError, match="MAX_EVENT_BYTES"):
        big.to_json()
    with pytest.raises(EventSchemaError, match="not the expected"):
        UserEvent.from_json(EXAMPLES[2].to_json())


def test_topic_names_share_the_prefix():
    names = Topics(prefix="demo").all()
    assert len(set(names)) == 6 and all(n.startswith("demo.") for n in names)
