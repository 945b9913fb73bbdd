"""Typed, versioned JSON events and the topics that carry them.

Every message is one UTF-8 JSON object ``{"schema": <name>, "v": <version>, ...fields}``. Each
schema is a pydantic model (strict types, no extra fields, finite numbers): the Kafka codec and the
HTTP API validate with the same model, so an event the API accepts is exactly one the consumers
accept, and ``model_json_schema()`` is the published JSON Schema. ``decode_event`` checks size,
JSON, schema name and version, then the model, and raises ``EventSchemaError`` (with the reason that
goes to the dead-letter topic) on anything else. Both ends validate: constructing an event runs the
same checks, so ``to_json`` only encodes valid events.

Keys give per-entity ordering: user events and creative messages are keyed by user id (all events
of a user land on one partition, in order), item events by item id.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

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
    "CreativeAsset",
    "CreativeImpression",
    "CreativeClick",
    "CREATIVE_KINDS",
    "DeadLetter",
    "decode_event",
    "new_event_id",
    "MAX_ID",
    "json_schemas",
]

SCHEMA_VERSION = 1  # the version every schema started at; schemas that grew say so in FIELDS_SINCE
# Larger messages are dead-lettered: catalogue images are small JPEGs (the grocery ones are
# <= 256 px, ~20 KB), and this stays below Kafka's default 1 MB message limit.
MAX_EVENT_BYTES = 256 * 1024
UserEventKind = Literal["view", "click", "add_to_cart", "purchase", "rating"]
ItemOp = Literal["upsert", "delete"]
USER_EVENT_KINDS: tuple[str, ...] = get_args(UserEventKind)
ITEM_OPS: tuple[str, ...] = get_args(ItemOp)
CreativeKind = Literal["copy", "poster", "trailer"]
CREATIVE_KINDS: tuple[str, ...] = get_args(CreativeKind)


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

    @property
    def creative_feedback(self) -> str:
        """Impressions of and clicks on creatives: not user events (they trigger no re-ranking)."""
        return f"{self.prefix}.creative-feedback"

    def all(self) -> tuple[str, ...]:
        return (self.user_events, self.item_events, self.creative_requests, self.creative_results, self.dead_letter,
                self.creative_feedback)




def _reason(schema: str, exc: ValidationError) -> str:
    """One line naming the schema, the field and what is allowed (the dead-letter reason).
    Unknown and missing fields first, as they usually explain the other errors."""
    errors = exc.errors(include_url=False)
    by_type: dict[str, list[str]] = {}
    for err in errors:
        by_type.setdefault(err["type"], []).append(".".join(str(p) for p in err["loc"]))
    if "extra_forbidden" in by_type:
        return f"{schema}: unknown fields {sorted(by_type['extra_forbidden'])[:5]}"
    if "missing" in by_type:
        return f"{schema}: missing required fields {sorted(by_type['missing'])}"
    err = errors[0]
    if err["type"] == "value_error" and not err["loc"]:  # a model-level check: its own message
        return str(err["ctx"]["error"])
    where = ".".join(str(p) for p in err["loc"])
    return f"{schema}.{where}={err['input']!r:.80}: {err['msg']}"


class Event(BaseModel):
    """Base of all events: ``event_id`` is the idempotency key, ``timestamp`` the event time
    (unix seconds); ``sent_at`` (where a schema has it) is the producer's wall clock, used for
    end-to-end latency. Strict: no type coercion (``true`` is not an id, ``"3"`` is not a number),
    finite numbers only, unknown fields rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, allow_inf_nan=False)

    SCHEMA: ClassVar[str] = ""
    # Fields added after version 1 -> the version that added them. A message is written at the
    # lowest version that can carry it (every added field at its default: v1), so readers of an
    # older version keep reading everything it can express; a reader accepts versions 1..latest.
    FIELDS_SINCE: ClassVar[dict[str, int]] = {}
    event_id: str = Field(min_length=1, max_length=128, description="Idempotency key: a redelivered event with the same id is applied once.")
    timestamp: float = Field(description="Event time, unix seconds.")

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise EventSchemaError(_reason(self.SCHEMA, exc)) from None

    @classmethod
    def parse(cls, data: Any) -> "Event":
        """Validate decoded JSON fields (without ``schema``/``v``); raises EventSchemaError."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise EventSchemaError(_reason(cls.SCHEMA, exc)) from None

    def key(self) -> bytes:
        """Partitioning key (per-entity ordering)."""
        raise NotImplementedError

    @classmethod
    def latest_version(cls) -> int:
        return max([SCHEMA_VERSION, *cls.FIELDS_SINCE.values()])

    def version(self) -> int:
        """The lowest version that carries this event (fields added later left at their default)."""
        fields = type(self).model_fields
        return max([SCHEMA_VERSION] + [v for name, v in self.FIELDS_SINCE.items()
                                       if getattr(self, name) != fields[name].get_default(call_default_factory=True)])

    def to_dict(self) -> dict:
        """The wire object: ``schema``, ``v``, then every field of that version (None included)."""
        if not self.FIELDS_SINCE:
            return {"schema": self.SCHEMA, "v": SCHEMA_VERSION, **self.__dict__}
        v = self.version()
        return {"schema": self.SCHEMA, "v": v, **self.model_dump(
            include={k for k in type(self).model_fields if self.FIELDS_SINCE.get(k, SCHEMA_VERSION) <= v})}

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


MAX_ID = 2**63 - 1  # ids are stored as SQLite INTEGER (signed 64-bit)
_Id = Annotated[int, Field(ge=0, le=MAX_ID)]


class UserEvent(Event):
    """An interaction of a user with an item; ``value`` is the rating (1..5) for kind ``rating``."""

    SCHEMA: ClassVar[str] = "user_event"
    user_id: _Id = 0
    item_id: _Id = 0
    kind: UserEventKind = "view"
    value: float | None = Field(None, description="The rating, for kind 'rating' only.")
    sent_at: float | None = None

    @model_validator(mode="after")
    def _value_with_rating(self) -> "UserEvent":
        if (self.kind == "rating") != (self.value is not None):
            raise EventSchemaError(f"user_event.value={self.value!r}: required for kind 'rating' only (kind={self.kind!r})")
        return self

    def key(self) -> bytes:
        return str(self.user_id).encode()


class ItemEvent(Event):
    """Catalogue change. ``upsert`` carries ``text`` and optionally an image: ``image_path`` (a
    file the workers can read) or ``image_b64`` (inline JPEG/PNG, bounded by MAX_EVENT_BYTES).
    Events of one item are applied in ``timestamp`` order; an older event than the last applied
    one for that item is ignored (counted as ``stale``)."""

    SCHEMA: ClassVar[str] = "item_event"
    item_id: _Id = 0
    op: ItemOp = "upsert"
    text: str | None = None
    categories: list[str] = Field(default_factory=list)
    image_path: str | None = None
    image_b64: str | None = None
    sent_at: float | None = None

    @model_validator(mode="after")
    def _upsert_has_content(self) -> "ItemEvent":
        if self.op == "upsert" and not (self.text or self.image_path or self.image_b64):
            raise EventSchemaError(f"item_event {self.event_id}: an upsert needs text, image_path or image_b64")
        return self

    def key(self) -> bytes:
        return str(self.item_id).encode()


class CreativeRequest(Event):
    """Ask the generation module for a personalised creative of ``item_id`` for ``user_id``.
    v2: ``kinds``, what to make (copy and a poster by default; a trailer when asked), and
    ``variants``, how many poster variants."""

    SCHEMA: ClassVar[str] = "creative_request"
    FIELDS_SINCE: ClassVar[dict[str, int]] = {"kinds": 2, "variants": 2}
    user_id: int = 0
    item_id: int = 0
    rank: int = 0
    score: float | None = None
    reason: str = "recommended"
    kinds: list[CreativeKind] = Field(default_factory=lambda: ["copy", "poster"], min_length=1, max_length=3)
    variants: int = Field(1, ge=1, le=16)

    def key(self) -> bytes:
        return str(self.user_id).encode()


class CreativeAsset(BaseModel):
    """One asset of a v2 creative result: ``asset_id`` in the content-addressed store
    (``<sha256>.<suffix>``), the poster variant it is (``variant_id``, ``family``) and its score."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, allow_inf_nan=False)

    kind: Literal["copy", "poster", "scores", "trailer"]
    asset_id: str = Field(min_length=1, max_length=128)
    uri: str | None = None
    variant_id: str | None = Field(None, max_length=200)
    family: str | None = Field(None, max_length=64)
    score: float | None = None


