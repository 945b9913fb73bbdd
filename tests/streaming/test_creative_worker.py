"""The creative worker and the feedback consumer on the real embedded broker."""

import json
import time

import pytest

from crossrec.creative_worker import FeedbackHandler, WorkerConfig, run_creative_worker
from crossrec_core.errors import UnknownIdError
from generation.assets import AssetStore
from generation.bandit import Bandit, BanditConfig, Segmenter
from streaming.events import (
    CreativeAsset, CreativeClick, CreativeImpression, CreativeRequest, CreativeResult, DeadLetter,
)
from streaming.producer import EventProducer
from streaming.source import KafkaEventSource
from streaming.worker import ConsumerConfig, run_consumer

pytestmark = pytest.mark.broker


def _read(bootstrap, topics_, n, timeout_s=60.0, group="reader"):
    source = KafkaEventSource(bootstrap, topics_, f"{group}-{time.time_ns()}")
    out, deadline = [], time.monotonic() + timeout_s
    try:
        while len(out) < n and time.monotonic() < deadline:
            out += [d.event for d in source.poll(0.5, 100)]
        out += [d.event for d in source.poll(1.0, 100)]  # anything beyond n (duplicates) too
    finally:
        source.close()
    return out


def _generator(store: AssetStore):
    def generate(req: CreativeRequest) -> CreativeResult:
        if req.item_id == 999_999:
            raise UnknownIdError(f"item_id='{req.item_id}' is not in the catalogue")
        ref = store.put(json.dumps({"user": req.user_id, "item": req.item_id}).encode(), "json")
        return CreativeResult(event_id=f"cres:{req.event_id}", timestamp=time.time(), request_id=req.event_id,
                              user_id=req.user_id, item_id=req.item_id, uri=f"asset:{ref.asset_id}",
                              assets=[CreativeAsset(kind="copy", asset_id=ref.asset_id)])
    return generate


def test_every_request_is_answered_once_expired_or_dead_lettered(broker, topics, tmp_path):
    now = time.time()
    requests = [CreativeRequest(event_id=f"creq:{u}:{i}", timestamp=now, user_id=u, item_id=i)
                for u, i in ((1, 1), (2, 50), (3, 181))]
    requests += [CreativeRequest(event_id="creq:4:999999", timestamp=now, user_id=4, item_id=999_999),
                 CreativeRequest(event_id="creq:old", timestamp=now - 3600, user_id=5, item_id=1),
                 requests[0]]  # a redelivered request
    with EventProducer(broker.bootstrap) as producer:
        for r in requests:
            producer.send(topics.creative_requests, r)
    store = AssetStore(tmp_path / "assets")
    config = WorkerConfig(state_dir=str(tmp_path / "state"), max_age_s=600.0, max_batch=2)
    summary = run_creative_worker(config, bootstrap=broker.bootstrap, topics=topics, generate=_generator(store),
                                  idle_timeout_s=2.0)
    assert summary["answers"] == {"ok": 3, "expired": 1, "failed": 1, "duplicates": 1} and summary["lag"] == 0
    assert summary["dlq"] == 1
    out = _read(broker.bootstrap, [topics.creative_results, topics.dead_letter], 5)
    results = [e for e in out if isinstance(e, CreativeResult)]
    assert sorted(r.request_id for r in results) == sorted(["creq:1:1", "creq:2:50", "creq:3:181", "creq:old"])
    assert [r.status for r in results if r.request_id == "creq:old"] == ["expired"]
    dead = [e for e in out if isinstance(e, DeadLetter)]
    assert len(dead) == 1 and "UnknownIdError" in dead[0].reason and "999999" in dead[0].payload
    # the whole topic again (a new group, the same ledger): nothing is answered twice, no new asset
    files = sorted(p.name for p in (tmp_path / "assets").rglob("*.json"))
    again = run_creative_worker(config, bootstrap=broker.bootstrap, topics=topics, group_id="other",
                                generate=_generator(store), idle_timeout_s=2.0)
    assert again["answers"]["duplicates"] == 5 and again["answers"]["ok"] == 0
    assert sorted(p.name for p in (tmp_path / "assets").rglob("*.json")) == files


def test_feedback_flows_from_kafka_into_the_bandit(broker, topics, tmp_path):
    seg = Segmenter.fit([{"drama": 1.0}, {"comedy": 1.0}], 2)
    bandit = Bandit.create(tmp_path / "bandit", BanditConfig(n_segments=2), seg)
    now = time.time()
    result = CreativeResult(event_id="cres:1", timestamp=now, request_id="creq:1", user_id=1, item_id=7,
                            assets=[CreativeAsset(kind="poster", asset_id="a.png", variant_id="7:noir:a", family="noir",
                                                  score=0.8)], variant_ids=["7:noir:a"])
    imp = CreativeImpression(event_id="imp:1", timestamp=now, user_id=1, item_id=7, variant_id="7:noir:a", family="noir")
    click = CreativeClick(event_id="clk:1", timestamp=now, impression_id="imp:1", user_id=1, item_id=7,
                          variant_id="7:noir:a", family="noir")
    stray = CreativeClick(event_id="clk:2", timestamp=now, impression_id="imp:never", user_id=1, item_id=7,
                          variant_id="7:noir:a", family="noir")
    with EventProducer(broker.bootstrap) as producer:
        producer.send(topics.creative_results, result)
        producer.flush()
        for ev in (imp, click, click, stray):
            producer.send(topics.creative_feedback, ev)
        producer.send_raw(topics.creative_feedback, b"1", b'{"schema": "creative_click", "v": 1}')
    config = ConsumerConfig(bootstrap=broker.bootstrap, group_id="bandit", topics=topics,
                            consume=("creative_results", "creative_feedback"), idle_timeout_s=2.0)
    stats = run_consumer(config, [FeedbackHandler(bandit)])
    counts = bandit.arm_counts()
    assert counts["impressions"].sum() == 1 and counts["clicks"].sum() == 1
    assert stats.duplicates == 1 and stats.dlq == 2  # the stray click and the malformed one
    assert bandit.choose_variant("1", "7").variant_id == "7:noir:a"
