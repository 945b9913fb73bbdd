"""``ServiceEngine``: the loaded parts one service process answers from.

Built once per process (``ServiceEngine.load``) or from parts (tests, the demo): a ``Searcher``
per catalogue, the ranking engine reading the live profile store, and the event publisher. Every
method is synchronous and may be heavy (embedding, ranking): the app calls them off the event
loop. Items are addressed by (catalogue, id); files are found by id in the catalogue's own
records, never from a path given by a request.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Hashable, Mapping

from crossrec.service.config import ServiceConfig
from crossrec.service.publisher import EventPublisher
from crossrec_core.errors import UnknownIdError
from crossrec_core.lru import LRUCache

__all__ = ["ServiceEngine", "ItemRecord", "KeptAnswers", "CREATIVE_FILES"]

HISTORY_SHOWN = 50
# A finished creative's folder: <creatives_dir>/<user>/<item>/ holding these files (by kind).
CREATIVE_FILES = {"poster": "poster.png", "copy": "copy.json", "scores": "scores.json", "trailer": "trailer.mp4"}


@dataclass(frozen=True)
class ItemRecord:
    catalogue: str
    item_id: str
    title: str
    text: str
    image: Path | None  # internal: served by id only
    facets: dict[str, Any]


def _facet_value(value: Any) -> Any:
    if isinstance(value, frozenset):
        return sorted(value)
    if isinstance(value, float) and value != value:  # NaN: unknown
        return None
    return value.item() if hasattr(value, "item") else value


def _filters_key(filters: Mapping | None) -> str:
    return json.dumps(filters, sort_keys=True, default=sorted)


class KeptAnswers:
    """Answers kept in an ``LRUCache`` of ``size`` (0: keeps nothing), each with the object it was
    computed from (``source``) and only found again with that very object, so a replaced input is
    a miss, never a stale answer."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._kept = LRUCache(size)

    def get(self, key: Hashable, source: Any = None) -> Any:
        kept = self._kept.get(key)
        return kept[1] if kept is not None and kept[0] is source else None

    def put(self, key: Hashable, source: Any, answer: Any) -> None:
        self._kept.put(key, (source, answer))


