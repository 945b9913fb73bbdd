"""Request and response bodies of the HTTP API (pydantic; published in ``/openapi.json``).

Events are not redefined here: ``POST /events`` takes ``streaming.events.UserEvent`` itself, so an
event the API accepts is exactly one the stream consumers accept.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "SignalScoreOut", "SearchHitOut", "SearchOut", "ItemOut", "RecommendedItem", "RecommendationsOut", "HistoryEntry",
    "ProfileOut", "UsersOut", "EventsAccepted", "CreativeOut", "CreativeAccepted", "Health", "Ready", "ErrorOut",
    "SEARCH_SPACES",
]

SEARCH_SPACES = ("fused", "image", "text")


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorOut(_Out):
    detail: Any = Field(description="What was wrong, naming the argument and what is allowed.")


class SignalScoreOut(_Out):
    raw: float
    standardised: float
    rank: int | None


class SearchHitOut(_Out):
    item_id: str
    title: str
    score: float
    image_url: str | None = Field(description="The item's catalogue image, served by id.")
    signals: dict[str, SignalScoreOut] = Field(default_factory=dict, description="Per-signal scores of the hit.")


class SearchOut(_Out):
    catalogue: str
    query: str
    mode: str
    language: str
    matching: int = Field(description="Items the filters allow.")
    note: str | None
    hits: list[SearchHitOut]


class ItemOut(_Out):
    catalogue: str
    item_id: str
    title: str
    text: str
    image_url: str | None
    facets: dict[str, Any]


class RecommendedItem(_Out):
    item_id: int
    title: str
    score: float
    sources: list[str] = Field(description="Candidate sources that proposed the item (als, bpr, ann, popularity).")
    top_feature_group: str = Field(description="The ranker feature group that raised the item's score most.")
    image_url: str | None
    creative_url: str | None = Field(description="A finished personalised creative for this user and item, if any.")


class RecommendationsOut(_Out):
    user_id: int
    catalogue: str
    cold_start: bool
    reason: str
    items: list[RecommendedItem]


class HistoryEntry(_Out):
    item_id: int
    title: str | None
    kind: str
    value: float | None
    timestamp: float


class ProfileOut(_Out):
    user_id: int
    demographics: dict[str, Any]
    n_events: int
    history: list[HistoryEntry] = Field(description="Latest events first (at most 50).")
    category_affinity: dict[str, float] = Field(description="Top categories, weights over all categories sum to 1.")


class UsersOut(_Out):
    count: int
    user_ids: list[int]


class EventsAccepted(_Out):
    accepted: int = Field(description="Events acknowledged by the broker (all of the request's).")
    topic: str
    publish_ms: float


class VariantOut(_Out):
    variant_id: str
    family: str = Field(description="The poster's style family (the bandit's arm).")
    chosen_by: Literal["bandit", "cache"] = Field(description="bandit: Thompson sampling among the item's "
                                                              "variants; cache: the creative's own poster.")
    impression_id: str | None = Field(None, description="Post a click on it to /creatives/{user}/{item}/clicks; "
                                                        "None when the impression could not be published.")


class CreativeOut(_Out):
    user_id: int
    item_id: int
    assets: dict[str, str] = Field(description="URLs of the poster and trailer, by kind.")
    copy_: Any = Field(None, alias="copy")
    scores: Any = None
    variant: VariantOut | None = Field(None, description="The poster variant shown (creatives from the cache).")

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class CreativeClickIn(BaseModel):
    impression_id: str = Field(min_length=1, max_length=128, description="From the creative's variant.")
    variant_id: str = Field(min_length=1, max_length=200)

    model_config = ConfigDict(extra="forbid")


class CreativeClickAccepted(_Out):
    click_id: str
    topic: str


class CreativeAccepted(_Out):
    status: Literal["pending"] = "pending"
    request_id: str
    location: str = Field(description="Poll this URL; 404 until the creative is ready.")


class Health(_Out):
    status: Literal["ok"] = "ok"


class Ready(_Out):
    ready: bool
    catalogues: dict[str, int] = Field(description="Items per served catalogue.")
    ranking_catalogue: str
    broker: dict[str, Any] = Field(description="The event broker's state; reads keep working while it is down.")
    worker_pid: int
