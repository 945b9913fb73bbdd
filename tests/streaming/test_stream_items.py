"""Item events -> embedded on the fly -> FAISS index, through the real broker."""

import base64
import hashlib

import numpy as np
import pytest

from retrieval.index import FaissIndex, create_index
from streaming.events import ItemEvent
from streaming.handlers import ItemIndexHandler
from streaming.producer import EventProducer
from streaming.replay import grocery_item_events
from streaming.worker import ConsumerConfig, run_consumer

pytestmark = pytest.mark.broker
DIM = 16


class HashEmbedder:
    """Deterministic test stand-in for retrieval.load_item_embedder(): a unit vector per text."""

    def embed_items(self, texts, images):
        rows = [np.frombuffer(hashlib.sha256(t.encode()).digest()[:DIM], dtype=np.uint8).astype(np.float32) - 127.5
                for t in texts]
        out = np.stack(rows)
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def _top1(index, text):
    return int(index.search(HashEmbedder().embed_items([text], [None]), 1).ids[0, 0])


def test_item_upserts_deletes_and_bad_images(broker, topics, tmp_path):
    catalogue = grocery_item_events(timestamp=1.0)[:10]  # real products with their iconic images
    newer = ItemEvent(event_id="v2", timestamp=5.0, item_id=catalogue[0].item_id, text="renamed product",
                      categories=["Fruit"])
    stale = ItemEvent(event_id="v0", timestamp=0.5, item_id=catalogue[1].item_id, text="an older version")
    deleted = ItemEvent(event_id="del", timestamp=6.0, item_id=catalogue[2].item_id, op="delete")
    broken = ItemEvent(event_id="bad-img", timestamp=1.0, item_id=500, text="broken image",
                       image_b64=base64.b64encode(b"definitely not a jpeg").decode())
    missing = ItemEvent(event_id="no-file", timestamp=1.0, item_id=501, text="missing image",
                        image_path=str(tmp_path / "nope.jpg"))
    with EventProducer(broker.bootstrap) as producer:
        producer.send_many(topics.item_events, catalogue + [newer, stale, deleted, broken, missing])

    index = create_index(DIM, expected_size=100, kind="flat")
    handler = ItemIndexHandler(index, HashEmbedder(), state_dir=tmp_path / "items")
    config = ConsumerConfig(bootstrap=broker.bootstrap, topics=topics, group_id="items", consume=("item_events",),
                            idle_timeout_s=3.0)
    stats = run_consumer(config, [handler])
    assert stats.dlq == 2 and all(r.startswith("image does not decode") for r in stats.dlq_reasons)
    # v0 is older than the applied v1 (stale); a v1 that shares a batch with its item's newer
    # event is superseded (stale) instead of applied and then replaced.
    assert stats.stale >= 1 and stats.applied + stats.stale == stats.consumed - stats.dlq
    assert sorted(index.ids().tolist()) == sorted(e.item_id for e in catalogue if e.item_id != catalogue[2].item_id)
    assert _top1(index, "renamed product") == catalogue[0].item_id
    assert _top1(index, catalogue[3].text) == catalogue[3].item_id

    # flush() saved the index and the per-item versions: a redelivery after restart is a no-op.
    reloaded = FaissIndex.load(tmp_path / "items" / "index")
    again = ItemIndexHandler(reloaded, HashEmbedder(), state_dir=tmp_path / "items")
    result = again.handle(catalogue + [newer, deleted])
    assert result.applied == 0 and result.stale == len(catalogue) + 2
    assert sorted(reloaded.ids().tolist()) == sorted(index.ids().tolist())
