"""Asset store, creative cache, generate-ahead and the profile store's per-user version."""

from __future__ import annotations

import threading

import pytest

from crossrec_core.errors import UnknownIdError
from generation.assets import AssetStore, InvalidAssetIdError
from generation.cache import CacheKey, CreativeCache, generate_copy_ahead, segment_owner, settings_hash, user_owner
from generation.catalogue import grocery_items
from generation.control import neutral_controls
from generation.copy import CopyRequest, TemplateCopyWriter
from recsys.profiles import Interaction, ProfileStore


def test_asset_store_content_addressed_and_ids_validated(tmp_path):
    store = AssetStore(tmp_path / "assets")
    ref = store.put(b"poster bytes", "png")
    assert store.put(b"poster bytes", ".PNG") == ref and ref.asset_id.endswith(".png")
    assert store.path(ref.asset_id).read_bytes() == b"poster bytes" and ref.asset_id in store
    assert store.put(b"other", "png").asset_id != ref.asset_id
    for bad in ("../../etc/passwd", ref.sha256, ref.sha256 + ".exe", "/" + ref.asset_id, ref.asset_id.upper()):
        with pytest.raises(InvalidAssetIdError):
            store.path(bad)
        assert bad not in store
    with pytest.raises(UnknownIdError):
        store.path("0" * 64 + ".png")
    with pytest.raises(ValueError, match="suffix"):
        store.put(b"x", "sh")
    # concurrent writers of the same bytes leave one whole file
    threads = [threading.Thread(target=store.put, args=(b"z" * 100_000, "jpg")) for _ in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    files = [p for p in (tmp_path / "assets").rglob("*") if p.is_file()]
    assert len(files) == 3 and all(not p.name.startswith(".") for p in files)


def test_cache_hits_and_profile_version_in_the_key(tmp_path):
    profiles = ProfileStore(None)
    assert profiles.user_version(5) == 0
    profiles.apply([Interaction("e1", 5, 10, "rating", 1.0, 5.0)])
    v1 = profiles.user_version(5)
    profiles.apply([Interaction("e1", 5, 10, "rating", 1.0, 5.0)])  # a replayed event changes nothing
    assert profiles.user_version(5) == v1 == 1
    cache = CreativeCache(tmp_path / "index.sqlite")
    settings = settings_hash({"shape": "square", "variants": 4})
    key = CacheKey("creative", user_owner(5, v1), "10", settings)
    calls = []
    record, hit = cache.get_or_make(key, lambda: calls.append(1) or {"poster": "abc.png"})
    again, hit2 = cache.get_or_make(key, lambda: calls.append(1) or {"poster": "other.png"})
    assert (hit, hit2, again, len(calls)) == (False, True, record, 1)
    profiles.apply([Interaction("e2", 5, 11, "click", 2.0)])
    newer = CacheKey("creative", user_owner(5, profiles.user_version(5)), "10", settings)
    assert cache.get(newer) is None  # a new event: the old creative is not served
    assert settings_hash({"variants": 4, "shape": "square"}) == settings
    assert CreativeCache(tmp_path / "index.sqlite").get(key) == record  # persisted, shared by processes
    # a reader without the settings (the service) gets the newest record of (owner, item)
    later = CacheKey("creative", user_owner(5, v1), "10", settings_hash({"shape": "story"}))
    cache.put(later, {"poster": "later.png"})
    assert cache.latest("creative", user_owner(5, v1), "10") == {"poster": "later.png"}
    assert cache.latest("creative", newer.owner, "10") is None
    with pytest.raises(ValueError, match="kind"):
        CacheKey("video", "neutral", "1", settings)


def test_generate_copy_ahead_makes_serving_a_hit(tmp_path):
    items = list(grocery_items().values())[:3]
    writer = TemplateCopyWriter()
    cache = CreativeCache(":memory:")
    requests = [(segment_owner(s), CopyRequest(i, neutral_controls(i))) for s in (0, 1) for i in items]
    assert generate_copy_ahead(cache, writer, requests, settings=writer.fingerprint, batch_size=4) == 6
    assert generate_copy_ahead(cache, writer, requests, settings=writer.fingerprint) == 0
    served = cache.get(CacheKey("copy", segment_owner(1), items[2].item_id, writer.fingerprint))
    assert served["item_id"] == items[2].item_id and served["source"] == "template" and served["ai_generated"]
