from __future__ import annotations

import random
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from recsys import (
    INTERACTION_KINDS,
    Interaction,
    ProfileStore,
    event_weights,
    interactions_from_ratings,
)
from crossrec_core.errors import EmbeddingDimensionError


@pytest.fixture()
def events(ratings_slice) -> list[Interaction]:
    return interactions_from_ratings(ratings_slice, source="ml")


def make_store(path, item_vectors, item_categories, **kw) -> ProfileStore:
    ids, vecs = item_vectors
    return ProfileStore(path, item_ids=ids, item_vectors=vecs, item_categories=item_categories, **kw)


def test_apply_is_idempotent_and_counts(events, item_vectors, item_categories):
    store = make_store(None, item_vectors, item_categories)
    first = store.apply(events[:500])
    assert (first.applied, first.duplicates, first.unknown_items) == (500, 0, 0)
    again = store.apply(events[250:750] + events[700:701])
    assert (again.applied, again.duplicates) == (250, 251)
    assert store.n_events() == 750


def test_profiles_independent_of_arrival_order(events, item_vectors, item_categories):
    ordered = make_store(None, item_vectors, item_categories)
    for i in range(0, len(events), 500):
        ordered.apply(events[i : i + 500])
    shuffled_events = list(events)
    random.Random(1).shuffle(shuffled_events)
    shuffled = make_store(None, item_vectors, item_categories)
    for i in range(0, len(shuffled_events), 337):
        shuffled.apply(shuffled_events[i : i + 337])
    assert ordered.users() == shuffled.users()
    assert ordered.fingerprint() == shuffled.fingerprint()
    shuffled.apply(events[:10])  # duplicates change nothing
    assert ordered.fingerprint() == shuffled.fingerprint()


def test_profile_content_matches_definition(events, ratings_slice, item_vectors, item_categories):
    store = make_store(None, item_vectors, item_categories, half_life_days=10.0)
    store.apply(events)
    user = int(ratings_slice["user_id"][0])
    p = store.get(user)
    own = ratings_slice.filter(ratings_slice["user_id"] == user)
    assert p.n_events == len(p.history) == own.height
    ts = [h[3] for h in p.history]
    assert ts == sorted(ts)
    # The vector is the normalised weighted mean of the consumed items' vectors.
    ids, vecs = item_vectors
    row = {i: r for r, i in enumerate(ids)}
    w = event_weights([h[1] for h in p.history], [h[2] for h in p.history], np.array(ts), 10.0)
    expected = w @ vecs[[row[h[0]] for h in p.history]].astype(np.float64)
    np.testing.assert_allclose(p.vector, expected / np.linalg.norm(expected), rtol=1e-5, atol=1e-6)
    assert p.vector.dtype == np.float32 and p.vector.shape == (vecs.shape[1],)
    assert abs(sum(p.category_affinity.values()) - 1.0) < 1e-9
    assert set(p.category_affinity) <= {c for h in p.history for c in item_categories[h[0]]}


def test_event_weights_decay_with_half_life():
    day = 86_400.0
    w = event_weights(["rating", "rating", "purchase", "view"], [4.0, 4.0, None, None], np.array([0.0, 10 * day, 10 * day, 10 * day]), 10.0)
    assert w[0] == pytest.approx(w[1] / 2)  # one half-life older: half the weight
    assert w[2] > w[1] > w[3]  # a purchase says more than a good rating, a view less


def test_recent_clicks_move_the_vector(item_vectors, item_categories):
    store = make_store(None, item_vectors, item_categories)
    ids, vecs = item_vectors
    store.apply([Interaction("a", 7, ids[0], "purchase", 1_000.0)])
    before = store.get(7).vector
    np.testing.assert_allclose(before, vecs[0], rtol=1e-5, atol=1e-6)
    store.apply([Interaction("b", 7, ids[1], "click", 2_000.0)])
    after = store.get(7).vector
    assert float(after @ vecs[1]) > float(before @ vecs[1])


def test_unknown_items_and_unknown_users(item_vectors, item_categories):
    store = make_store(None, item_vectors, item_categories)
    assert store.get(12345) is None
    res = store.apply([Interaction("x1", 5, 999_999, "view", 1.0), Interaction("x2", 5, 999_998, "click", 2.0)])
    assert (res.applied, res.unknown_items) == (2, 2)
    p = store.get(5)
    assert p.n_events == 2 and p.vector is None and p.category_affinity == {}
    # Once the catalogue learns the item, the profile picks its vector up.
    store.set_item_vectors([999_999], item_vectors[1][:1], {999_999: ["Drama"]})
    p = store.get(5)
    assert p.vector is not None and p.category_affinity == {"Drama": 1.0}


def test_demographics(item_vectors, item_categories, tmp_path):
    store = make_store(tmp_path / "p.db", item_vectors, item_categories)
    store.set_demographics(3, {"age": 23, "sex": "M", "occupation": "writer"})
    p = store.get(3)
    assert p.demographics["occupation"] == "writer" and p.n_events == 0 and p.vector is None
    assert store.users() == [3]
    with pytest.raises(TypeError, match="demographics"):
        store.set_demographics(3, ["age", 23])
    store.close()
    assert ProfileStore.open(tmp_path / "p.db").get(3).demographics["age"] == 23


