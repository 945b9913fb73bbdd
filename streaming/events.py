"""Typed, versioned JSON events and the topics that carry them.

Every message is one UTF-8 JSON object ``{"schema": <name>, "v": <version>, ...fields}``;
``decode_event`` checks size, JSON, schema name, version, field names and field types and raises
``EventSchemaError`` (with the reason that goes to the dead-letter topic) on anything else. Both
ends validate: ``to_json`` encodes only a dataclass that passed the same checks at construction.

Keys give per-entity ordering: user events and creative messages are keyed by user id (all events
of a user land on one partition, in order), item events by item id.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import uuid
from dataclasses import dataclass, field
from typing import Any, ClassVar

from crossrec_core.errors import CrossrecError

__all__ = [
    "SCHEMA_VERSION",
    "MAX_EVENT_BYTES",
    "USER_EVENT_KINDS",
    "ITEM_OPS",
    "Topics",
    "EventSchemaError",
    "Event",
    "UserEvent",
    "ItemEvent",
    "CreativeRequest",
    "CreativeResult",
    "DeadLetter",
    "decode_event",
    "new_event_id",
]

SCHEMA_VERSION = 1
# Larger messages are dead-lettered: catalogue images are small JPEGs (the grocery ones are
# <= 256 px, ~20 KB), and this stays below Kafka's default 1 MB message limit.
MAX_EVENT_BYTES = 256 * 1024
USER_EVENT_KINDS = ("view", "click", "add_to_cart", "purchase", "rating")
ITEM_OPS = ("upsert", "delete")


class EventSchemaError(CrossrecError, ValueError):
    """A message is not a valid event of a known schema and version; ``str()`` is the DLQ reason."""


def new_event_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True)
class Topics:
    """Topic names; ``prefix`` isolates deployments (and tests) sharing one cluster."""

    prefix: str = "crossrec"
    partitions: int = 4

    @property
    def user_events(self) -> str:
        return f"{self.prefix}.user-events"

    @property
    def item_events(self) -> str:
        return f"{self.prefix}.item-events"

    @property
    def creative_requests(self) -> str:
        return f"{self.prefix}.creative-requests"

    @property
    def creative_results(self) -> str:
        return f"{self.prefix}.creative-results"

    @property
    def dead_letter(self) -> str:
        return f"{self.prefix}.dead-letter"

    def all(self) -> tuple[str, ...]:
        return (self.user_events, self.item_events, self.creative_requests, self.creative_results, self.dead_letter)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_float(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


_CHECKERS = {
    "str": lambda v: isinstance(v, str),
    "int": _is_int,
    "float": _is_float,
    "list[str]": lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
}


@functools.cache
def _field_names(cls: type) -> frozenset[str]:
    return frozenset(f.name for f in dataclasses.fields(cls))


@functools.cache
def _field_checks(cls: type) -> tuple[tuple[str, str, bool, Any], ...]:
    """(name, type name, optional, checker) per field, from the annotations (computed once)."""
    out = []
    for f in dataclasses.fields(cls):
        base = f.type.replace("| None", "").strip()
        out.append((f.name, base, f.type.endswith("| None"), _CHECKERS[base]))
    return tuple(out)


@dataclass(frozen=True)
class Event:
    """Base of all events: ``event_id`` is the idempotency key, ``timestamp`` the event time
    (unix seconds); ``sent_at`` is the producer's wall clock, used for end-to-end latency."""

    SCHEMA: ClassVar[str] = ""
    event_id: str
    timestamp: float

    def __post_init__(self) -> None:
        for name, base, optional, check in _field_checks(type(self)):
            value = getattr(self, name)
            if value is None:
                if not optional:
                    raise EventSchemaError(f"{self.SCHEMA}.{name} is null; a {base} is required")
            elif not check(value):
                raise EventSchemaError(f"{self.SCHEMA}.{name}={value!r:.80} is not a {base}")
        if not self.event_id or len(self.event_id) > 128:
            raise EventSchemaError(f"{type(self).__name__}.event_id={self.event_id!r:.80}: 1..128 characters required")
        self.validate()

    def validate(self) -> None:
        """Schema-specific checks beyond field types (overridden)."""

    def key(self) -> bytes:
        """Partitioning key (per-entity ordering)."""
        raise NotImplementedError

    def to_dict(self) -> dict:
        # Fields are flat (str, numbers, lists of str): no deep copy (dataclasses.asdict) needed.
        out = {"schema": self.SCHEMA, "v": SCHEMA_VERSION}
        for name, *_ in _field_checks(type(self)):
            out[name] = getattr(self, name)
        return out

    def to_json(self, sent_at: float | None = None) -> bytes:
        """UTF-8 JSON; ``sent_at`` stamps the producer's clock (for latency) without a copy of the event."""
        payload = self.to_dict()
        if sent_at is not None:
            if "sent_at" not in payload:
                raise ValueError(f"sent_at={sent_at!r}: {self.SCHEMA} events carry no sent_at")
            payload["sent_at"] = float(sent_at)
        data = json.dumps(payload, separators=(",", ":"), allow_nan=False).encode("utf-8")
        if len(data) > MAX_EVENT_BYTES:
            raise EventSchemaError(f"{self.SCHEMA} {self.event_id}: {len(data)} bytes > MAX_EVENT_BYTES={MAX_EVENT_BYTES}")
        return data

    @classmethod
    def from_json(cls, raw: bytes | str) -> "Event":
        """Decode and validate; raises EventSchemaError if ``raw`` is not a ``cls`` event."""
        event = decode_event(raw)
        if not isinstance(event, cls):
            raise EventSchemaError(f"schema {event.SCHEMA!r} is not the expected {cls.SCHEMA!r}")
        return event


