"""The service's per-process answer caches: a recommendation is kept while the user's profile is
the same object in the live store (another process's event for the user ranks again, other users
stay kept), a text search per (catalogue, query, k, mode, filters); kept answers equal fresh ones."""

from __future__ import annotations

import shutil
from dataclasses import replace

import numpy as np
from prometheus_client import generate_latest

from crossrec.service import ServiceEngine
from recsys.profiles import Interaction, ProfileStore
from tests.service.conftest import make_engine

EXCLUDE_SEEN = {"exclude_seen": True}


def _count(name: str, result: str) -> float:
    prefix = f'{name}{{result="{result}"}} '
    return sum(float(line[len(prefix):]) for line in generate_latest().decode().splitlines() if line.startswith(prefix))


def _same(a, b) -> bool:
    return (np.array_equal(a.item_ids, b.item_ids) and np.array_equal(a.scores, b.scores) and a.sources == b.sources
            and a.top_feature_group == b.top_feature_group and a.reason == b.reason)


def test_a_kept_recommendation_lasts_until_the_users_profile_changes(store_path, ml_searcher, tmp_path):
    shutil.copytree(store_path.parent, tmp_path / "live")  # the store and its ALS model: this test writes events
    path = tmp_path / "live" / store_path.name
    engine = make_engine(path, {"ml100k": ml_searcher})
    hits0 = _count("crossrec_recommend_cache_total", "hit")
    first = engine.recommend(5, k=10, filters=EXCLUDE_SEEN)
    other = engine.recommend(6, k=10, filters=EXCLUDE_SEEN)
    assert engine.recommend(5, k=10, filters=EXCLUDE_SEEN) is first
    assert _count("crossrec_recommend_cache_total", "hit") - hits0 == 1
    fewer = engine.recommend(5, k=3, filters=EXCLUDE_SEEN)  # another k is another answer
    assert fewer is not first and list(fewer.item_ids) == list(first.item_ids[:3])
    # The consumer (another connection on the file) applies a click of user 5 on the top item.
    with ProfileStore.open(path) as consumer:
        ts = max(h[3] for h in consumer.get(5).history) + 60.0
        consumer.apply([Interaction("cache-test-click", 5, int(first.item_ids[0]), "click", ts)])
    again = engine.recommend(5, k=10, filters=EXCLUDE_SEEN)
    assert again is not first and int(first.item_ids[0]) not in again.item_ids
    assert _same(again, engine.recommender.recommend(5, k=10, filters=EXCLUDE_SEEN))
    assert engine.recommend(6, k=10, filters=EXCLUDE_SEEN) is other  # user 6 did not change
    # Off: every request ranks, with the same answers.
    off = ServiceEngine(replace(engine.config, recommend_cache=0), engine.searchers, engine.recommender)
    a, b = off.recommend(6, k=10, filters=EXCLUDE_SEEN), off.recommend(6, k=10, filters=EXCLUDE_SEEN)
    assert a is not b and _same(a, other) and _same(b, other)
    engine.close()
    off.close()


def test_kept_search_answers_per_query_k_mode_and_filters(store_path, ml_searcher):
    engine = make_engine(store_path, {"ml100k": ml_searcher})
    ask = lambda q, k=5, mode="hybrid", filters=None: engine.search_text("ml100k", q, k=k, mode=mode,  # noqa: E731
                                                                          filters=filters)
    hits0 = _count("crossrec_search_cache_total", "hit")
    first = ask("toy story")
    assert ask("toy story") is first and _count("crossrec_search_cache_total", "hit") - hits0 == 1
    assert first.to_dict() == ml_searcher.search("toy story", k=5).to_dict()
    for changed, fresh in [(ask("toy story", k=3), ml_searcher.search("toy story", k=3)),
                           (ask("toy story", mode="bm25"), ml_searcher.search("toy story", k=5, mode="bm25")),
                           (ask("space adventure"), ml_searcher.search("space adventure", k=5))]:
        assert changed is not first and changed.to_dict() == fresh.to_dict()
    engine.close()


def test_a_kept_search_answers_with_the_same_json(store_path, ml_searcher):
    from fastapi.testclient import TestClient

    from crossrec.service.app import create_app

    fresh = ml_searcher.search("romantic comedy", k=4).to_dict()
    with TestClient(create_app(make_engine(store_path, {"ml100k": ml_searcher}))) as client:
        hits0 = _count("crossrec_search_cache_total", "hit")
        first, again = (client.get("/catalogues/ml100k/search", params={"q": "romantic comedy", "k": 4}) for _ in range(2))
        assert _count("crossrec_search_cache_total", "hit") - hits0 == 1
        assert first.status_code == again.status_code == 200 and first.content == again.content
        assert first.headers["content-type"] == "application/json"
        body = first.json()
        assert (body["catalogue"], body["query"], body["mode"], body["matching"]) == ("ml100k", "romantic comedy", "hybrid",
                                                                                     fresh["matching"])
        assert [(h["item_id"], h["title"], h["score"]) for h in body["hits"]] == [
            (str(h["item_id"]), h["title"], h["score"]) for h in fresh["hits"]]
        assert [h["signals"] for h in body["hits"]] == [h["signals"] for h in fresh["hits"]]
        assert client.get("/catalogues/ml100k/search", params={"q": "romantic comedy", "k": 2}).json()["hits"] == body["hits"][:2]
