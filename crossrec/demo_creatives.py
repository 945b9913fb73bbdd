"""The demo's creative step: personalised copy, poster variants and one trailer for a few MovieLens
users, made through the same ``Studio`` and trailer code as ``crossrec creative``.

Whose taste: the demo's live profile store (the events replayed through Kafka, the click
included), so a creative's cache key (user at their profile version, item, settings) is the same
on every run of the same slice. The cache and the content-addressed asset store live in
``<out>/service/creatives``, the ones ``crossrec demo --serve`` hands the service: a second demo
copies the files out of the store (no model runs), and the page serves these creatives at once.

Lighter settings than ``crossrec creative`` (said on the console): template copy instead of the
language model (about 11 s of CPU per creative on this machine, over a minute for six) and one
round of poster variants (the command retries a round with new seeds when none passes the
quality gate; here the best-ranked variant is kept and ``scores.json`` says so).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

__all__ = ["DemoCreative", "DemoTrailer", "DEMO_CREATIVE_USERS", "DEMO_CREATIVE_ITEMS", "DEMO_POSTER_VARIANTS",
           "creative_state_dir", "creative_picks", "demo_studio", "make_demo_creatives"]

DEMO_CREATIVE_USERS, DEMO_CREATIVE_ITEMS = 3, 2  # users x their top recommended items
DEMO_POSTER_VARIANTS = 4
_TRAILER_SECONDS = 8.0


@dataclass(frozen=True)
class DemoCreative:
    """One (user, item) creative: the files ``poster.png``, ``copy.json`` and ``scores.json`` in
    ``folder``; ``poster_score`` the chosen variant's total score (None: unscored), ``variants``
    how many poster variants were stored for the bandit, ``cache_hit`` True when it was reused."""

    user_id: int
    item_id: int
    title: str
    headline: str
    tagline: str
    body: str
    copy_source: str  # "template" or "lm"
    copy_similarity: float  # the copy's cosine to the item text (guardrails)
    poster_score: float | None
    gate_passed: bool
    variants: int
    liked: int  # liked items that set the user's taste
    cache_hit: bool
    folder: str
    seconds: float


@dataclass(frozen=True)
class DemoTrailer:
    """The demo's trailer of ``item_id`` for ``user_id`` (H.264 MP4, labelled, watermarked, C2PA)
    at ``path``; ``reused`` when it came out of the asset store."""

    user_id: int
    item_id: int
    title: str
    path: str
    duration_s: float
    reused: bool
    seconds: float


def creative_state_dir(out_dir: str | Path) -> Path:
    """The demo's creative cache and asset store: also the ones ``crossrec demo --serve`` serves."""
    return Path(out_dir) / "service" / "creatives"


def creative_picks(first: tuple[int, Sequence[int]], recommend: Callable[[int, int], Sequence[int]],
                   users_by_history: Sequence[tuple[int, int]], *, n_users: int = DEMO_CREATIVE_USERS,
                   n_items: int = DEMO_CREATIVE_ITEMS) -> list[tuple[int, tuple[int, ...]]]:
    """(user, items) pairs to make creatives for: ``first`` (the demo's user and their current top
    items), then the users with the longest histories (``users_by_history``: (user, events)) with
    their top ``n_items`` from ``recommend(user, k)``; users without recommendations are skipped."""
    picks = [(int(first[0]), tuple(int(i) for i in first[1][:n_items]))] if first[1] else []
    ranked = sorted(users_by_history, key=lambda ue: (-ue[1], ue[0]))
    for user, _ in ranked:
        if len(picks) >= n_users:
            break
        if any(user == u for u, _ in picks):
            continue
        items = tuple(int(i) for i in recommend(int(user), n_items))[:n_items]
        if items:
            picks.append((int(user), items))
    return picks


def demo_studio(state_dir: str | Path, data_dir: str | None = None):
    """The demo's ``Studio`` on the MovieLens catalogue: template copy, one round of
    ``DEMO_POSTER_VARIANTS`` scored variants, cache and assets in ``state_dir``."""
    from generation.assets import AssetStore
    from generation.cache import CreativeCache
    from generation.catalogue import load_catalogue
    from generation.copy import TemplateCopyWriter
    from generation.studio import Studio, StudioConfig

    state = Path(state_dir)
    return Studio(load_catalogue("ml100k", data_dir), copy_writer=TemplateCopyWriter(),
                  assets=AssetStore(state / "assets"), cache=CreativeCache(state / "cache.sqlite"),
                  config=StudioConfig(variants=DEMO_POSTER_VARIANTS, attempts=1))


