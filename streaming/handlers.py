"""Pluggable handlers: what a worker does with each kind of event.

A ``Handler`` receives a batch of the events it accepts, applies them idempotently (keyed by event
id or by per-entity timestamps) and reports rejects, which the worker dead-letters with the reason.
``flush()`` makes everything applied so far durable; the worker commits Kafka offsets only after
every handler has flushed, so a crash replays at most the unflushed tail and replays are no-ops.
"""

from __future__ import annotations

import base64
import io
import json
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Collection, Protocol, Sequence

import numpy as np

from crossrec_core.persist import atomic_write_text
from streaming.events import CreativeRequest, Event, ItemEvent, Topics, UserEvent

__all__ = [
    "HandleResult",
    "Handler",
    "ProfileHandler",
    "ItemIndexHandler",
    "CreativeRequestHandler",
    "ItemEmbedder",
    "Recommender",
]


@dataclass
class HandleResult:
    """Counts of one ``handle`` call; ``rejected`` pairs go to the dead-letter topic."""

    applied: int = 0
    duplicates: int = 0
    stale: int = 0
    unknown_items: int = 0
    published: int = 0
    rejected: list[tuple[Event, str]] = field(default_factory=list)


class Handler(ABC):
    """Applies one kind of event. ``accepts`` lists the event classes routed to it."""

    accepts: ClassVar[tuple[type[Event], ...]] = ()

    @abstractmethod
    def handle(self, events: Sequence[Event]) -> HandleResult:
        """Apply a batch (in delivery order); must be idempotent on redelivery."""

    @abstractmethod
    def flush(self) -> None:
        """Make everything applied so far durable (called before offsets are committed)."""

    def close(self) -> None:
        """Release resources (default: nothing)."""


class ProfileHandler(Handler):
    """User events -> ``recsys.ProfileStore.apply`` (idempotent on event id, order-independent).

    ``known_users``/``known_items``, when given, are the ids the engine knows; events naming
    others are rejected ("unknown user"/"unknown item") instead of creating a cold-start profile.
    Without them, unknown items are kept in the history and counted as ``unknown_items`` (the
    store's documented behaviour) and unknown users get a new profile.
    """

    accepts = (UserEvent,)

    def __init__(self, store, *, known_users: Collection[int] | None = None, known_items: Collection[int] | None = None):
        self.store = store
        self.known_users = None if known_users is None else frozenset(int(u) for u in known_users)
        self.known_items = None if known_items is None else frozenset(int(i) for i in known_items)

    def handle(self, events: Sequence[Event]) -> HandleResult:
        from recsys.profiles import Interaction

        result = HandleResult()
        batch = []
        for ev in events:
            if self.known_users is not None and ev.user_id not in self.known_users:
                result.rejected.append((ev, f"unknown user_id={ev.user_id}"))
            elif self.known_items is not None and ev.item_id not in self.known_items:
                result.rejected.append((ev, f"unknown item_id={ev.item_id}"))
            else:
                batch.append(Interaction(ev.event_id, ev.user_id, ev.item_id, ev.kind, ev.timestamp, ev.value))
        if batch:
            applied = self.store.apply(batch)
            result.applied, result.duplicates, result.unknown_items = applied.applied, applied.duplicates, applied.unknown_items
        return result

    def flush(self) -> None:
        self.store.flush()


class ItemEmbedder(Protocol):
    """What ``retrieval.load_item_embedder()`` returns."""

    def embed_items(self, texts: list[str], images: list[Any]) -> np.ndarray:  # (N, D)
        ...


def _decode_image(event: ItemEvent):
    """The event's image as an RGB PIL image (None when it has none); raises ValueError if it does not decode."""
    if not (event.image_b64 or event.image_path):
        return None
    from PIL import Image, UnidentifiedImageError

    try:
        if event.image_b64:
            img = Image.open(io.BytesIO(base64.b64decode(event.image_b64, validate=True)))
        else:
            img = Image.open(event.image_path)
        img.load()
        return img.convert("RGB")
    except (OSError, ValueError, UnidentifiedImageError) as exc:
        raise ValueError(f"image does not decode ({type(exc).__name__}: {exc})") from None


