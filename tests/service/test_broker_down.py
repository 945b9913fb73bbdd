"""The broker stopped while the service runs: event posts get 503 with a clear message, reads keep
working, and posting recovers by itself when the broker is back (real broker, restarted)."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient

from tests.service.conftest import API_KEY, make_engine


@pytest.fixture
def own_broker(tmp_path):
    from streaming.broker import Broker, BrokerConfig

    broker = Broker(BrokerConfig(data_dir=str(tmp_path / "broker"), kafka_port=0, storage="memory"))
    broker.start()
    yield broker
    broker.stop()


def test_event_posts_fail_with_503_while_reads_work_and_recover(own_broker, ml_searcher, store_path, monkeypatch):
    from crossrec.service import create_app
    from streaming.events import Topics
    from streaming.producer import ensure_topics

    monkeypatch.setenv("CROSSREC_API_KEY", API_KEY)
    topics = Topics(prefix="down", partitions=1)
    ensure_topics(own_broker.bootstrap, topics)
    engine = make_engine(store_path, {"ml100k": ml_searcher}, bootstrap=own_broker.bootstrap, prefix="down", timeout_s=3.0)
    engine.publisher.retry_after_s = 0.5

    def post(n: int):
        return client.post("/events", headers={"X-API-Key": API_KEY}, json={
            "event_id": f"down-{n}-{time.time_ns()}", "timestamp": 1e9 + n, "user_id": 1, "item_id": 1, "kind": "view"})

    with TestClient(create_app(engine)) as client:
        assert post(0).status_code == 200
        assert client.get("/readyz").json()["broker"]["state"] == "up"
        own_broker.stop()
        down = post(1)
        assert down.status_code == 503, down.text
        assert "broker" in down.json()["detail"] and "unavailable" in down.json()["detail"] or \
            "did not acknowledge" in down.json()["detail"]
        assert down.headers["retry-after"]
        assert client.get("/users/1/recommendations").status_code == 200  # reads keep working
        assert client.get("/catalogues/ml100k/search", params={"q": "toy story"}).status_code == 200
        ready = client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["broker"]["state"] == "down"
        own_broker.start()  # same data dir and port
        deadline, status = time.time() + 60, None
        while time.time() < deadline:
            status = post(2).status_code
            if status == 200:
                break
            time.sleep(0.5)
        assert status == 200
        assert client.get("/readyz").json()["broker"]["state"] == "up"