class CreativeResult(Event):
    """A generated creative answering ``request_id``: ``uri`` of the main asset and ``text`` of
    the copy (v1). ``status``: ``ok``, ``expired`` (the request was older than the worker's limit
    when it came up: answered, not generated) or ``failed``. v2 adds every ``assets`` entry, the
    poster ``variant_ids`` (what the bandit chooses among) and ``scores``."""

    SCHEMA: ClassVar[str] = "creative_result"
    FIELDS_SINCE: ClassVar[dict[str, int]] = {"assets": 2, "variant_ids": 2, "scores": 2}
    request_id: str = ""
    user_id: int = 0
    item_id: int = 0
    status: str = "ok"
    uri: str | None = None
    text: str | None = None
    error: str | None = None
    assets: list[CreativeAsset] = Field(default_factory=list, max_length=64)
    variant_ids: list[str] = Field(default_factory=list, max_length=64)
    scores: dict[str, float] = Field(default_factory=dict)

    def key(self) -> bytes:
        return str(self.user_id).encode()


class CreativeImpression(Event):
    """Variant ``variant_id`` (style ``family``) of ``item_id``'s creative was shown to
    ``user_id``; ``event_id`` is the impression id a click refers to."""

    SCHEMA: ClassVar[str] = "creative_impression"
    user_id: _Id = 0
    item_id: _Id = 0
    variant_id: str = Field("", min_length=1, max_length=200)
    family: str = Field("", max_length=64)
    sent_at: float | None = None

    def key(self) -> bytes:
        return str(self.user_id).encode()  # with the user's clicks: an impression precedes its click