class ItemIndexHandler(Handler):
    """Item events -> embed new/changed items on the fly and upsert/remove them in ``index`` (a
    ``retrieval.index.VectorIndex``; upserts carry ``{"text", "categories"}`` metadata).

    Per item, the event with the greatest ``(timestamp, event_id)`` wins: an older event than the
    last one applied is ignored and counted ``stale`` (events out of order), so redelivery is a
    no-op. The last-applied versions are saved with the index by ``flush()`` (``state_dir``).
    ``profile_store``, when given, receives the new item vectors and categories too.
    """

    accepts = (ItemEvent,)

    def __init__(self, index, embedder: ItemEmbedder, *, state_dir: str | os.PathLike | None = None,
                 profile_store=None) -> None:
        self.index = index
        self.embedder = embedder
        self.profile_store = profile_store
        self.state_dir = None if state_dir is None else Path(state_dir)
        self._versions: dict[int, tuple[float, str]] = {}
        self._dirty = False
        if self.state_dir is not None and (self.state_dir / "item_versions.json").is_file():
            raw = json.loads((self.state_dir / "item_versions.json").read_text("utf-8"))
            self._versions = {int(k): (float(v[0]), str(v[1])) for k, v in raw.items()}

    def handle(self, events: Sequence[Event]) -> HandleResult:
        result = HandleResult()
        latest: dict[int, tuple[ItemEvent, Any]] = {}
        for ev in events:
            try:  # an upsert whose image does not decode is rejected before it can supersede
                image = _decode_image(ev) if ev.op == "upsert" else None
            except ValueError as exc:
                result.rejected.append((ev, str(exc)))
                continue
            version = (ev.timestamp, ev.event_id)
            prev = latest.get(ev.item_id)
            if version <= self._versions.get(ev.item_id, (float("-inf"), "")) or (
                prev is not None and version <= (prev[0].timestamp, prev[0].event_id)
            ):
                result.stale += 1
                continue
            result.stale += prev is not None  # superseded within this batch
            latest[ev.item_id] = (ev, image)
        upserts = [(ev, img) for ev, img in latest.values() if ev.op == "upsert"]
        deletes = [ev for ev, _ in latest.values() if ev.op == "delete"]
        if deletes:
            self.index.remove(np.array([ev.item_id for ev in deletes], dtype=np.int64), missing_ok=True)
        if upserts:
            vectors = np.asarray(self.embedder.embed_items([ev.text or "" for ev, _ in upserts],
                                                           [img for _, img in upserts]), dtype=np.float32)
            ids = np.array([ev.item_id for ev, _ in upserts], dtype=np.int64)
            self.index.add(ids, vectors, [{"text": ev.text, "categories": ev.categories} for ev, _ in upserts])
            if self.profile_store is not None:
                self.profile_store.set_item_vectors(ids.tolist(), vectors,
                                                    {ev.item_id: ev.categories for ev, _ in upserts})
        for ev, _ in latest.values():
            self._versions[ev.item_id] = (ev.timestamp, ev.event_id)
        result.applied = len(latest)
        self._dirty = self._dirty or bool(latest)
        return result

    def flush(self) -> None:
        if self.state_dir is None or not self._dirty:
            return
        self.index.save(self.state_dir / "index")
        atomic_write_text(self.state_dir / "item_versions.json",
                          json.dumps({str(k): list(v) for k, v in sorted(self._versions.items())}))
        self._dirty = False


class Recommender(Protocol):
    """``recsys.Recommender``: ``recommend(user_id, k)`` -> ranked item ids (or objects with ``item_id``)."""

    def recommend(self, user_id: int, k: int, filters=None) -> Any: ...


def _item_ids(recommendations: Any) -> list[int]:
    if hasattr(recommendations, "item_ids"):
        return [int(i) for i in recommendations.item_ids]
    return [int(getattr(r, "item_id", r)) for r in recommendations]


class CreativeRequestHandler(Handler):
    """After user events, re-rank the users they touched and publish a ``CreativeRequest`` for each
    item that newly entered their top ``k``. Request ids are ``creq:{user}:{item}``, so a replay
    republishes the same ids and the generation consumer deduplicates them.

    Run it after ``ProfileHandler`` in the handler list so that recommendations see the new events.
    """

    accepts = (UserEvent,)

    def __init__(self, recommender: Recommender, producer, topics: Topics, *, k: int = 5) -> None:
        if k < 1:
            raise ValueError(f"k={k!r}: at least one recommendation per user is required")
        self.recommender, self.producer, self.topics, self.k = recommender, producer, topics, k
        self._requested: dict[int, set[int]] = {}

    def handle(self, events: Sequence[Event]) -> HandleResult:
        result = HandleResult()
        users = {ev.user_id: ev.timestamp for ev in events}  # last event time per user
        for user, ts in users.items():
            ranked = _item_ids(self.recommender.recommend(user, self.k))
            seen = self._requested.setdefault(user, set())
            for rank, item in enumerate(ranked):
                if item in seen:
                    continue
                seen.add(item)
                self.producer.send(self.topics.creative_requests, CreativeRequest(
                    event_id=f"creq:{user}:{item}", timestamp=ts, user_id=user, item_id=item, rank=rank))
                result.published += 1
        return result  # applied stays 0: the events were applied (and counted) by ProfileHandler

    def flush(self) -> None:
        self.producer.flush()
