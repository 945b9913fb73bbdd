"""Where the service finds creatives: the creative worker's cache and asset store, the bandit
that picks a poster variant, and (for creatives written by ``crossrec creative --out``) a folder.

- Cache: the newest ``generation.cache`` record for (user at their profile version, item), so a
  user's new event makes their old creative stale (a miss: the route publishes a request).
- Variants: the record lists every servable poster variant the worker made for this user and item
  (``posters``); when the bandit knows two or more of them and their files are in the asset
  store, ``Bandit.choose_variant(user, item, among=...)`` picks one (Thompson sampling over the
  user's segment and the variants' style families); else the record's own poster is served.
- The bandit state is written by the feedback consumer (another process): it is reopened when its
  files changed, at most every ``bandit_refresh_s``, so served choices follow the learned arms.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crossrec.creative_worker import poster_variant_id, variant_asset
from crossrec_core.errors import UnknownIdError

__all__ = ["CreativeSource", "ServedCreative"]


@dataclass(frozen=True)
class ServedCreative:
    """A creative to answer with: its JSON parts, its poster asset id and the variant shown."""

    user_id: int
    item_id: int
    copy: Any
    scores: Any
    poster_asset: str
    trailer_asset: str | None
    variant_id: str
    family: str
    chosen_by: str  # "bandit" or "cache" (the record's own poster)


class CreativeSource:
    def __init__(self, cache_path: str, assets_dir: str | None = None, bandit_dir: str | None = None,
                 bandit_refresh_s: float = 5.0) -> None:
        from generation.assets import AssetStore
        from generation.cache import CreativeCache

        self.cache = CreativeCache(cache_path)
        self.assets = AssetStore(assets_dir)
        self.bandit_dir = Path(bandit_dir) if bandit_dir else None
        self.bandit_refresh_s = bandit_refresh_s
        self._bandit = None
        self._bandit_stamp: tuple | None = None
        self._checked = 0.0
        self._lock = threading.Lock()

    def _stamp(self) -> tuple:
        files = sorted(self.bandit_dir.glob("bandit.sqlite*"))
        return tuple((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in files if p.is_file())

    def bandit(self):
        """The bandit (reopened when the feedback consumer changed it), or None when there is none."""
        if self.bandit_dir is None:
            return None
        from generation.bandit import Bandit

        with self._lock:
            now = time.monotonic()
            if self._bandit is None or now - self._checked >= self.bandit_refresh_s:
                self._checked = now
                stamp = self._stamp() if (self.bandit_dir / "config.json").is_file() else None
                if stamp and stamp != self._bandit_stamp:
                    old, self._bandit = self._bandit, Bandit.open(self.bandit_dir)
                    self._bandit_stamp = stamp
                    if old is not None:
                        old.close()
            return self._bandit

    def has(self, user_id: int, item_id: int, profile_version: int) -> bool:
        """Whether the cache holds a creative for (user, item) at ``profile_version`` (one index read)."""
        from generation.cache import user_owner

        return self.cache.latest("creative", user_owner(user_id, profile_version), str(item_id)) is not None

    def find(self, user_id: int, item_id: int, profile_version: int) -> ServedCreative | None:
        """The creative for (user, item) at ``profile_version``, with the variant to show; None on a miss."""
        from generation.cache import user_owner

        record = self.cache.latest("creative", user_owner(user_id, profile_version), str(item_id))
        if record is None:
            return None
        try:
            refs = record["assets"]
            copy = json.loads(self.assets.get(refs["copy.json"]))
            scores = json.loads(self.assets.get(refs["scores.json"]))
            poster = refs["poster.png"]
            self.assets.path(poster)
        except (KeyError, ValueError, UnknownIdError):  # pruned or foreign entry: generate again
            return None
        family = str(((scores.get("chosen") or {}).get("extra") or {}).get("family") or "photo")
        served = ServedCreative(user_id, item_id, copy, scores, poster, refs.get("trailer.mp4"),
                                poster_variant_id(str(item_id), family, poster), family, "cache")
        bandit = self.bandit()
        if bandit is None:
            return served
        # only this user's own variants, registered (their result was consumed) and in this store
        ids = {poster_variant_id(str(item_id), p["family"], p["asset_id"]) for p in record.get("posters", ())}
        known = [v.variant_id for v in bandit.variants(str(item_id))
                 if v.variant_id in ids and variant_asset(v.variant_id) in self.assets]
        if len(known) < 2:
            return served
        choice = bandit.choose_variant(str(user_id), str(item_id), among=known)
        return ServedCreative(user_id, item_id, copy, scores, variant_asset(choice.variant_id), served.trailer_asset,
                              choice.variant_id, choice.family, "bandit")

    def asset_path(self, asset_id: str) -> Path:
        """The file of an asset by id (ids are validated: never a path from the request)."""
        from generation.assets import InvalidAssetIdError

        try:
            return self.assets.path(asset_id)
        except InvalidAssetIdError as exc:
            raise UnknownIdError(str(exc)) from None

    def close(self) -> None:
        self.cache.close()
        if self._bandit is not None:
            self._bandit.close()
