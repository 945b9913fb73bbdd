"""Creative feedback schemas and the versioned creative result (v2 beside v1)."""

import json

import pytest

from streaming.events import (
    CreativeAsset, CreativeClick, CreativeImpression, CreativeRequest, CreativeResult, EventSchemaError, Topics,
    decode_event,
)


def _v2_result():
    return CreativeResult(event_id="res:1", timestamp=1.0, request_id="creq:1:2", user_id=1, item_id=2, uri="a.png",
                          text="Hello", assets=[CreativeAsset(kind="poster", asset_id="a.png", variant_id="2:noir:a",
                                                              family="noir", score=0.7)],
                          variant_ids=["2:noir:a"], scores={"total": 0.7})


def test_a_result_is_written_at_the_lowest_version_that_carries_it():
    plain = CreativeResult(event_id="res:0", timestamp=1.0, request_id="r", user_id=1, item_id=2, uri="a.png")
    wire = json.loads(plain.to_json())
    assert wire["v"] == 1 and "assets" not in wire  # what a v1 reader expects, field for field
    rich = _v2_result()
    wire = json.loads(rich.to_json())
    assert wire["v"] == 2 and wire["assets"][0]["family"] == "noir" and wire["uri"] == "a.png"  # v1 fields kept
    assert decode_event(rich.to_json()) == rich and decode_event(plain.to_json()) == plain
    request = CreativeRequest(event_id="q", timestamp=1.0, user_id=1, item_id=2, kinds=["copy", "poster", "trailer"])
    assert json.loads(request.to_json())["v"] == 2
    assert json.loads(CreativeRequest(event_id="q", timestamp=1.0, user_id=1, item_id=2).to_json())["v"] == 1


@pytest.mark.parametrize("raw, reason", [
    ({"schema": "creative_result", "v": 1, "event_id": "a", "timestamp": 1.0, "assets": []}, "not part of v=1"),
    ({"schema": "creative_result", "v": 3, "event_id": "a", "timestamp": 1.0}, "reads v=1..2"),
    ({"schema": "creative_result", "v": 2, "event_id": "a", "timestamp": 1.0,
      "assets": [{"kind": "poster", "asset_id": "x", "bogus": 1}]}, "unknown fields"),
    ({"schema": "creative_click", "v": 1, "event_id": "c", "timestamp": 1.0, "impression_id": "", "user_id": 1,
      "item_id": 1, "variant_id": "v"}, "impression_id"),
    ({"schema": "creative_impression", "v": 1, "event_id": "i", "timestamp": 1.0, "user_id": -1, "item_id": 1,
      "variant_id": "v"}, "user_id"),
    ({"schema": "creative_request", "v": 2, "event_id": "q", "timestamp": 1.0, "kinds": ["video"]}, "kinds"),
])
def test_malformed_feedback_and_results_are_refused_with_a_reason(raw, reason):
    with pytest.raises(EventSchemaError, match=reason):
        decode_event(json.dumps(raw).encode())


def test_feedback_is_keyed_by_user_on_its_own_topic():
    imp = CreativeImpression(event_id="imp:1", timestamp=1.0, user_id=7, item_id=2, variant_id="2:noir:a", family="noir")
    click = CreativeClick(event_id="clk:1", timestamp=2.0, impression_id="imp:1", user_id=7, item_id=2,
                          variant_id="2:noir:a", family="noir")
    assert imp.key() == click.key() == b"7"  # one partition: the impression is read before its click
    assert decode_event(click.to_json()) == click
    topics = Topics(prefix="t")
    assert topics.creative_feedback == "t.creative-feedback" and topics.creative_feedback in topics.all()
    assert topics.user_events != topics.creative_feedback  # feedback is not a user event: no re-ranking
