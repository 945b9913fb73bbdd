"""Short shopper queries generated from an item's own fields, as extra text positives.

Contrastive training on long descriptions alone narrows the aligned text tower to descriptions;
shoppers type two or three words ("sweet yellow fruit", "lactose free milk"). ``item_queries``
writes such queries from the title, the classes and the attribute words the description itself
uses (colour, taste, texture, diet, use), so that training sees them as texts of that item
(``PairData.text_item``). ``lm_catalogue_queries`` writes them doc2query-style with the local
language model instead (a few-shot list prompt; a 135M model mostly echoes the title or writes
lists of numbers, so only lines of 2 to 5 words that bring a word the title lacks are kept).
Training takes them with ``AlignTrainingConfig.generated_queries`` and ``query_writer``
(``crossrec retrieval train --generated-queries N --query-writer templates|lm|both``), off by
default: template queries lift the aligned signals on the dev queries by about 0.1 nDCG@10 but
leave the hybrid where it was (NOTES, sessions 8, 14 and 15).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from crossrec_core.persist import atomic_write_text

__all__ = ["ItemFields", "item_queries", "catalogue_queries", "lm_catalogue_queries", "ATTRIBUTE_WORDS", "USE_WORDS",
           "COLOURS", "QUERY_WRITERS"]

QUERY_WRITERS = ("templates", "lm", "both")

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


# doc2query with a small local LM: one worked example, then the item; the answer is a "- " list
_LM_EXAMPLE = ("Write short search queries that shoppers type to find the product. Each query has 2 to 4 words.\n\n"
               "Product: Granny Smith apple. A crisp, sour green apple, good for baking and snacks.\n"
               "Queries:\n- sour green apple\n- apples for baking\n- crisp apple snack\n\n")
_LM_WORDS = re.compile(r"[a-z]+(?:[-'][a-z]+)*")
_LM_EXAMPLE_QUERIES = frozenset(line[2:] for line in _LM_EXAMPLE.splitlines() if line.startswith("- "))


def _lm_prompt(item: ItemFields) -> str:
    text = " ".join(item.text.split()[:40])
    return f"{_LM_EXAMPLE}Product: {' '.join(item.title.replace('-', ' ').split())}. {text}\nQueries:\n- "


def _lm_lines(completion: str, item: ItemFields) -> list[str]:
    """The usable queries of one completion: "- " lines of 2 to 5 plain words (no digits),
    with at least one word the title does not have (an echo of the title teaches nothing), and
    not a copy of the worked example's queries."""
    title = set(_LM_WORDS.findall(_clean(item.title)))
    out = []
    for line in completion.split("\n"):
        q = line.strip().removeprefix("-").strip().strip(".,;:!\"'").lower()
        words = _LM_WORDS.findall(q)
        if " ".join(words) != q or not 2 <= len(words) <= 5 or not set(words) - title or q in _LM_EXAMPLE_QUERIES:
            continue
        out.append(q)
    return out


def lm_catalogue_queries(items: Sequence[ItemFields], lm, *, per_item: int = 4, seed: int = 0, batch_size: int = 8,
                         cache_dir: str | Path | None = None, progress: bool = False) -> tuple[list[str], list[int]]:
    """Up to ``per_item`` queries for each item written by ``lm`` (a ``LocalLanguageModel``;
    one greedy and three sampled completions each), as ``(queries, item_rows)``; an item may
    get none. Kept in ``cache_dir/lm_queries`` keyed by the model, the prompts and the settings."""
    from tqdm.auto import tqdm

    if per_item < 1:
        raise ValueError(f"per_item={per_item!r} must be >= 1")
    prompts = [_lm_prompt(item) for item in items]
    key = hashlib.sha256(json.dumps([lm.fingerprint, prompts, per_item, seed]).encode()).hexdigest()[:16]
    path = Path(cache_dir) / "lm_queries" / f"{key}.json" if cache_dir is not None else None
    if path is not None and path.is_file():
        per = json.loads(path.read_text("utf-8"))
    else:
        per = []
        for start in tqdm(range(0, len(items), batch_size), desc="LM queries", unit="batch", disable=not progress):
            chunk = list(range(start, min(start + batch_size, len(items))))
            completions = lm.generate([prompts[i] for i in chunk], max_new_tokens=32, num_return_sequences=4,
                                      temperature=0.7, greedy=1, seed=seed + start, shared_prefix=_LM_EXAMPLE,
                                      stop=lambda text: text.count("\n") >= 4 or "\n\n" in text)
            for i, row in zip(chunk, completions):
                kept = [q for c in row for q in _lm_lines(c, items[i])]
                per.append(list(dict.fromkeys(kept))[:per_item])
        if path is not None:
            atomic_write_text(path, json.dumps(per, ensure_ascii=False))
    queries = [q for qs in per for q in qs]
    rows = [r for r, qs in enumerate(per) for _ in qs]
    return queries, rows
