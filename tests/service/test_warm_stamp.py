"""The service's search-vector warm-up runs once: its stamp goes stale with the models or the cache."""

from __future__ import annotations

import numpy as np

from crossrec.service import ServiceConfig
from crossrec.service.server import _record_warm, search_cache_is_warm
from crossrec_core.paths import cache_dir, models_dir


def test_stamp_follows_models_and_vector_files(tmp_path, monkeypatch):
    monkeypatch.setenv("CROSSREC_HOME", str(tmp_path / "home"))
    config = ServiceConfig(catalogues=("ml100k",))
    model = models_dir() / "crossclip-grocery" / "model.safetensors"
    model.parent.mkdir(parents=True)
    model.write_bytes(b"weights v1")
    vectors = cache_dir("search") / "grocery-minilm.npy"
    vectors.parent.mkdir(parents=True)
    np.save(vectors, np.zeros((2, 3), np.float32))

    assert not search_cache_is_warm(config)
    _record_warm(config)
    assert search_cache_is_warm(config)
    assert not search_cache_is_warm(ServiceConfig())  # another catalogue set

    store = models_dir() / "ranker-ml100k" / "profiles.db"  # a live store beside a model changes while serving
    store.parent.mkdir()
    store.write_bytes(b"profiles")
    assert search_cache_is_warm(config)

    model.write_bytes(b"weights v2, retrained")  # a retrained model: vectors must be rebuilt
    assert not search_cache_is_warm(config)
    _record_warm(config)
    assert search_cache_is_warm(config)

    vectors.unlink()  # a cleared cache
    assert not search_cache_is_warm(config)