@dataclass(frozen=True)
class UserEvent(Event):
    """An interaction of a user with an item; ``value`` is the rating (1..5) for kind ``rating``."""

    SCHEMA: ClassVar[str] = "user_event"
    user_id: int = 0
    item_id: int = 0
    kind: str = "view"
    value: float | None = None
    sent_at: float | None = None

    def validate(self) -> None:
        if self.kind not in USER_EVENT_KINDS:
            raise EventSchemaError(f"user_event.kind={self.kind!r} is not one of {USER_EVENT_KINDS}")
        if self.user_id < 0 or self.item_id < 0:
            raise EventSchemaError(f"user_event ids must be >= 0 (user_id={self.user_id}, item_id={self.item_id})")
        if (self.kind == "rating") != (self.value is not None):
            raise EventSchemaError(f"user_event.value={self.value!r}: required for kind 'rating' only (kind={self.kind!r})")

    def key(self) -> bytes:
        return str(self.user_id).encode()


@dataclass(frozen=True)
class ItemEvent(Event):
    """Catalogue change. ``upsert`` carries ``text`` and optionally an image: ``image_path`` (a
    file the workers can read) or ``image_b64`` (inline JPEG/PNG, bounded by MAX_EVENT_BYTES).
    Events of one item are applied in ``timestamp`` order; an older event than the last applied
    one for that item is ignored (counted as ``stale``)."""

    SCHEMA: ClassVar[str] = "item_event"
    item_id: int = 0
    op: str = "upsert"
    text: str | None = None
    categories: list[str] = field(default_factory=list)
    image_path: str | None = None
    image_b64: str | None = None
    sent_at: float | None = None

    def validate(self) -> None:
        if self.op not in ITEM_OPS:
            raise EventSchemaError(f"item_event.op={self.op!r} is not one of {ITEM_OPS}")
        if self.item_id < 0:
            raise EventSchemaError(f"item_event.item_id={self.item_id} must be >= 0")
        if self.op == "upsert" and not (self.text or self.image_path or self.image_b64):
            raise EventSchemaError(f"item_event {self.event_id}: an upsert needs text, image_path or image_b64")

    def key(self) -> bytes:
        return str(self.item_id).encode()


@dataclass(frozen=True)
class CreativeRequest(Event):
    """Ask the generation module for a personalised creative of ``item_id`` for ``user_id``."""

    SCHEMA: ClassVar[str] = "creative_request"
    user_id: int = 0
    item_id: int = 0
    rank: int = 0
    score: float | None = None
    reason: str = "recommended"

    def key(self) -> bytes:
        return str(self.user_id).encode()


@dataclass(frozen=True)
class CreativeResult(Event):
    """A generated creative (``uri`` of the asset, ``text`` of the copy) answering ``request_id``."""

    SCHEMA: ClassVar[str] = "creative_result"
    request_id: str = ""
    user_id: int = 0
    item_id: int = 0
    status: str = "ok"
    uri: str | None = None
    text: str | None = None
    error: str | None = None

    def key(self) -> bytes:
        return str(self.user_id).encode()


@dataclass(frozen=True)
class DeadLetter(Event):
    """A message that could not be applied, with where it came from, why, and its (truncated) bytes."""

    SCHEMA: ClassVar[str] = "dead_letter"
    source_topic: str = ""
    partition: int = -1
    offset: int = -1
    reason: str = ""
    payload: str = ""  # the original bytes, decoded leniently, at most 4 KiB
    payload_bytes: int = 0

    def key(self) -> bytes:
        return f"{self.source_topic}:{self.partition}".encode()


_SCHEMAS: dict[str, type[Event]] = {
    cls.SCHEMA: cls for cls in (UserEvent, ItemEvent, CreativeRequest, CreativeResult, DeadLetter)
}


def decode_event(raw: bytes | str | None) -> Event:
    """Parse one message into its event dataclass; raises EventSchemaError with the reason."""
    if raw is None:
        raise EventSchemaError("empty message (null value)")
    size = len(raw)
    if size > MAX_EVENT_BYTES:
        raise EventSchemaError(f"oversized payload: {size} bytes > MAX_EVENT_BYTES={MAX_EVENT_BYTES}")
    try:
        # Decoding first skips json's encoding sniffing; JSON on the wire is UTF-8.
        data = json.loads(raw.decode("utf-8") if isinstance(raw, (bytes, bytearray)) else raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EventSchemaError(f"invalid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise EventSchemaError(f"a JSON object is required, got {type(data).__name__}")
    schema, version = data.pop("schema", None), data.pop("v", None)
    cls = _SCHEMAS.get(schema) if isinstance(schema, str) else None
    if cls is None:
        raise EventSchemaError(f"unknown schema={schema!r:.60}; allowed: {sorted(_SCHEMAS)}")
    if version != SCHEMA_VERSION:
        raise EventSchemaError(f"{schema}: schema version v={version!r:.20} not supported (this worker reads v={SCHEMA_VERSION})")
    unknown = sorted(set(data).difference(_field_names(cls)))
    if unknown:
        raise EventSchemaError(f"{schema}: unknown fields {unknown[:5]}")
    missing = sorted(n for n in ("event_id", "timestamp") if n not in data)
    if missing:
        raise EventSchemaError(f"{schema}: missing required fields {missing}")
    try:
        return cls(**data)
    except TypeError as exc:
        raise EventSchemaError(f"{schema}: {exc}") from None

