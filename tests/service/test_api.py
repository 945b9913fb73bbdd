"""The HTTP API on small real data: every route, the bad-input list of the issue, events through a
real broker into the live profile store."""

from __future__ import annotations

import io
import json
import time
import zlib
import struct

import pytest
from fastapi.testclient import TestClient

from tests.service.conftest import API_KEY, make_engine

KEY = {"X-API-Key": API_KEY}


@pytest.fixture(scope="module")
def creatives(tmp_path_factory):
    """One finished creative (user 1, item 50) as the generation module writes it."""
    root = tmp_path_factory.mktemp("creatives")
    folder = root / "1" / "50"
    folder.mkdir(parents=True)
    from PIL import Image

    Image.new("RGB", (64, 96), (200, 30, 30)).save(folder / "poster.png")
    (folder / "copy.json").write_text(json.dumps({"headline": "A galaxy far away", "tagline": "for you"}))
    (folder / "scores.json").write_text(json.dumps({"fidelity": 0.8}))
    return root


@pytest.fixture(scope="module")
def client(grocery_searcher, ml_searcher, store_path, broker, topics, consumer, creatives, monkeypatch_module):
    from crossrec.service import create_app

    monkeypatch_module.setenv("CROSSREC_API_KEY", API_KEY)
    engine = make_engine(store_path, {"grocery": grocery_searcher, "ml100k": ml_searcher}, bootstrap=broker.bootstrap,
                         prefix=topics.prefix, creatives_dir=str(creatives))
    with TestClient(create_app(engine)) as c:
        yield c


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def _click(user: int, item: int, n: int = 0, **over) -> dict:
    return {"event_id": f"api-{user}-{item}-{n}-{time.time_ns()}", "timestamp": 2e9 + n, "user_id": user,
            "item_id": item, "kind": "click", **over}


