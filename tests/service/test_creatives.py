"""Creatives served from the creative worker's cache and asset store, the poster variant picked
by the bandit, impressions and clicks through the real broker back into the bandit."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from tests.service.conftest import API_KEY

KEY = {"X-API-Key": API_KEY}


def _png(colour) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), colour).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture
def worker_outputs(tmp_path, store_path):
    """What the creative worker leaves: a creative for user 1 / item 50 at user 1's current profile
    version (its chosen poster in the noir family, a pastel one also servable), and a bandit that
    knows both variants."""
    from crossrec.creative_worker import poster_variant_id
    from generation.assets import AssetStore
    from generation.bandit import Bandit, BanditConfig, Segmenter, Variant
    from generation.cache import CacheKey, CreativeCache, user_owner
    from recsys.profiles import ProfileStore

    assets = AssetStore(tmp_path / "assets")
    posters = {"noir": assets.put(_png((20, 20, 20)), "png").asset_id,
               "pastel": assets.put(_png((250, 200, 220)), "png").asset_id}
    copy = assets.put(json.dumps({"headline": "Because you liked Star Wars"}).encode(), "json").asset_id
    scores = assets.put(json.dumps({"chosen": {"seed": 0, "extra": {"family": "noir"}}}).encode(), "json").asset_id
    with ProfileStore.open(store_path) as store:
        version = store.user_version(1)
    cache = CreativeCache(tmp_path / "cache.sqlite")
    cache.put(CacheKey("creative", user_owner(1, version), "50", "settings-a"),
              {"assets": {"poster.png": posters["noir"], "copy.json": copy, "scores.json": scores},
               "gate_passed": True, "payload_id": 7,
               "posters": [{"asset_id": a, "family": f, "score": 0.5} for f, a in posters.items()]})
    cache.close()
    segmenter = Segmenter.fit([{"Drama": 1.0}, {"Comedy": 1.0}, {"Drama": 0.5, "Action": 0.5}], 2)
    bandit = Bandit.create(tmp_path / "bandit", BanditConfig(n_segments=2), segmenter)
    bandit.register_variants([Variant(poster_variant_id("50", fam, a), "50", fam, 0.5) for fam, a in posters.items()])
    bandit.close()
    return tmp_path, posters


def test_cached_creative_bandit_variant_impression_and_click(worker_outputs, store_path, ml_searcher, broker, topics,
                                                             monkeypatch):
    from crossrec.creative_worker import FeedbackHandler
    from crossrec.service import ServiceConfig, ServiceEngine, create_app
    from generation.bandit import Bandit
    from recsys.profiles import ProfileStore
    from recsys.registry import load_recommender
    from streaming.worker import ConsumerConfig, run_consumer

    root, posters = worker_outputs
    monkeypatch.setenv("CROSSREC_API_KEY", API_KEY)
    config = ServiceConfig(catalogues=("ml100k",), bootstrap=broker.bootstrap, topic_prefix=topics.prefix,
                           creative_cache=str(root / "cache.sqlite"), assets_dir=str(root / "assets"),
                           bandit_dir=str(root / "bandit"))
    store = ProfileStore.open(store_path)
    engine = ServiceEngine(config, {"ml100k": ml_searcher}, load_recommender(store_path.parent / "als", profiles=store),
                           known_users=set(range(1, 944)))
    with TestClient(create_app(engine)) as client:
        got = client.get("/creatives/1/50")
        assert got.status_code == 200, got.text
        body = got.json()
        variant = body["variant"]
        assert body["copy"]["headline"] == "Because you liked Star Wars"
        assert variant["chosen_by"] == "bandit" and variant["family"] in posters and variant["impression_id"]
        assert body["assets"]["poster"] == f"/assets/{posters[variant['family']]}"
        image = client.get(body["assets"]["poster"])
        assert image.status_code == 200 and image.content == (root / "assets").joinpath(
            posters[variant["family"]][:2], posters[variant["family"]]).read_bytes()
        assert client.post("/creatives/1/50", headers=KEY).status_code == 200  # a cache hit (shown: an impression)
        click = client.post("/creatives/1/50/clicks", headers=KEY,
                            json={"impression_id": variant["impression_id"], "variant_id": variant["variant_id"]})
        assert click.status_code == 202 and click.json()["topic"] == topics.creative_feedback
        # bad input: unknown asset ids and path tricks, a click without the key or with extra fields
        for bad in ("0" * 64 + ".png", "..%2F..%2Fetc%2Fpasswd", "x.exe"):
            assert client.get(f"/assets/{bad}").status_code == 404
        assert client.post("/creatives/1/50/clicks", json={"impression_id": "i", "variant_id": "v"}).status_code == 401
        assert client.post("/creatives/1/50/clicks", headers=KEY,
                           json={"impression_id": "i", "variant_id": "v", "x": 1}).status_code == 422
        # no creative for another item: 404, and POST publishes a request (202 + Location)
        assert client.get("/creatives/1/51").status_code == 404
        miss = client.post("/creatives/1/51", headers=KEY)
        assert miss.status_code == 202 and miss.headers["location"] == "/creatives/1/51"
        # the recommendation list links the creative
        recs = client.get("/users/1/recommendations", params={"k": 100, "exclude_seen": False}).json()["items"]
        assert all((it["creative_url"] is not None) == (it["item_id"] == 50) for it in recs)

    # the feedback consumer (as deployed) applies the impression and the click to the bandit
    bandit = Bandit.open(root / "bandit")
    stats = run_consumer(ConsumerConfig(bootstrap=broker.bootstrap, topics=topics, group_id="svc-feedback",
                                        consume=("creative_feedback",), idle_timeout_s=3.0), [FeedbackHandler(bandit)])
    assert (stats.applied, stats.dlq) == (3, 0)  # two impressions (GET and POST) and the click
    family = bandit.config.families.index(variant["family"])
    counts = bandit.arm_counts()
    assert counts["impressions"][:, family].sum() >= 1 and counts["clicks"][:, family].sum() == 1
    assert np.sum(counts["impressions"]) == 2 and np.sum(counts["clicks"]) == 1
    bandit.close()
    store.close()


def test_a_new_event_makes_the_cached_creative_stale(worker_outputs, store_path):
    """The cache is keyed by the user's profile version: after a new event, a miss (regenerate)."""
    from crossrec.service.creatives import CreativeSource
    from recsys.profiles import ProfileStore

    root, posters = worker_outputs
    with ProfileStore.open(store_path) as store:
        version = store.user_version(1)
    source = CreativeSource(str(root / "cache.sqlite"), str(root / "assets"))  # no bandit: the record's poster
    found = source.find(1, 50, version)
    assert found is not None and found.chosen_by == "cache" and found.poster_asset == posters["noir"]
    assert found.family == "noir" and found.variant_id == f"50:noir:{posters['noir']}"
    assert source.find(1, 50, version + 1) is None  # one more event: stale, not served
    assert source.has(1, 50, version) and not source.has(2, 50, 0)
    source.close()
