"""The creative cache: identical requests are served from what was made before.

A key is (kind, owner, item, settings):

- ``kind``: ``"creative"`` (a full creative: poster, copy, scores) or ``"copy"``.
- ``owner``: whose taste: ``user:<id>@v<profile version>`` (``ProfileStore.user_version``: a
  new event for the user changes it, so their stale creatives are never served),
  ``segment:<n>`` (copy generated ahead for a user segment) or ``neutral``.
- ``item``: the item id; ``settings``: the SHA-256 of the generation settings (writer and
  generator fingerprints, shape, variants, personalisation weight, language...).

A record is a small JSON object (asset ids from :class:`~generation.assets.AssetStore` and
metadata); the bytes live in the asset store. The index is SQLite in WAL mode, so the worker
and the service processes can share it. :func:`generate_copy_ahead` fills the ``copy`` entries
for (segment, item) pairs in batches so serving them is a cache hit.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from crossrec_core.paths import cache_dir

__all__ = ["CacheKey", "CacheStats", "CreativeCache", "settings_hash", "user_owner", "segment_owner",
           "NEUTRAL_OWNER", "generate_copy_ahead"]

NEUTRAL_OWNER = "neutral"
_KINDS = ("creative", "copy")


def settings_hash(settings: Mapping[str, Any]) -> str:
    """SHA-256 of the settings as canonical JSON (sorted keys)."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode("utf-8")).hexdigest()


def user_owner(user_id: str | int, profile_version: int) -> str:
    return f"user:{user_id}@v{int(profile_version)}"


def segment_owner(segment: int) -> str:
    return f"segment:{int(segment)}"


@dataclass(frozen=True)
class CacheKey:
    kind: str
    owner: str
    item_id: str
    settings: str

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"kind={self.kind!r}: allowed {_KINDS}")
        for name in ("owner", "item_id", "settings"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ValueError(f"{name}={getattr(self, name)!r}: must be a non-empty string")

    @property
    def digest(self) -> str:
        return hashlib.sha256("\0".join((self.kind, self.owner, self.item_id, self.settings)).encode()).hexdigest()


@dataclass(frozen=True)
class CacheStats:
    hits: int
    misses: int
    entries: int


class CreativeCache:
    """Key -> JSON record, persisted in SQLite (``path`` None: ``$CROSSREC_HOME/cache/creatives/
    index.sqlite``; ``":memory:"`` for a throwaway cache)."""

    def __init__(self, path: str | os.PathLike | None = None):
        self.path = str(path) if path is not None else str(cache_dir("creatives") / "index.sqlite")
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=60.0)
        if self.path != ":memory:":
            self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS entries (digest TEXT PRIMARY KEY, kind TEXT, owner TEXT, item_id TEXT, "
            "settings TEXT, record TEXT NOT NULL, created REAL NOT NULL) WITHOUT ROWID")
        self.hits = self.misses = 0

    def get(self, key: CacheKey) -> dict | None:
        with self._lock:
            row = self._conn.execute("SELECT record FROM entries WHERE digest = ?", (key.digest,)).fetchone()
            if row is None:
                self.misses += 1
                return None
            self.hits += 1
        return json.loads(row[0])

    def latest(self, kind: str, owner: str, item_id: str) -> dict | None:
        """The newest record of (``kind``, ``owner``, ``item_id``) whatever its settings: for a
        reader that does not make creatives itself (the service serving what the worker made)."""
        with self._lock:
            row = self._conn.execute("SELECT record FROM entries WHERE kind = ? AND owner = ? AND item_id = ? "
                                     "ORDER BY created DESC LIMIT 1", (kind, owner, str(item_id))).fetchone()
            if row is None:
                self.misses += 1
                return None
            self.hits += 1
        return json.loads(row[0])

    def put(self, key: CacheKey, record: Mapping[str, Any]) -> None:
        """Store (or replace) the record of ``key``."""
        data = json.dumps(dict(record), sort_keys=True, default=str)
        with self._lock:
            self._conn.execute(
                "INSERT OR REPLACE INTO entries(digest, kind, owner, item_id, settings, record, created) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)", (key.digest, key.kind, key.owner, key.item_id, key.settings, data, time.time()))

    def get_or_make(self, key: CacheKey, make: Callable[[], Mapping[str, Any]]) -> tuple[dict, bool]:
        """(record, hit): the cached record, or ``make()``'s result stored first."""
        record = self.get(key)
        if record is not None:
            return record, True
        record = dict(make())
        self.put(key, record)
        return record, False

    def stats(self) -> CacheStats:
        with self._lock:
            entries = int(self._conn.execute("SELECT COUNT(*) FROM entries").fetchone()[0])
        return CacheStats(self.hits, self.misses, entries)

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def generate_copy_ahead(cache: CreativeCache, writer, requests: Sequence[tuple[str, Any]], *, settings: str,
                        batch_size: int = 8, progress: bool = False) -> int:
    """Write and cache copy for every ``(owner, CopyRequest)`` not cached yet (for example one
    per (user segment, item)), ``batch_size`` requests per model batch. Returns how many were
    written."""
    from tqdm import tqdm

    todo = [(owner, req) for owner, req in requests
            if cache.get(CacheKey("copy", owner, req.item.item_id, settings)) is None]
    for start in tqdm(range(0, len(todo), batch_size), desc="copy ahead", disable=not progress):
        chunk = todo[start:start + batch_size]
        for (owner, req), copy in zip(chunk, writer.write_batch([r for _, r in chunk])):
            cache.put(CacheKey("copy", owner, req.item.item_id, settings), copy.to_dict())
    return len(todo)
