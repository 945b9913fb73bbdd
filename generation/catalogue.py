"""Catalogues as :class:`~generation.types.CreativeItem` s, keyed by item id (a string)."""

from __future__ import annotations

import os
import re
from pathlib import Path

from generation.types import CreativeItem

__all__ = ["movielens_items", "grocery_items", "load_catalogue", "display_title", "CATALOGUES"]

CATALOGUES = ("ml100k", "grocery")
_YEAR = re.compile(r"\s*\((\d{4})\)\s*$")
_SUFFIX = re.compile(r"\s*\((\d{4}|V)\)\s*$")  # the year, and "(V)" (released on video)
_ALTERNATIVE = re.compile(r"^(.+?)\s*\(([^()]+)\)$")
_ARTICLE = re.compile(r"^(.*), (The|A|An|Les|La|Le|L'|Il|Lo|Das|Der|Die|Det|El|O)$")


def _article_first(title: str) -> str:
    m = _ARTICLE.match(title.strip())
    if not m:
        return title.strip()
    return f"{m.group(2)}{m.group(1)}" if m.group(2).endswith("'") else f"{m.group(2)} {m.group(1)}"


def display_title(title: str) -> str:
    """"Usual Suspects, The (1995)" -> "The Usual Suspects"; an alternative title in brackets
    keeps its brackets, each part article-first: "Invitation, The (Zaproszenie) (1986)" ->
    "The Invitation (Zaproszenie)"; grocery "Red-Delicious" -> "Red Delicious"."""
    base = title.strip()
    while _SUFFIX.search(base):
        base = _SUFFIX.sub("", base).strip()
    m = _ALTERNATIVE.match(base)
    if m:
        return f"{_article_first(m.group(1))} ({_article_first(m.group(2))})"
    return _article_first(base)


def movielens_items(data_dir: str | os.PathLike | None = None, movielens=None) -> dict[str, CreativeItem]:
    """MovieLens 100K items: title without the year, the TMDB overview as text, the poster,
    genres and year as attributes (what copy may quote)."""
    from crossrec_datasets import load_movielens
    from crossrec_datasets.movielens import GENRES

    ml = movielens or load_movielens(data_dir)
    out = {}
    for row in ml.items.iter_rows(named=True):
        genres = [g for g in GENRES[1:] if row.get(g)]
        year = _YEAR.search(row["title"] or "")
        attributes = {"genres": ", ".join(genres)}
        if row.get("year"):
            attributes["year"] = str(int(row["year"]))
        elif year:
            attributes["year"] = year.group(1)
        title = display_title(row["title"] or "") or f"Movie {row['item_id']}"
        out[str(row["item_id"])] = CreativeItem(
            item_id=str(row["item_id"]), title=title, text=row.get("overview") or "",
            image=Path(row["poster"]) if row.get("poster") else None, category=genres[0] if genres else "",
            attributes=attributes, catalogue="ml100k",
        )
    return out


def grocery_items(data_dir: str | os.PathLike | None = None) -> dict[str, CreativeItem]:
    """Grocery products: the product name, its description, the iconic image, the top category
    (Fruit, Vegetables, Packages) and the coarse group (Apple, Milk...)."""
    from crossrec_datasets import load_grocery

    out = {}
    for p in load_grocery(data_dir).products:
        out[str(p.class_id)] = CreativeItem(
            item_id=str(p.class_id), title=p.name.replace("-", " "), text=p.description, image=p.iconic_image,
            category=p.category, attributes={"group": p.coarse_name}, catalogue="grocery",
        )
    return out


def load_catalogue(name: str, data_dir: str | os.PathLike | None = None) -> dict[str, CreativeItem]:
    if name == "ml100k":
        return movielens_items(data_dir)
    if name == "grocery":
        return grocery_items(data_dir)
    raise ValueError(f"dataset={name!r}: allowed {CATALOGUES}")
