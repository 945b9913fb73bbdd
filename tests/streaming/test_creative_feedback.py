"""The deployed feedback loop: ``crossrec creative feedback`` (a consumer group on the real broker)
creates the bandit from the live profile store, applies a worker's v2 result (all poster variants of
one request) and impressions/clicks; the service's ``CreativeSource`` then picks the clicked style;
a replay counts nothing twice and a restart keeps the state."""

from __future__ import annotations

import argparse
import io
import json
from collections import Counter

import pytest
from PIL import Image

ITEM = 50
GENRES = ("Drama", "Comedy", "Action")


def _run(argv) -> int:
    from crossrec.cli_creative import add_parser

    parser = argparse.ArgumentParser(prog="crossrec")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def _png(colour) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), colour).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture
def live(tmp_path):
    """A live profile store: users 1-4 watch dramas, 5-8 comedies, 9-12 action films (items 1-3);
    the worker's outputs for (user 1, item 50): a cache record listing a noir and a pastel poster."""
    from generation.assets import AssetStore
    from generation.cache import CacheKey, CreativeCache, user_owner
    from recsys.profiles import Interaction, ProfileStore

    store = ProfileStore(tmp_path / "p.db", item_categories={1: ["Drama"], 2: ["Comedy"], 3: ["Action"], ITEM: ["Drama"]})
    store.apply([Interaction(f"e{u}-{k}", u, 1 + (u - 1) // 4, "click", 1000.0 + k) for u in range(1, 13) for k in range(3)])
    version = store.user_version(1)
    store.close()
    assets = AssetStore(tmp_path / "assets")
    posters = {"noir": assets.put(_png((20, 20, 20)), "png").asset_id,
               "pastel": assets.put(_png((250, 200, 220)), "png").asset_id}
    copy = assets.put(json.dumps({"headline": "h"}).encode(), "json").asset_id
    scores = assets.put(json.dumps({"chosen": {"seed": 0, "extra": {"family": "noir"}}}).encode(), "json").asset_id
    cache = CreativeCache(tmp_path / "cache.sqlite")
    cache.put(CacheKey("creative", user_owner(1, version), str(ITEM), "s"),
              {"assets": {"poster.png": posters["noir"], "copy.json": copy, "scores.json": scores}, "gate_passed": True,
               "payload_id": 1, "posters": [{"asset_id": a, "family": f, "score": 0.5} for f, a in posters.items()]})
    cache.close()
    return tmp_path, posters, version


@pytest.mark.broker
def test_feedback_consumer_bandit_and_the_service_choice(live, broker, topics):
    from crossrec.creative_worker import poster_variant_id
    from crossrec.service.creatives import CreativeSource
    from generation.bandit import Bandit
    from recsys.profiles import Interaction, ProfileStore
    from streaming.events import CreativeAsset, CreativeClick, CreativeImpression, CreativeResult
    from streaming.producer import EventProducer

    root, posters, version = live
    bandit_dir = root / "bandit"
    variants = {f: poster_variant_id(str(ITEM), f, a) for f, a in posters.items()}
    feedback = ["creative", "feedback", "--bootstrap", broker.bootstrap, "--prefix", topics.prefix,
                "--bandit", str(bandit_dir), "--store", str(root / "p.db"), "--segments", "3", "--idle-timeout", "3"]
    # the worker's v2 result: both servable posters of the request
    result = CreativeResult(event_id="cres:r1", timestamp=1.0, request_id="r1", user_id=1, item_id=ITEM, status="ok",
                            assets=[CreativeAsset(kind="poster", asset_id=a, variant_id=variants[f], family=f, score=0.5)
                                    for f, a in posters.items()], variant_ids=list(variants.values()))
    with EventProducer(broker.bootstrap) as producer:
        producer.send(topics.creative_results, result)
    assert _run(feedback) == 0  # creates the bandit from the store, registers the two variants
    bandit = Bandit.open(bandit_dir)
    drama = bandit.segment_of("1")
    assert bandit.config.n_segments == 3 and {bandit.segment_of(str(u)) for u in (2, 3, 4)} == {drama}
    assert len({bandit.segment_of(str(u)) for u in (1, 5, 9)}) == 3  # one segment per taste
    assert bandit.segment_of("99") == 3  # no history: the cold segment
    assert {v.variant_id for v in bandit.variants(str(ITEM))} == set(variants.values())
    bandit.close()

    source = CreativeSource(str(root / "cache.sqlite"), str(root / "assets"), str(bandit_dir), bandit_refresh_s=0.01)
    before = Counter(source.find(1, ITEM, version).family for _ in range(60))
    assert set(before) == {"noir", "pastel"}  # equal priors, no evidence: both are shown

    # drama users click noir and ignore pastel; user 13 is new (history after the bandit was made)
    with ProfileStore.open(root / "p.db") as store:
        store.apply([Interaction("e13", 13, 1, "click", 2000.0)])
    events = []
    for n in range(60):
        user, family = 1 + n % 4 if n < 56 else 13, "noir" if n % 2 == 0 else "pastel"
        imp = CreativeImpression(event_id=f"imp{n}", timestamp=2.0, user_id=user, item_id=ITEM,
                                 variant_id=variants[family], family=family)
        events.append(imp)
        if family == "noir":
            events.append(CreativeClick(event_id=f"clk{n}", timestamp=3.0, impression_id=imp.event_id, user_id=user,
                                        item_id=ITEM, variant_id=variants[family], family=family))
    with EventProducer(broker.bootstrap) as producer:
        producer.send_many(topics.creative_feedback, events)
    assert _run(feedback) == 0  # the same group: a restart, resuming after the result
    bandit = Bandit.open(bandit_dir)
    counts = bandit.arm_counts()
    noir, pastel = (bandit.config.families.index(f) for f in ("noir", "pastel"))
    assert (counts["impressions"][drama, noir], counts["clicks"][drama, noir]) == (30, 30)
    assert (counts["impressions"][drama, pastel], counts["clicks"][drama, pastel]) == (30, 0)
    assert bandit.segment_of("13") == drama  # segmented at the first impression, from the live store
    digest = bandit.state_digest()
    bandit.close()

    after = Counter()
    for _ in range(40):
        found = source.find(1, ITEM, version)
        assert found.chosen_by == "bandit" and found.poster_asset == posters[found.family]
        after[found.family] += 1
    assert after["noir"] == 40, after  # the service's choice follows the deployed consumer's evidence
    source.close()

    # a replay of both topics by a new group: all duplicates, same state
    assert _run([*feedback, "--group", "replay", "--json", str(root / "replay.json")]) == 0
    replay = json.loads((root / "replay.json").read_text())
    assert replay["duplicates"] == 60 + 30 and replay["applied"] == 2  # the result re-registers its two variants
    bandit = Bandit.open(bandit_dir)
    assert bandit.state_digest() == digest
    bandit.close()


def test_creating_a_bandit_needs_enough_users_with_history(tmp_path):
    from crossrec.wiring import open_feedback_bandit
    from crossrec_core.errors import CrossrecError
    from recsys.profiles import Interaction, ProfileStore

    store = ProfileStore(tmp_path / "p.db", item_categories={1: ["Drama"]})
    store.apply([Interaction("e1", 1, 1, "click", 1.0)])
    with pytest.raises(CrossrecError, match="n_segments=10: the profile store .* only 1 user"):
        open_feedback_bandit(tmp_path / "b", store)
    with pytest.raises(CrossrecError, match="creating one needs the profile store"):
        open_feedback_bandit(tmp_path / "b")
    open_feedback_bandit(tmp_path / "b", store, n_segments=1).close()
    with pytest.raises(CrossrecError, match="created with 1 segments"):
        open_feedback_bandit(tmp_path / "b", n_segments=4)
    store.close()


def test_the_service_stack_runs_the_worker_and_feedback_consumer_on_the_service_paths(tmp_path):
    """``service_stack`` starts these argument lists: the real CLI parses them into a worker that
    writes the cache and asset store the service reads, and a feedback consumer on its bandit."""
    from crossrec.cli import build_parser
    from crossrec.service import ServiceConfig
    from crossrec.wiring import creative_loop_commands

    base = ServiceConfig(catalogues=("ml100k",))
    common = {"store": tmp_path / "p.db", "work": tmp_path, "bootstrap": "127.0.0.1:9", "topic_prefix": "px"}
    assert creative_loop_commands(base, **common) == {}  # no creative flags: no creative processes
    config = ServiceConfig(catalogues=("ml100k",), creative_cache=str(tmp_path / "c.sqlite"),
                           assets_dir=str(tmp_path / "assets"), bandit_dir=str(tmp_path / "bandit"))
    commands = creative_loop_commands(config, **common)
    worker = build_parser().parse_args(commands["creative-worker"])
    assert (worker.creative_cache, worker.assets_dir, worker.profiles) == (config.creative_cache, config.assets_dir,
                                                                           str(tmp_path / "p.db"))
    assert (worker.bootstrap, worker.prefix, worker.dataset) == ("127.0.0.1:9", "px", "ml100k")
    feedback = build_parser().parse_args(commands["creative-feedback"])
    assert (feedback.bandit, feedback.store, feedback.bootstrap, feedback.prefix) == (
        config.bandit_dir, str(tmp_path / "p.db"), "127.0.0.1:9", "px")
    assert feedback.func.__name__ == "_cmd_feedback" and worker.func.__name__ == "_cmd_worker"
