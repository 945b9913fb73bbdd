"""The dataset interface every command reads: a catalogue, optional query photos, interactions and
optional users, as polars lazy frames with the columns of ``crossrec_datasets.schema``.
``crossrec_datasets.sources.open_dataset`` picks the implementation."""

from __future__ import annotations

import hashlib
import os
from abc import ABC, abstractmethod
from functools import cached_property
from pathlib import Path

import polars as pl

from crossrec_datasets.schema import IdMap, Positives

__all__ = ["Dataset", "NAMES", "DEFAULT_DATASET", "is_named"]

NAMES = ("grocery", "ml100k")
DEFAULT_DATASET = "grocery"  # the one default of every command that takes a dataset


class Dataset(ABC):
    """One data set. Frames carry the user's ids (strings) in ``item_id``/``user_id``; ``items`` and
    ``users_map`` turn them into the engine's int64 ids. Image paths are absolute (or null).

    - ``catalogue()``: item_id, title, text, image, category, [price, in_stock, attributes...]
    - ``interactions()``: user_id, item_id, timestamp (int64 s), kind, value
    - ``photos()``: item_id, image, or ``None``
    - ``users()``: user_id, attributes..., or ``None``
    """

    name: str
    root: Path
    positives: Positives = Positives()
    genre_columns: tuple[str, ...] | None = None  # multi-hot catalogue columns the ranker uses as genres (None: category)

    @abstractmethod
    def catalogue(self) -> pl.LazyFrame: ...

    @abstractmethod
    def interactions(self) -> pl.LazyFrame: ...

    def photos(self) -> pl.LazyFrame | None:
        return None

    def users(self) -> pl.LazyFrame | None:
        return None

    def item_vectors(self):
        """The item vectors the catalogue brings (``crossrec_datasets.vectors.ItemVectors``, rows in
        catalogue order), or None: the engine then embeds items with its aligned model."""
        return None

    @cached_property
    def items(self) -> IdMap:
        """The item id map (built from the catalogue)."""
        return IdMap.build("item", self.catalogue().select("item_id").collect()["item_id"])

    @cached_property
    def users_map(self) -> IdMap:
        """The user id map (built from the interactions and the users table)."""
        ids = self.interactions().select("user_id")
        if (users := self.users()) is not None:
            ids = pl.concat([ids, users.select("user_id")])
        return IdMap.build("user", ids.unique().collect()["user_id"])

    def item_texts(self) -> list[str]:
        """The text of every catalogue item, in catalogue order (what the aligned model reads):
        ``text``, with the title prepended unless the text already starts with it."""
        title, text = pl.col("title").fill_null(""), pl.col("text").fill_null("")
        frame = self.catalogue().select(
            pl.when(text.str.starts_with(title)).then(text)
            .when(text.str.strip_chars() == "").then(title)
            .otherwise(pl.concat_str([title, text], separator=". ")).alias("t")).collect()
        return frame["t"].to_list()

    def fingerprint(self) -> str:
        """A short content hash of the catalogue (item ids and texts, in order): a model records the
        fingerprint of the catalogue it was trained on, so using it on another one can be told."""
        ids = self.catalogue().select(pl.col("item_id").cast(pl.Utf8)).collect()["item_id"].to_list()
        digest = hashlib.sha256()
        for item, text in zip(ids, self.item_texts()):
            digest.update(f"{item}\x1f{text}\x1e".encode("utf-8"))
        return digest.hexdigest()[:16]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, root={str(self.root)!r})"


def is_named(source: str | os.PathLike) -> bool:
    return isinstance(source, str) and source in NAMES

