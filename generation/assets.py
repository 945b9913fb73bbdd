"""The content-addressed asset store: every generated file (poster PNG, copy JSON, video) is kept
once, under the SHA-256 of its bytes.

- ``put(data, suffix) -> AssetRef``: writes atomically (temporary file + rename), so a reader sees
  a whole file or none; storing the same bytes twice is free and gives the same id.
- ``path(asset_id)``: where the asset lies. Ids are validated (64 hex digits + an allowed
  suffix), so an id from a request can never name a path outside the store.
- Layout: ``<root>/<id[:2]>/<id>``, with ``<id>`` = ``<sha256>.<suffix>``; the default root is
  ``$CROSSREC_HOME/cache/assets``.

The creative worker and the service share one store by pointing at the same root.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from crossrec_core.errors import CrossrecError, UnknownIdError
from crossrec_core.paths import cache_dir
from crossrec_core.persist import atomic_write_bytes

__all__ = ["AssetRef", "AssetStore", "InvalidAssetIdError", "ASSET_SUFFIXES"]

ASSET_SUFFIXES = ("png", "jpg", "json", "mp4", "webp", "txt")
_ID = re.compile(r"^([0-9a-f]{64})\.([a-z0-9]{1,5})$")


class InvalidAssetIdError(CrossrecError, ValueError):
    """An asset id that is not ``<64 hex>.<allowed suffix>``."""


@dataclass(frozen=True)
class AssetRef:
    """A stored asset: ``asset_id`` (``<sha256>.<suffix>``), its size and where it lies."""

    asset_id: str
    size: int
    path: Path

    @property
    def sha256(self) -> str:
        return self.asset_id.split(".", 1)[0]

    def to_dict(self) -> dict:
        return {"asset_id": self.asset_id, "size": self.size, "sha256": self.sha256}


class AssetStore:
    """See the module docstring. Safe across threads and processes (writes are atomic renames
    of identical content)."""

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root) if root is not None else cache_dir("assets")

    @staticmethod
    def check_id(asset_id: str) -> tuple[str, str]:
        """(sha256, suffix) of a valid id; anything else raises :class:`InvalidAssetIdError`."""
        m = _ID.match(asset_id) if isinstance(asset_id, str) else None
        if m is None or m.group(2) not in ASSET_SUFFIXES:
            raise InvalidAssetIdError(
                f"asset_id={asset_id!r}: expected '<64 lowercase hex digits>.<suffix>' with suffix in {ASSET_SUFFIXES}")
        return m.group(1), m.group(2)

    def _location(self, asset_id: str) -> Path:
        digest, _ = self.check_id(asset_id)
        return self.root / digest[:2] / asset_id

    def put(self, data: bytes, suffix: str) -> AssetRef:
        """Store ``data``; returns its reference (the same for the same bytes and suffix)."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"data must be bytes, got {type(data).__name__}")
        suffix = suffix.lstrip(".").lower()
        if suffix not in ASSET_SUFFIXES:
            raise ValueError(f"suffix={suffix!r}: allowed {ASSET_SUFFIXES}")
        data = bytes(data)
        asset_id = f"{hashlib.sha256(data).hexdigest()}.{suffix}"
        location = self._location(asset_id)
        if not location.is_file() or location.stat().st_size != len(data):
            atomic_write_bytes(location, data)
        return AssetRef(asset_id, len(data), location)

    def put_file(self, path: str | os.PathLike) -> AssetRef:
        """Store a file's bytes under its own suffix."""
        path = Path(path)
        return self.put(path.read_bytes(), path.suffix)

    def path(self, asset_id: str) -> Path:
        """Where the asset lies; an unknown id raises :class:`UnknownIdError`."""
        location = self._location(asset_id)
        if not location.is_file():
            raise UnknownIdError(f"asset {asset_id!r} is not in the store at {str(self.root)!r}")
        return location

    def get(self, asset_id: str) -> bytes:
        return self.path(asset_id).read_bytes()

    def __contains__(self, asset_id: object) -> bool:
        try:
            return isinstance(asset_id, str) and self._location(asset_id).is_file()
        except InvalidAssetIdError:
            return False