def test_bad_input_is_rejected(item_vectors, item_categories):
    with pytest.raises(ValueError, match="kind='like'"):
        Interaction("e", 1, 1, "like", 1.0)
    with pytest.raises(ValueError, match="rating"):
        Interaction("e", 1, 1, "rating", 1.0)
    with pytest.raises(ValueError, match="event_id"):
        Interaction("", 1, 1, "view", 1.0)
    with pytest.raises(ValueError, match="timestamp"):
        Interaction("e", 1, 1, "view", float("nan"))
    store = make_store(None, item_vectors, item_categories)
    with pytest.raises(TypeError, match="Interaction"):
        store.apply([("e", 1, 1, "view", 1.0)])
    with pytest.raises(EmbeddingDimensionError, match="width"):
        store.set_item_vectors([1], np.ones((1, 8), np.float32))
    with pytest.raises(EmbeddingDimensionError, match="shape"):
        store.set_item_vectors([1, 2], np.ones((1, 32), np.float32))
    with pytest.raises(ValueError, match="half_life_days"):
        ProfileStore(None, half_life_days=0)
    store.set_item_vectors([1], np.ones((1, 8), np.float32), replace=True)
    assert store.dim == 8
    assert set(INTERACTION_KINDS) == {"view", "click", "add_to_cart", "purchase", "rating"}


def test_persists_and_reopens(events, item_vectors, item_categories, tmp_path):
    path = tmp_path / "profiles.db"
    store = make_store(path, item_vectors, item_categories, half_life_days=7.0)
    store.apply(events[:2000])
    store.flush()
    fp = store.fingerprint()
    store.close()
    reopened = ProfileStore.open(path)
    assert reopened.half_life_days == 7.0 and reopened.dim == item_vectors[1].shape[1]
    assert reopened.fingerprint() == fp
    assert reopened.apply(events[:2000]).duplicates == 2000
    with pytest.raises(FileNotFoundError, match="no profile store"):
        ProfileStore.open(tmp_path / "missing.db")


def test_flushed_events_survive_kill_9(tmp_path, ratings_slice):
    path = tmp_path / "k.db"
    script = textwrap.dedent(
        f"""
        import os, signal
        import polars as pl
        from recsys import ProfileStore, interactions_from_ratings
        ratings = pl.read_ipc({str(tmp_path / "r.arrow")!r})
        store = ProfileStore({str(path)!r})
        events = interactions_from_ratings(ratings, source="ml")
        for i in range(0, len(events), 500):
            store.apply(events[i:i + 500])
        store.flush()
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    ratings_slice.write_ipc(tmp_path / "r.arrow")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    store = ProfileStore.open(path)
    assert store.n_events() == ratings_slice.height
    assert len(store.users()) == ratings_slice["user_id"].n_unique()


def test_two_connections_on_one_file_see_each_others_commits(events, item_vectors, item_categories, tmp_path):
    """What several worker processes sharing a store rely on: cached profiles and the catalogue
    follow the other connection's commits."""
    path = tmp_path / "shared.db"
    writer = make_store(path, item_vectors, item_categories)
    reader = ProfileStore.open(path)
    user = events[0].user_id
    mine = [e for e in events if e.user_id == user]
    writer.apply(mine[:5])
    assert reader.get(user).n_events == 5  # cached in the reader from here on
    writer.apply(mine[5:10])
    assert reader.get(user).n_events == 10
    # A new item (as the item-index worker adds it) and a click on it, both from the writer.
    new_item, dim = 999_001, item_vectors[1].shape[1]
    vec = np.zeros((1, dim), np.float32)
    vec[0, 0] = 1.0
    writer.set_item_vectors([new_item], vec, {new_item: ["Brand-new"]})
    writer.apply([Interaction("click-new", user, new_item, "click", mine[9].timestamp + 1.0)])
    got, expected = reader.get(user), writer.get(user)
    assert got.n_events == 11 and "Brand-new" in got.category_affinity
    np.testing.assert_allclose(got.vector, expected.vector, rtol=1e-6)
    writer.close()
    reader.close()


def test_another_connections_commit_drops_only_the_users_it_changed(events, item_vectors, item_categories, tmp_path):
    """A worker's cached profiles survive the consumer's commits about other users (the profile
    object itself is kept), while the changed users' profiles are rebuilt from the new events or
    demographics; a catalogue change still drops every profile."""
    path = tmp_path / "shared.db"
    writer = make_store(path, item_vectors, item_categories)
    users = sorted({e.user_id for e in events})[:3]
    by_user = {u: [e for e in events if e.user_id == u] for u in users}
    writer.apply([e for u in users for e in by_user[u][:4]])
    reader = ProfileStore.open(path)
    cached = {u: reader.get(u) for u in users}
    changed, kept, demo_user = users
    writer.apply(by_user[changed][4:6])
    assert reader.get(kept) is cached[kept]
    assert reader.get(demo_user) is cached[demo_user]
    fresh = reader.get(changed)
    assert fresh.n_events == 6 and fresh.history == writer.get(changed).history
    writer.set_demographics(demo_user, {"age": 31})
    assert reader.get(demo_user).demographics == {"age": 31}
    assert reader.get(kept) is cached[kept] and reader.get(changed) is fresh
    # The reader's own writes are not read back as another connection's (nothing else dropped).
    reader.apply(by_user[kept][4:5])
    assert reader.get(kept).n_events == 5 and reader.get(changed) is fresh
    # The writer sees the reader's event; then a catalogue upsert drops every cached profile.
    assert writer.get(kept).n_events == 5
    writer.set_item_vectors([999_002], None, {999_002: ["Other"]})
    assert reader.get(changed) is not fresh and reader.get(changed).history == fresh.history
    writer.close()
    reader.close()
