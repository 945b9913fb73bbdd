"""Short shopper queries generated from an item's own fields, as extra text positives.

Contrastive training on long descriptions alone narrows the aligned text tower to descriptions;
shoppers type two or three words ("sweet yellow fruit", "lactose free milk"). ``item_queries``
writes such queries from the title, the classes and the attribute words the description itself
uses (colour, taste, texture, diet, use), so that training sees them as texts of that item
(``PairData.text_item``). Templates only: doc2query with the local SmolLM2-135M was tried and
wrote questions and sentences, not queries (5 grocery products x 4 samples: 93 s, under load).
Training takes them with ``AlignTrainingConfig.generated_queries`` (``crossrec retrieval train
--generated-queries N``), off by default: they lift the aligned signals on the dev queries by about
0.1 nDCG@10 but leave the hybrid where it was (NOTES, sessions 8 and 14).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

__all__ = ["ItemFields", "item_queries", "catalogue_queries", "ATTRIBUTE_WORDS", "USE_WORDS", "COLOURS"]

COLOURS = ("yellow", "green", "red", "white", "orange", "purple", "violet", "brown", "black", "pink", "dark")
# attribute words a description may use, in the order they are tried
ATTRIBUTE_WORDS = (
    *COLOURS, "sweet", "sour", "mild", "bitter", "spicy", "acidic", "juicy", "crispy", "creamy", "firm", "soft", "tender",
    "fresh", "organic", "ecological", "lactose", "vegan", "soy", "oat", "vanilla", "skimmed", "large", "small",
)
USE_WORDS = (
    "desserts", "salads", "breakfast", "baking", "cooking", "soups", "stews", "smoothies", "snacks", "porridge",
    "cereals", "sandwich", "garnish", "sauces", "gratins", "pies", "jam", "marmalade", "muesli", "drinks",
)
_WORD = re.compile(r"[a-z]+")


@dataclass(frozen=True)
class ItemFields:
    """What queries are written from: ``title``, ``classes`` (narrowest first, e.g. ``("Apple",
    "Fruit")``) and the free ``text`` (description)."""

    title: str
    classes: tuple[str, ...]
    text: str = ""


def _clean(s: str) -> str:
    return " ".join(s.replace("-", " ").split()).lower()


def item_queries(item: ItemFields, *, max_queries: int = 12) -> list[str]:
    """Up to ``max_queries`` distinct short queries for one item, most specific first: its
    title, its classes, attribute + class ("sweet apple", "yellow fruit"), class for a use
    ("apple for desserts"), title + class. Deterministic (no sampling)."""
    title = _clean(item.title)
    classes = [c for c in dict.fromkeys(_clean(c) for c in item.classes) if c]
    words = set(_WORD.findall(item.text.lower()))
    named_colour = any(c in title.split() for c in COLOURS)  # "yellow bell pepper": other colours are comparisons
    attrs = [a for a in ATTRIBUTE_WORDS if a in words and a not in title.split() and not (named_colour and a in COLOURS)]
    uses = [u for u in USE_WORDS if u in words]
    out = [title, *classes]
    narrow = classes[0] if classes else title
    broad = classes[-1] if classes else title
    for a in attrs[:3]:
        out += [f"{a} {narrow}", f"{a} {broad}"]
    if len(attrs) >= 2:
        out.append(f"{attrs[0]} {attrs[1]} {broad}")
    out += [f"{narrow} for {u}" for u in uses[:2]]
    if narrow not in title:
        out.append(f"{title} {narrow}")
    seen = list(dict.fromkeys(q for q in out if q))
    return seen[:max_queries]


def catalogue_queries(items: Sequence[ItemFields], *, max_queries: int = 12) -> tuple[list[str], list[int]]:
    """Queries of every item and the row of the item each belongs to: ``(queries, item_rows)``."""
    queries, rows = [], []
    for row, item in enumerate(items):
        q = item_queries(item, max_queries=max_queries)
        queries += q
        rows += [row] * len(q)
    return queries, rows