class ServiceEngine:
    def __init__(self, config: ServiceConfig, searchers: Mapping[str, Any], recommender, *,
                 known_users: set[int] | None = None, publisher: EventPublisher | None = None) -> None:
        """``searchers``: catalogue name -> ``retrieval.Searcher``; ``recommender``: a
        ``recsys.Recommender`` over ``config.ranking_catalogue`` whose ``profiles`` is the live store;
        ``known_users``: users events may name besides those in the store."""
        self.config = config
        self.searchers = dict(searchers)
        self.recommender = recommender
        self.profiles = recommender.profiles
        self.known_users = set(known_users or ())
        self.publisher = publisher or EventPublisher(config.bootstrap, timeout_s=config.publish_timeout_s)
        from streaming.events import Topics

        self.topics = Topics(prefix=config.topic_prefix)
        self._rows = {name: {str(i): r for r, i in enumerate(s.items.ids)} for name, s in self.searchers.items()}
        self._ranking_ids = {int(i) for i in recommender.catalogue.item_ids}
        self._recs = KeptAnswers(config.recommend_cache)  # (user, k, filters) -> Recommendations, per profile object
        self._searches = KeptAnswers(config.search_cache)  # (catalogue, query, k, mode, filters) -> SearchResult
        self.creatives = None
        if config.creative_cache:
            from crossrec.service.creatives import CreativeSource

            self.creatives = CreativeSource(config.creative_cache, config.assets_dir, config.bandit_dir,
                                            config.bandit_refresh_s)

    @classmethod
    def load(cls, config: ServiceConfig) -> "ServiceEngine":
        """Load every catalogue's searcher and the ranking engine (models once per process)."""
        import torch

        from crossrec_datasets import open_dataset
        from crossrec_core.persist import saved_kind
        from recsys import ProfileStore, RankingEngine, load_recommender
        from recsys.data import users_from_dataset
        from recsys.training import default_engine_dir
        from retrieval.searcher import Searcher

        torch.set_num_threads(config.torch_threads)
        searchers = {name: Searcher.load(name, data_dir=config.data_dir) for name in config.catalogues}
        users = users_from_dataset(open_dataset("ml100k", data_dir=config.data_dir))
        store = ProfileStore(config.profile_store) if config.profile_store else None
        directory = config.ranker_dir or default_engine_dir()
        if saved_kind(directory) == "recsys.engine":  # with demographics of users new since training
            recommender = RankingEngine.from_pretrained(directory, profiles=store, users=users)
        else:  # any other saved recommender (ALS, BPR, popularity) serves too
            recommender = load_recommender(directory, profiles=store)
        return cls(config, searchers, recommender, known_users=set(users.demographics))

    # -- catalogues ----------------------------------------------------------------------------

    def searcher(self, catalogue: str):
        found = self.searchers.get(catalogue)
        if found is None:
            raise UnknownIdError(f"catalogue={catalogue!r} is not served; catalogues: {sorted(self.searchers)}")
        return found

    def item(self, catalogue: str, item_id: str | int) -> ItemRecord:
        items = self.searcher(catalogue).items
        row = self._rows[catalogue].get(str(item_id))
        if row is None:
            raise UnknownIdError(f"item_id={str(item_id)[:80]!r} is not in catalogue {catalogue!r}")
        image = items.images[row]
        return ItemRecord(catalogue, str(items.ids[row]), items.titles[row], items.texts[row],
                          Path(image) if image else None,
                          {k: _facet_value(v[row]) for k, v in items.facets.items()})

    def image_path(self, catalogue: str, item_id: str) -> Path:
        record = self.item(catalogue, item_id)
        if record.image is None or not record.image.is_file():
            raise UnknownIdError(f"item {item_id!r} of catalogue {catalogue!r} has no image")
        return record.image

    def search_text(self, catalogue: str, query: str, *, k: int, mode: str, filters: Mapping | None):
        """The searcher's answer, kept per (catalogue, query, k, mode, filters) (``config.search_cache``
        entries): a loaded searcher's items, vectors and weights do not change while serving."""
        from crossrec.service.metrics import SEARCH_CACHE

        key = (catalogue, query, int(k), mode, _filters_key(filters))
        found = self._searches.get(key)
        SEARCH_CACHE.labels("miss" if found is None else "hit").inc()
        if found is None:
            found = self.searcher(catalogue).search(query, k=k, filters=filters, mode=mode)
            self._searches.put(key, None, found)
        return found

    def search_image(self, catalogue: str, image, *, k: int, space: str, filters: Mapping | None):
        return self.searcher(catalogue).search_image(image, k=k, space=space, filters=filters)

    # -- users -----------------------------------------------------------------------------------

    def is_known_user(self, user_id: int) -> bool:
        return user_id in self.known_users or self.profiles.get(user_id) is not None

    def is_ranked_item(self, item_id: int) -> bool:
        return item_id in self._ranking_ids

    def user_ids(self) -> list[int]:
        return sorted(self.known_users.union(self.profiles.users()))

    def profile(self, user_id: int) -> dict:
        profile = self.profiles.get(user_id)
        if profile is None:
            if user_id not in self.known_users:
                raise UnknownIdError(f"user_id={user_id} is not a known user")
            return {"user_id": user_id, "demographics": {}, "n_events": 0, "history": [], "category_affinity": {}}
        cat = self.config.ranking_catalogue
        history = []
        for item, kind, value, ts in reversed(profile.history[-HISTORY_SHOWN:]):
            row = self._rows[cat].get(str(item)) if cat in self._rows else None
            title = self.searchers[cat].items.titles[row] if row is not None else None
            history.append({"item_id": item, "title": title, "kind": kind, "value": value, "timestamp": ts})
        top = sorted(profile.category_affinity.items(), key=lambda kv: -kv[1])[:10]
        return {"user_id": user_id, "demographics": profile.demographics, "n_events": profile.n_events,
                "history": history, "category_affinity": dict(top)}

    def recommend(self, user_id: int, *, k: int, filters: dict):
        """The recommender's answer, kept per (user, k, filters) while the user's profile is the
        same object in the store (``config.recommend_cache`` entries). The store replaces a profile
        object exactly when the user's events or demographics change (or the catalogue does), and
        the loaded models do not change while serving, so a kept answer is the one ranking would
        give again. ``None`` (an unknown user) keys the popularity fallback, which reads no profile."""
        from crossrec.service.metrics import RECOMMEND_CACHE

        key = (int(user_id), int(k), _filters_key(filters))
        # Read before ranking: if the profile changes meanwhile, the answer (for the newer profile)
        # is kept under the older object, which the store never hands out again: a miss, not a
        # stale hit.
        profile = self.profiles.get(user_id) if self._recs.size else None
        found = self._recs.get(key, profile)
        RECOMMEND_CACHE.labels("miss" if found is None else "hit").inc()
        if found is None:
            found = self.recommender.recommend(user_id, k=k, filters=filters)
            self._recs.put(key, profile, found)
        return found

    def title(self, item_id: int) -> str:
        cat = self.recommender.catalogue
        return cat.titles[int(cat.positions([item_id])[0])]

    # -- creatives -------------------------------------------------------------------------------

    def cached_creative(self, user_id: int, item_id: int):
        """A ``ServedCreative`` from the creative worker's cache for the user's current profile
        version (the bandit's variant when it knows several), or None."""
        if self.creatives is None:
            return None
        return self.creatives.find(user_id, item_id, self.profiles.user_version(user_id))

    def has_creative(self, user_id: int, item_id: int) -> bool:
        if self.creative_dir(user_id, item_id) is not None:
            return True
        return self.creatives is not None and self.creatives.has(user_id, item_id, self.profiles.user_version(user_id))

    def asset_path(self, asset_id: str) -> Path:
        if self.creatives is None:
            raise UnknownIdError(f"asset {asset_id[:80]!r}: this service has no asset store")
        return self.creatives.asset_path(asset_id)

    def creative_dir(self, user_id: int, item_id: int) -> Path | None:
        """The finished creative's folder, or None; ids are ints, so the path cannot escape the root."""
        if not self.config.creatives_dir:
            return None
        folder = Path(self.config.creatives_dir) / str(int(user_id)) / str(int(item_id))
        return folder if (folder / CREATIVE_FILES["copy"]).is_file() or (folder / CREATIVE_FILES["poster"]).is_file() else None

    def creative(self, user_id: int, item_id: int) -> dict | None:
        folder = self.creative_dir(user_id, item_id)
        if folder is None:
            return None
        out: dict[str, Any] = {"user_id": user_id, "item_id": item_id, "assets": {}}
        for kind, name in CREATIVE_FILES.items():
            path = folder / name
            if not path.is_file():
                continue
            if name.endswith(".json"):
                try:
                    out[kind] = json.loads(path.read_text("utf-8"))
                except (OSError, ValueError):
                    out[kind] = None
            else:
                out["assets"][kind] = f"/creatives/{user_id}/{item_id}/{kind}"
        return out

    def close(self) -> None:
        self.publisher.close()
        if self.creatives is not None:
            self.creatives.close()