def test_health_readiness_and_openapi(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready["ready"] and ready["catalogues"] == {"grocery": 4, "ml100k": 1682}
    spec = client.get("/openapi.json").json()
    assert {"/catalogues/{catalogue}/search", "/users/{user_id}/recommendations", "/events",
            "/creatives/{user_id}/{item_id}"} <= set(spec["paths"])
    assert "UserEvent" in spec["components"]["schemas"]  # the Kafka event model is the API's
    schemas = client.get("/schemas/events").json()
    assert schemas["user_event"]["properties"]["kind"]["enum"] == ["view", "click", "add_to_cart", "purchase", "rating"]
    assert "crossrec" in client.get("/").text and client.get("/static/app.js").status_code == 200


def test_text_search_in_both_catalogues_and_item_images(client, grocery_searcher):
    title = grocery_searcher.items.titles[2]
    res = client.get("/catalogues/grocery/search", params={"q": title, "k": 3}).json()
    assert res["hits"][0]["title"] == title and res["hits"][0]["signals"]
    img = client.get(res["hits"][0]["image_url"])
    assert img.status_code == 200 and img.content[:3] == b"\xff\xd8\xff"  # a JPEG
    res = client.get("/catalogues/grocery/search", params={"q": "fruit", "mode": "image", "k": 2}).json()
    assert res["mode"] == "image" and len(res["hits"]) == 2
    ml = client.get("/catalogues/ml100k/search", params={"q": "Toy Story", "k": 5}).json()
    assert ml["hits"][0]["item_id"] == "1" and "Toy Story" in ml["hits"][0]["title"]
    item = client.get("/catalogues/ml100k/items/1").json()
    assert item["title"].startswith("Toy Story") and "Animation" in item["facets"]["genre"]
    filtered = client.get("/catalogues/ml100k/search", params={"q": "story", "filters": json.dumps({"genre": "Horror"})}).json()
    assert all("Horror" in client.get(f"/catalogues/ml100k/items/{h['item_id']}").json()["facets"]["genre"]
               for h in filtered["hits"])


def test_image_search_with_a_real_shop_photo(client, grocery, grocery_searcher):
    target = grocery_searcher.items.ids[1]
    photo = next(p for p in grocery.split("test") if p.class_id == target)
    for space in ("fused", "image", "text"):
        res = client.post("/catalogues/grocery/search/image", files={"image": ("p.jpg", photo.path.read_bytes(), "image/jpeg")},
                          data={"k": "4", "space": space})
        assert res.status_code == 200, res.text
        assert len(res.json()["hits"]) == 4 and res.json()["mode"] == f"image->{space}"


def test_recommendations_profile_and_users(client):
    rec = client.get("/users/1/recommendations", params={"k": 7}).json()
    assert rec["user_id"] == 1 and len(rec["items"]) == 7 and not rec["cold_start"]
    first = rec["items"][0]
    assert first["sources"] and first["top_feature_group"] and first["image_url"].startswith("/catalogues/ml100k/items/")
    profile = client.get("/users/1/profile").json()
    seen = {h["item_id"] for h in profile["history"]}
    assert profile["n_events"] > 0 and not seen & {i["item_id"] for i in rec["items"]}
    assert abs(sum(profile["category_affinity"].values()) - 1) < 0.5  # top 10 of a distribution
    cold = client.get("/users/900/recommendations").json()  # known user, no events in the store
    assert cold["cold_start"] and "popularity" in cold["reason"]
    horror = client.get("/users/1/recommendations", params={"genres": "Horror", "k": 3}).json()
    assert len(horror["items"]) == 3
    assert 1 in client.get("/users").json()["user_ids"]


def test_creatives_from_the_cache_and_202_on_a_miss(client):
    hit = client.get("/creatives/1/50").json()
    assert hit["copy"]["headline"] == "A galaxy far away" and hit["assets"]["poster"] == "/creatives/1/50/poster"
    poster = client.get(hit["assets"]["poster"])
    assert poster.status_code == 200 and poster.content[:4] == b"\x89PNG"
    assert client.get("/creatives/1/51").status_code == 404
    miss = client.post("/creatives/1/51", headers=KEY)
    assert miss.status_code == 202 and miss.headers["location"] == "/creatives/1/51" and miss.json()["request_id"]
    assert client.post("/creatives/1/50", headers=KEY).status_code == 200
    assert client.get("/creatives/1/50/copy").status_code == 404  # JSON parts come inside the creative


def test_a_click_goes_through_kafka_and_changes_the_recommendations(client, consumer):
    before = client.get("/users/2/recommendations", params={"k": 10}).json()["items"]
    n_before = client.get("/users/2/profile").json()["n_events"]
    clicked = [it["item_id"] for it in before[:3]]
    batch = [_click(2, item, n) for n, item in enumerate(clicked)]
    ack = client.post("/events", json=batch, headers=KEY)
    assert ack.status_code == 200, ack.text
    assert ack.json()["accepted"] == 3
    deadline = time.time() + 30
    while time.time() < deadline and client.get("/users/2/profile").json()["n_events"] < n_before + 3:
        time.sleep(0.2)
    assert client.get("/users/2/profile").json()["n_events"] == n_before + 3
    after = [it["item_id"] for it in client.get("/users/2/recommendations", params={"k": 10}).json()["items"]]
    assert not set(clicked) & set(after) and after != [it["item_id"] for it in before]


def test_no_accepted_event_is_lost(client, consumer):
    events = [_click(3, 100 + n, n) for n in range(60)] + [_click(3, 300, 99, kind="rating", value=4.0)]
    assert client.post("/events", json=events, headers=KEY).json()["accepted"] == 61
    assert client.post("/events", json=_click(3, 7, 1000), headers=KEY).json()["accepted"] == 1  # one event alone
    deadline = time.time() + 30
    while time.time() < deadline:
        items = {h[0] for h in consumer.get(3).history}
        if {100 + n for n in range(60)} | {300, 7} <= items:
            break
        time.sleep(0.2)
    assert {100 + n for n in range(60)} | {300, 7} <= {h[0] for h in consumer.get(3).history}


BAD_EVENTS = [
    ("malformed JSON", b'{"event_id": "x", ', "JSON"),
    ("wrong type", json.dumps(_click(1, 2) | {"user_id": "one"}).encode(), "user_id"),
    ("bool as id", json.dumps(_click(1, 2) | {"item_id": True}).encode(), "item_id"),
    ("unknown kind", json.dumps(_click(1, 2) | {"kind": "like"}).encode(), "kind"),
    ("rating without value", json.dumps(_click(1, 2) | {"kind": "rating"}).encode(), "value"),
    ("unknown field", json.dumps(_click(1, 2) | {"schema": "user_event"}).encode(), "schema"),
    ("NaN timestamp", b'{"event_id":"n","timestamp":NaN,"user_id":1,"item_id":2,"kind":"click"}', "timestamp"),
    ("unknown user", json.dumps(_click(99_999, 2)).encode(), "not a known user"),
    ("unknown item", json.dumps(_click(1, 99_999)).encode(), "not in catalogue"),
    ("empty batch", b"[]", "empty"),
]


@pytest.mark.parametrize("name, body, says", BAD_EVENTS, ids=[b[0] for b in BAD_EVENTS])
def test_bad_events_get_a_4xx_naming_the_problem(client, name, body, says):
    res = client.post("/events", content=body, headers={**KEY, "Content-Type": "application/json"})
    assert res.status_code == 422, res.text
    assert says in json.dumps(res.json()["detail"])


def test_api_key_is_required_for_writes(client):
    assert client.post("/events", json=_click(1, 2)).status_code == 401
    assert client.post("/events", json=_click(1, 2), headers={"X-API-Key": "wrong"}).status_code == 403
    assert client.post("/creatives/1/51").status_code == 401
    assert client.get("/users/1/recommendations").status_code == 200  # reads need no key


def _png_bomb(side: int) -> bytes:
    """A valid PNG header declaring side x side pixels with a tiny compressed body."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    raw = zlib.compress(b"\x00" * (side // 8 + 1) * 64, 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)) + \
        chunk(b"IDAT", raw) + chunk(b"IEND", b"")


@pytest.mark.parametrize("name, body, status", [
    ("not an image", b"%PDF-1.4 this is not an image", 415),
    ("empty", b"", 422),
    ("truncated jpeg", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", 415),
    ("decompression bomb", _png_bomb(60_000), 422),
    ("huge upload", b"\xff\xd8" + b"\x00" * (3 * 1024 * 1024), 413),
])
def test_bad_uploads_are_refused_and_the_service_stays_up(client, name, body, status):
    res = client.post("/catalogues/grocery/search/image", files={"image": ("x.jpg", body, "image/jpeg")})
    assert res.status_code == status, res.text
    assert res.json()["detail"]
    assert client.get("/healthz").status_code == 200


@pytest.mark.parametrize("path", [
    "/catalogues/grocery/items/..%2F..%2F..%2Fetc%2Fpasswd/image",
    "/catalogues/grocery/items/../../etc/passwd",
    "/catalogues/..%2F..%2Fetc/items/1/image",
    "/catalogues/grocery/items/%2Fetc%2Fpasswd/image",
    "/creatives/1/50/..%2F..%2Fetc%2Fpasswd",
    "/reports/..%2F..%2Fetc%2Fpasswd",
    "/static/..%2F..%2F..%2F..%2Fetc%2Fpasswd",
])
def test_path_tricks_in_ids_never_reach_a_file(client, path):
    res = client.get(path)
    assert res.status_code in (404, 422) and b"root:" not in res.content


def test_unknown_ids_and_wrong_parameters(client):
    assert client.get("/catalogues/nope/search", params={"q": "x"}).status_code == 404
    assert client.get("/catalogues/ml100k/items/999999").status_code == 404
    assert client.get("/users/99999/profile").status_code == 404
    assert client.get("/users/99999/recommendations").status_code == 404
    assert client.get("/users/abc/recommendations").status_code == 422
    assert client.get("/users/1/recommendations", params={"k": 0}).status_code == 422
    assert "allowed" in client.get("/users/1/recommendations", params={"genres": "Space Opera"}).json()["detail"]
    assert client.get("/catalogues/grocery/search", params={"q": "x", "filters": "{oops"}).status_code == 422
    assert client.get("/catalogues/grocery/search", params={"q": "x", "mode": "magic"}).status_code == 422
    assert client.get("/catalogues/grocery/search", params={"q": "!!!"}).status_code == 422


def test_metrics_count_requests_per_route_and_cors_is_off(client):
    client.get("/users/1/recommendations")
    text = client.get("/metrics").text
    assert 'crossrec_request_seconds_count{method="GET",route="/users/{user_id}/recommendations"}' in text
    assert "crossrec_kafka_publish_seconds_count" in text
    res = client.get("/healthz", headers={"Origin": "http://evil.example"})
    assert "access-control-allow-origin" not in res.headers