def make_demo_creatives(picks: Sequence[tuple[int, Sequence[int]]], store, root: str | Path, studio, *,
                        trailer: bool = True, echo: Callable[[str], None] = print
                        ) -> tuple[tuple[DemoCreative, ...], DemoTrailer | None]:
    """A creative per (user, item) of ``picks`` into ``root/<user>/<item>/`` (taste from the
    profile ``store``), and with ``trailer`` one trailer of the first pair into the same folder;
    what the studio's cache holds is reused."""
    from crossrec.creative import user_taste

    root = Path(root)
    made: list[DemoCreative] = []
    tastes = {}
    for user, items in picks:
        taste = tastes[user] = user_taste("ml100k", str(user), studio.items, store=store)
        echo(f"  user {user}: taste from {len(taste.liked)} liked items (profile version {taste.profile_version})")
        for item in items:
            start = time.perf_counter()
            folder = root / str(user) / str(item)
            result = studio.make(str(item), user_id=taste.user_id, liked=taste.liked,
                                 profile_version=taste.profile_version, out_dir=folder)
            made.append(_creative(user, item, studio.items[str(item)].title, result, len(taste.liked), folder,
                                  time.perf_counter() - start))
            c = made[-1]
            score = "unscored" if c.poster_score is None else f"score {c.poster_score:.3f}"
            echo(f"    {item:5d} {c.title[:40]:<40s} {'reused from the cache' if c.cache_hit else f'made in {c.seconds:.1f} s'}"
                 f" ({c.variants} variant(s) kept, {score}, gate {'passed' if c.gate_passed else 'fallback'}): "
                 f"{c.headline!r}")
    made_trailer = None
    if trailer and made:
        first = made[0]
        made_trailer = _trailer(studio, tastes[first.user_id], first, Path(first.folder), echo)
    return tuple(made), made_trailer


def _creative(user: int, item: int, title: str, result, liked: int, folder: Path, seconds: float) -> DemoCreative:
    chosen = result.scores.get("chosen") or {}
    total = (chosen.get("scores") or {}).get("total")
    copy = result.copy
    return DemoCreative(user, item, title, copy.headline, copy.tagline, copy.body, copy.source,
                        float(copy.guardrails.similarity), None if total is None else float(total), result.gate_passed,
                        len(result.posters), liked, result.cache_hit, str(folder), seconds)


def _trailer(studio, taste, creative: DemoCreative, folder: Path, echo) -> DemoTrailer:
    """The trailer of ``creative``'s item for its user: rendered into the asset store once per
    (user at profile version, item, studio settings), then copied out of the store."""
    from crossrec.creative import make_trailer_asset
    from crossrec_core.persist import atomic_write_bytes, atomic_write_text
    from generation.cache import settings_hash

    start = time.perf_counter()
    key = {"user": taste.user_id, "profile_version": taste.profile_version, "item": str(creative.item_id),
           "seconds": _TRAILER_SECONDS, "settings": settings_hash(studio.settings())}
    record_path = folder / "trailer.json"
    asset_id = None
    try:
        record = json.loads(record_path.read_text("utf-8"))
        if record.get("key") == key and record.get("asset_id") in studio.assets:
            asset_id = record["asset_id"]
    except (OSError, ValueError):
        pass  # no record, or one from other settings: render
    reused = asset_id is not None
    if not reused:
        asset_id = make_trailer_asset(studio, str(creative.item_id), taste, seconds=_TRAILER_SECONDS).asset_id
        atomic_write_text(record_path, json.dumps({"key": key, "asset_id": asset_id}, indent=2))
    path = folder / "trailer.mp4"
    atomic_write_bytes(path, studio.assets.get(asset_id))
    seconds = time.perf_counter() - start
    echo(f"  trailer of {creative.item_id} ({creative.title[:40]}) for user {creative.user_id}: "
         f"{'reused from the asset store' if reused else f'rendered in {seconds:.1f} s'} -> {path}")
    return DemoTrailer(creative.user_id, creative.item_id, creative.title, str(path), _TRAILER_SECONDS, reused, seconds)
