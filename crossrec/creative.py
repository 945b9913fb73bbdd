"""Creatives for the application layer: whose taste (:func:`user_taste`), one creative
(:func:`make_creative`) and trailers (:func:`make_trailer`, :func:`make_trailer_asset`).

The CLI (``crossrec creative ...``), the creative worker and the loop benchmark all call these, so
they live in one library module that imports none of them.

Whose taste: MovieLens users are read from a profile store (``profiles``, the live store the stream
workers write) or, by default, from the ratings file; grocery users are shoppers from the simulator
of ``streaming.replay``, or an explicit list of liked items.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

__all__ = ["UserTaste", "user_taste", "ratings_store", "make_creative", "make_trailer", "make_trailer_asset"]

@dataclass(frozen=True)
class UserTaste:
    """The liked items of a user and the version of their profile (the cache key part)."""

    user_id: str | None
    liked: tuple  # LikedItem
    profile_version: int | None
    source: str


def ratings_store(data_dir, user_ids: Sequence[int] | None = None):
    """An in-memory profile store fed with the MovieLens ratings (of ``user_ids`` only, if given)."""
    import polars as pl

    from crossrec_datasets import load_movielens
    from recsys.profiles import ProfileStore, interactions_from_ratings

    ratings = load_movielens(data_dir).ratings
    if user_ids is not None:
        ratings = ratings.filter(pl.col("user_id").is_in([int(u) for u in user_ids]))
    store = ProfileStore(None)
    store.apply(interactions_from_ratings(ratings, source="ml100k"))
    return store


def _shopper_store(items: Mapping, n_shoppers: int, seed: int):
    from recsys.profiles import Interaction, ProfileStore
    from streaming.replay import shopper_events

    ids = sorted(int(i) for i in items)
    events = shopper_events(ids, [items[str(i)].attributes.get("group", items[str(i)].category) for i in ids],
                            n_users=n_shoppers, n_events=40 * n_shoppers, seed=seed)
    store = ProfileStore(None)
    store.apply([Interaction(e.event_id, e.user_id, e.item_id, e.kind, e.timestamp) for e in events])
    return store


def user_taste(dataset: str, user: str | None, items: Mapping, *, liked: Sequence[str] = (), profiles: str | None = None,
               data_dir=None, n_shoppers: int = 50, shopper_seed: int = 0, store=None) -> UserTaste:
    """Resolve ``user`` (or an explicit ``liked`` list) to liked items; see the module docstring.
    An unknown user raises ``UnknownIdError``; a known user without likes gets the neutral default
    (empty ``liked``)."""
    from crossrec_core.errors import UnknownIdError
    from generation.control import LikedItem, liked_from_profile, require_item
    from recsys.profiles import ProfileStore

    if liked:
        chosen = tuple(LikedItem(require_item(items, i), 1.0) for i in liked)
        return UserTaste(user, chosen, None, "explicit --liked list")
    if user is None:
        return UserTaste(None, (), None, "no user: neutral default")
    try:
        uid = int(user)
    except ValueError:
        raise UnknownIdError(f"user={user!r}: user ids of {dataset} are integers") from None
    if store is None:
        if profiles:
            store, source = ProfileStore.open(profiles), f"profile store {profiles}"
        elif dataset == "ml100k":
            store, source = ratings_store(data_dir, [uid]), "ml100k ratings"
        else:
            store, source = _shopper_store(items, n_shoppers, shopper_seed), f"shopper simulator (seed {shopper_seed})"
    else:
        source = "given profile store"
    profile = store.get(uid)
    if profile is None:
        if profiles or dataset == "ml100k" and not _known_ml_user(uid, data_dir):
            raise UnknownIdError(f"user={user!r} is not known to the {source}")
        if dataset == "grocery" and not 1 <= uid <= n_shoppers:
            raise UnknownIdError(f"user={user!r}: the shopper simulator has users 1..{n_shoppers}")
    chosen = tuple(liked_from_profile(profile, items, half_life_days=store.half_life_days))
    return UserTaste(str(uid), chosen, store.user_version(uid), source)


def _known_ml_user(uid: int, data_dir) -> bool:
    from crossrec_datasets import load_movielens

    return uid in set(load_movielens(data_dir).users["user_id"].to_list())


def make_creative(dataset: str, item: str, out: str | os.PathLike, *, user: str | None = None,
                  liked: Sequence[str] = (), profiles: str | None = None, data_dir=None, language: str = "en",
                  shape: str = "square", variants: int = 4, personalisation: float = 0.5, lm: str | None = None,
                  use_cache: bool = True, shopper_seed: int = 0):
    """One creative into ``out``; returns (:class:`~generation.studio.CreativeResult`, taste)."""
    from generation.cache import CreativeCache
    from generation.catalogue import load_catalogue
    from generation.copy import LanguageModelCopyWriter
    from generation.studio import Studio, StudioConfig

    items = load_catalogue(dataset, data_dir)
    from generation.control import require_item

    require_item(items, item)  # an unknown item fails before any model loads
    taste = user_taste(dataset, user, items, liked=liked, profiles=profiles, data_dir=data_dir, shopper_seed=shopper_seed)
    writer = None
    if lm is not None:
        from retrieval.encoders import load_language_model

        writer = LanguageModelCopyWriter(load_language_model(lm))
    studio = Studio(items, copy_writer=writer, cache=CreativeCache() if use_cache else None,
                    config=StudioConfig(shape=shape, variants=variants, personalisation=personalisation, language=language))
    result = studio.make(item, user_id=taste.user_id, liked=taste.liked, profile_version=taste.profile_version, out_dir=out)
    return result, taste


def _captions(studio, items, controls_by_item, copy_writer) -> list[str]:
    out = []
    for item in items:
        copy = copy_writer.write(item, controls_by_item[item.item_id])
        out.append(copy.tagline or copy.headline)
    return out


def _render(studio, items, taste, out_path: Path, *, seconds: float, orientation: str, diffusers: str | None,
            copy_writer, title: str | None = None):
    """Plan, render, watermark and sign a trailer of ``items`` for ``taste``; returns the result."""
    from generation.trailer import ComposedFrames, TrailerConfig, plan_trailer, render_trailer
    from generation.trailer.mark import sign_trailer, watermark_marker
    from generation.trust import payload_id_for

    config = TrailerConfig(orientation=orientation, seconds=seconds)
    controls = {it.item_id: studio.controls(it, taste.user_id, taste.liked) for it in items}
    lead = controls[items[0].item_id]
    captions = _captions(studio, items, controls, copy_writer)
    plan = plan_trailer(items, captions, lead, config, title=title or "")
    if diffusers:
        from generation.trailer.diffusion import VideoDiffusionFrames

        source = VideoDiffusionFrames(config, lead, diffusers)
    else:
        source = ComposedFrames(config, lead, style=studio.style_model)
    key = json.dumps({"user": taste.user_id, "items": [it.item_id for it in items], "captions": captions,
                      "seconds": seconds, "orientation": orientation}, sort_keys=True)
    payload = payload_id_for(key)
    t0 = time.perf_counter()
    result = render_trailer(plan, source, out_path, config, marker=watermark_marker(payload),
                            metadata={"description": f"crossrec trailer for user {taste.user_id or '-'}"})
    sign_trailer(out_path, payload_id=payload, title=plan.title,
                 metadata={"user_id": str(taste.user_id or ""), "items": ",".join(it.item_id for it in items)})
    total_s = time.perf_counter() - t0  # render + encode + watermark + manifest
    return result, plan, payload, total_s, captions


def make_trailer_asset(studio, item_id: str, taste, *, seconds: float = 8.0):
    """A trailer of one item for the worker: rendered to a temporary file and put in the studio's
    asset store; returns the ``CreativeAsset``."""
    from generation.control import require_item
    from generation.copy import TemplateCopyWriter
    from streaming.events import CreativeAsset

    item = require_item(studio.items, item_id)
    with tempfile.TemporaryDirectory(dir=studio.assets.root.parent if studio.assets.root.parent.is_dir() else None) as tmp:
        _render(studio, [item], taste, Path(tmp) / "trailer.mp4", seconds=seconds, orientation="portrait",
                diffusers=None, copy_writer=TemplateCopyWriter())
        ref = studio.assets.put_file(Path(tmp) / "trailer.mp4")
    return CreativeAsset(kind="trailer", asset_id=ref.asset_id, variant_id=f"{item_id}:trailer:{ref.asset_id[:12]}")


def _top_items(user: str, recommender: str | None, k: int) -> list[str]:
    from crossrec_core.errors import ModelLoadError
    from recsys import load_recommender

    if recommender is None:
        raise ValueError("crossrec creative trailer: give --item, or --recommender DIR (a saved recommender) "
                         "to take the user's top items")
    if not Path(recommender).is_dir():
        raise ModelLoadError(f"recommender={recommender!r}: no such directory")
    recs = load_recommender(recommender).recommend(int(user), k)
    ids = getattr(recs, "item_ids", None)
    return [str(int(i)) for i in (ids if ids is not None else [getattr(r, "item_id", r) for r in recs])]


def make_trailer(dataset: str, out: str | os.PathLike, *, user: str | None, item: str | None = None,
                 recommender: str | None = None, top_k: int = 3, seconds: float = 8.0, orientation: str = "portrait",
                 diffusers: str | None = None, lm: str | None = None, score: bool = True, data_dir=None) -> dict:
    """Write ``out/trailer.mp4`` and ``out/scores.json``; returns the scores report."""
    from crossrec_core.persist import atomic_write_text
    from generation.catalogue import load_catalogue
    from generation.control import require_item
    from generation.copy import LanguageModelCopyWriter, TemplateCopyWriter
    from generation.studio import Studio

    items = load_catalogue(dataset, data_dir)
    ids = [item] if item is not None else _top_items(user, recommender, top_k)
    chosen = [require_item(items, i) for i in ids]  # unknown items fail before any model loads
    taste = user_taste(dataset, user, items, data_dir=data_dir)
    studio = Studio(items)
    if lm == "template":
        writer = TemplateCopyWriter()
    elif lm is not None:
        from retrieval.encoders import load_language_model

        writer = LanguageModelCopyWriter(load_language_model(lm))
    else:
        writer = studio.copy_writer
    out = Path(out)
    result, plan, payload, total_s, captions = _render(studio, chosen, taste, out / "trailer.mp4", seconds=seconds,
                                                       orientation=orientation, diffusers=diffusers, copy_writer=writer)
    placed = result.to_dict()
    report = {"path": str(out / "trailer.mp4"), "user_id": taste.user_id, "items": ids, "captions": captions,
              "caption_placements": placed.pop("captions"), "seconds_total": round(total_s, 3),
              **{k: v for k, v in placed.items() if k != "path"},
              "trust": {"label": "AI-generated (MP4 metadata + C2PA)", "watermark_id": payload, "c2pa": "signed"},
              "load_avg": os.getloadavg()[0]}
    if score:
        report["quality"] = _score(result, dataset, data_dir)
    atomic_write_text(out / "scores.json", json.dumps(report, indent=2, ensure_ascii=False, default=str))
    return report


def _score(result, dataset: str, data_dir) -> dict:
    from generation.poster.vision import default_text_reader
    from generation.trailer import score_trailer
    from generation.trailer.mark import read_video_watermark

    embedder, ids, vectors, note = None, (), None, ""
    try:
        from retrieval.align.embedder import default_model_dir, load_item_embedder

        if (default_model_dir(dataset) / "config.json").is_file():
            from generation.catalogue import load_catalogue

            catalogue = load_catalogue(dataset, data_dir)
            with_image = [it for it in catalogue.values() if it.image is not None]
            embedder = load_item_embedder(dataset=dataset)
            vectors = embedder.embed_images([it.image for it in with_image]).vectors
            ids = [it.item_id for it in with_image]
        else:
            note = f"no aligned model in {default_model_dir(dataset)}: key-frame fidelity skipped"
    except ImportError as exc:
        note = f"key-frame fidelity skipped ({exc})"
    scores = score_trailer(result, reader=default_text_reader(), embedder=embedder, catalogue_ids=ids,
                           catalogue_vectors=vectors).to_dict()
    wm = read_video_watermark(result.path)
    scores["watermark_read"] = {"payload_id": wm.payload_id, "agreeing_chunks": wm.agreeing, "chunks": wm.chunks}
    if note:
        scores["note"] = note
    return scores
