"""The copy role: one base, its request and result types.

A :class:`CopyWriter` turns (item, controls) requests into :class:`AdCopy`: the chosen headline,
tagline and body, the language, whether a language model or the deterministic templates wrote
it (``source``), and the guardrail report of the chosen candidate plus why others were rejected.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Sequence

from generation.types import ControlSignals, CreativeItem

__all__ = ["CopyDraft", "CopyRequest", "GuardrailReport", "AdCopy", "CopyWriter", "COPY_SOURCES"]

COPY_SOURCES = ("lm", "template")


@dataclass(frozen=True)
class CopyRequest:
    item: CreativeItem
    controls: ControlSignals

    @property
    def language(self) -> str:
        return self.controls.language


@dataclass(frozen=True)
class CopyDraft:
    """One unchecked candidate."""

    headline: str
    tagline: str
    body: str

    def text(self) -> str:
        return " ".join(t for t in (self.headline, self.tagline, self.body) if t)


@dataclass(frozen=True)
class GuardrailReport:
    """Whether a draft passed; ``reasons`` names every failed check (empty when it passed);
    ``similarity`` is the draft's cosine to the item text; ``score`` ranks passing drafts
    (similarity plus a bonus per control term the draft uses)."""

    passed: bool
    reasons: tuple[str, ...]
    similarity: float
    score: float
    entities_ok: bool

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "reasons": list(self.reasons), "similarity": round(self.similarity, 4),
                "score": round(self.score, 4), "entities_ok": self.entities_ok}


@dataclass(frozen=True)
class AdCopy:
    """The copy chosen for one (user, item). ``source`` is ``"lm"`` or ``"template"``;
    ``fallback_reason`` says why the templates were used (empty for LM copy); ``rejected`` counts
    the candidates that failed, by first reason; ``sanitised`` lists instruction-like passages
    removed from the item/user text before prompting."""

    item_id: str
    user_id: str | None
    headline: str
    tagline: str
    body: str
    language: str
    source: str
    guardrails: GuardrailReport
    candidates: int
    writer: str
    fallback_reason: str = ""
    rejected: dict[str, int] = field(default_factory=dict)
    sanitised: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.source not in COPY_SOURCES:
            raise ValueError(f"source={self.source!r}: allowed {COPY_SOURCES}")

    def text(self) -> str:
        return " ".join(t for t in (self.headline, self.tagline, self.body) if t)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (``copy.json``); the AI-generated label travels with it."""
        return {
            "item_id": self.item_id, "user_id": self.user_id, "headline": self.headline, "tagline": self.tagline,
            "body": self.body, "language": self.language, "source": self.source, "writer": self.writer,
            "fallback_reason": self.fallback_reason, "candidates": self.candidates, "rejected": dict(self.rejected),
            "sanitised": list(self.sanitised), "guardrails": self.guardrails.to_dict(), "ai_generated": True,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "AdCopy":
        g = data["guardrails"]
        return cls(
            item_id=data["item_id"], user_id=data["user_id"], headline=data["headline"], tagline=data["tagline"],
            body=data["body"], language=data["language"], source=data["source"], writer=data["writer"],
            fallback_reason=data.get("fallback_reason", ""), candidates=int(data["candidates"]),
            rejected=dict(data.get("rejected", {})), sanitised=tuple(data.get("sanitised", ())),
            guardrails=GuardrailReport(bool(g["passed"]), tuple(g["reasons"]), float(g["similarity"]), float(g["score"]),
                                       bool(g["entities_ok"])),
        )


class CopyWriter(ABC):
    """Writes ad copy. ``write_batch`` is the one method to implement; it must return one
    :class:`AdCopy` per request, in order, and batch the model work across requests."""

    name: str = "copy"

    @abstractmethod
    def write_batch(self, requests: Sequence[CopyRequest], *, seed: int = 0) -> list[AdCopy]:
        """One checked :class:`AdCopy` per request."""

    def write(self, item: CreativeItem, controls: ControlSignals, *, seed: int = 0) -> AdCopy:
        """Copy for one (user, item)."""
        return self.write_batch([CopyRequest(item, controls)], seed=seed)[0]

    @property
    def fingerprint(self) -> str:
        """Names the writer and its settings (part of the creative cache key)."""
        return self.name
