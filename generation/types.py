"""The values every generator, scorer and worker in ``generation`` passes around.

A creative is made for one (user, item) pair: :class:`CreativeItem` is the item as the generators
see it (whatever the catalogue), :class:`ControlSignals` is the user's taste turned into controls
at the three granularities of the design (word, sentence, campaign).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

__all__ = ["CreativeItem", "ControlSignals", "NEUTRAL_TONE", "LANGUAGES", "BLOCKLIST"]

NEUTRAL_TONE = "clear"
LANGUAGES = ("en", "zh")

# Words no copy may contain (the guardrails reject them; taste keywords never pick them).
BLOCKLIST = {
    "en": ("guarantee", "guaranteed", "cure", "cures", "miracle", "risk-free", "free money", "#1", "number one",
           "best ever", "100%", "doctor recommended", "lose weight", "damn", "hell", "sex", "kill yourself"),
    "zh": ("最好", "最佳", "第一", "国家级", "顶级", "极品", "万能", "保证", "治疗", "根治", "100%", "绝对"),
}


@dataclass(frozen=True)
class CreativeItem:
    """One catalogue item. ``image`` is None when the item has no picture; ``attributes`` holds
    the metadata that copy may quote (genres, year, brand, price...): proper nouns and numbers in
    generated copy must come from ``title``, ``text`` or these values."""

    item_id: str
    title: str
    text: str
    image: Path | None
    category: str = ""
    attributes: Mapping[str, str] = field(default_factory=dict)
    catalogue: str = ""


@dataclass(frozen=True)
class ControlSignals:
    """A user's taste as generation controls; ``user_id`` None is the neutral default for users
    without history.

    - word level: ``style_words``, ``tone``, ``palette`` (K RGB colours from the liked items'
      images), ``style_vector`` (the mean Magenta style vector of the liked items, ``(100,)``).
    - sentence level: ``stress``, the item attributes to emphasise (chosen by category affinity
      and checked against the item image).
    - campaign level: ``theme``, kept the same across every creative of one user's list.
    ``personalisation`` in [0, 1] weighs the user's style against the item's own (0: the item's
    style only). ``liked_titles`` are what "because you liked ..." may quote (and what scoring
    masks out). ``keywords`` (word level too) are common words that recur in the liked items'
    texts ("heist", "outlaws"): the user's own vocabulary for copy, never a title or a name.
    ``taste_texts`` (sentence level): the opening of the most-weighted liked items' texts, titles
    left out; writers choose among their candidates by similarity to them and never quote them.
    """

    user_id: str | None
    style_words: tuple[str, ...] = ()
    tone: str = NEUTRAL_TONE
    palette: tuple[tuple[int, int, int], ...] = ()
    style_vector: tuple[float, ...] | None = None
    stress: tuple[str, ...] = ()
    theme: str = ""
    language: str = "en"
    personalisation: float = 0.5
    liked_titles: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()
    taste_texts: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.language not in LANGUAGES:
            raise ValueError(f"language={self.language!r}: allowed {LANGUAGES}")
        if not 0.0 <= float(self.personalisation) <= 1.0:
            raise ValueError(f"personalisation={self.personalisation!r}: must be in [0, 1]")
        for colour in self.palette:
            if len(colour) != 3 or not all(0 <= int(c) <= 255 for c in colour):
                raise ValueError(f"palette colour {colour!r}: expected (r, g, b) in 0..255")