class CreativeClick(Event):
    """A click on the creative shown by impression ``impression_id``."""

    SCHEMA: ClassVar[str] = "creative_click"
    impression_id: str = Field("", min_length=1, max_length=128)
    user_id: _Id = 0
    item_id: _Id = 0
    variant_id: str = Field("", min_length=1, max_length=200)
    family: str = Field("", max_length=64)
    sent_at: float | None = None

    def key(self) -> bytes:
        return str(self.user_id).encode()


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
    cls.SCHEMA: cls for cls in (UserEvent, ItemEvent, CreativeRequest, CreativeResult, DeadLetter, CreativeImpression,
                                CreativeClick)
}


def decode_event(raw: bytes | str | None) -> Event:
    """Parse one message into its event model; raises EventSchemaError with the reason."""
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
    latest = cls.latest_version()
    if not isinstance(version, int) or isinstance(version, bool) or not SCHEMA_VERSION <= version <= latest:
        raise EventSchemaError(f"{schema}: schema version v={version!r:.20} not supported "
                               f"(this worker reads v={SCHEMA_VERSION}..{latest})")
    newer = sorted(k for k in data if cls.FIELDS_SINCE.get(k, SCHEMA_VERSION) > version)
    if newer:
        raise EventSchemaError(f"{schema}: fields {newer[:5]} are not part of v={version}")
    return cls.parse(data)


def json_schemas() -> dict[str, dict]:
    """The JSON Schema of each event's fields by schema name (the wire object adds ``schema`` and ``v``)."""
    return {name: cls.model_json_schema() for name, cls in _SCHEMAS.items()}
