"""The user-data schema: one pydantic model per table (the definition the README documents and
``crossrec data check`` enforces), the positives setting, and the persisted id map.

Tables are read with polars, never row by row through pydantic: the models are the definition
(``model_json_schema()`` gives the JSON schema) and ``polars_schema`` turns them into the column
types the readers cast to.
"""

from __future__ import annotations

import os
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from crossrec_core.errors import UnknownIdError
from crossrec_core.persist import atomic_write_bytes

__all__ = [
    "KINDS", "CatalogueRow", "PhotoRow", "InteractionRow", "UserRow", "TABLES", "Positives", "IdMap",
    "polars_schema", "required_columns",
]

KINDS = ("view", "click", "add_to_cart", "purchase", "rating")


class _Row(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)  # extra columns are attributes


class CatalogueRow(_Row):
    """``catalogue.*``: one row per item; other columns are kept as attributes."""

    item_id: str = Field(description="the shop's id (SKU) or an integer; unique")
    title: str = Field(description="short name shown to users")
    text: str = Field("", description="description; title + text are the item's text")
    image: str | None = Field(None, description="image path relative to the folder")
    category: str = Field("", description="category used for filters, profiles and the ranker")
    price: float | None = None
    in_stock: bool | None = None


class PhotoRow(_Row):
    """``photos.*``: query photos (for example shop photos) of catalogue items, for photo -> item retrieval."""

    item_id: str
    image: str = Field(description="path relative to the folder")


class InteractionRow(_Row):
    """``interactions.*``: one row per event."""

    user_id: str
    item_id: str
    timestamp: int = Field(description="unix seconds")
    kind: Literal["view", "click", "add_to_cart", "purchase", "rating"]
    value: float | None = Field(None, description="the rating for kind == rating; optional otherwise")


class UserRow(_Row):
    """``users.*``: ``user_id`` plus attributes (``age``, ``sex``, ``occupation`` feed the ranker)."""

    user_id: str


TABLES: dict[str, type[_Row]] = {"catalogue": CatalogueRow, "photos": PhotoRow, "interactions": InteractionRow,
                                 "users": UserRow}
_ID_COLUMNS = ("item_id", "user_id")


def _dtype(annotation) -> pl.DataType:
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    base = args[0] if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union else annotation
    if typing.get_origin(base) is Literal:
        return pl.Utf8
    return {str: pl.Utf8, int: pl.Int64, float: pl.Float64, bool: pl.Boolean}[base]


def required_columns(table: str) -> tuple[str, ...]:
    return tuple(name for name, f in TABLES[table].model_fields.items() if f.is_required())


def polars_schema(table: str) -> dict[str, pl.DataType]:
    """Column -> polars type for ``table``; ids are read as strings whatever the file holds."""
    return {name: _dtype(f.annotation) for name, f in TABLES[table].model_fields.items()}


class Positives(BaseModel):
    """Which interactions count as positives for ranking evaluation.

    Default: purchases and clicks, and ratings of at least 4. ``min_rating=None`` ignores ratings;
    ``kinds`` may include ``"rating"`` to count every rating.
    """

    model_config = ConfigDict(frozen=True)
    kinds: tuple[Literal["view", "click", "add_to_cart", "purchase", "rating"], ...] = ("purchase", "click")
    min_rating: float | None = 4.0

    def expr(self) -> pl.Expr:
        """A polars predicate over ``kind`` and ``value``."""
        cond = pl.col("kind").is_in(list(self.kinds))
        if self.min_rating is not None:
            cond = cond | ((pl.col("kind") == "rating") & (pl.col("value") >= self.min_rating))
        return cond


@dataclass(frozen=True)
class IdMap:
    """External ids (strings such as SKUs, or integers) <-> the engine's int64 ids.

    Integer ids are kept as they are (``identity``), so MovieLens ids stay what users know; string
    ids get their position in sorted order. Persisted as Parquet (``external``, ``internal``).
    """

    name: str
    frame: pl.DataFrame  # external (Utf8), internal (Int64)
    identity: bool

    @classmethod
    def build(cls, name: str, ids: pl.Series) -> "IdMap":
        unique = ids.drop_nulls().unique().sort()
        identity = unique.dtype.is_integer() or bool(unique.cast(pl.Utf8).str.contains(r"^-?\d{1,18}$").all())
        ext = unique.cast(pl.Utf8)
        internal = ext.cast(pl.Int64) if identity else pl.Series(range(len(ext)), dtype=pl.Int64)
        return cls(name, pl.DataFrame({"external": ext, "internal": internal}).sort("internal"), identity)

    def __len__(self) -> int:
        return self.frame.height

    def to_internal(self, column: str) -> pl.Expr:
        """An expression mapping the external-id column ``column`` to internal ids (null if unknown)."""
        if self.identity:
            return pl.col(column).cast(pl.Utf8).cast(pl.Int64, strict=False)
        return pl.col(column).cast(pl.Utf8).replace_strict(self.frame["external"], self.frame["internal"], default=None,
                                                           return_dtype=pl.Int64)

    def external(self, internal_ids) -> list[str]:
        """The user's ids of ``internal_ids``; raises ``UnknownIdError`` naming an unknown one."""
        lookup = dict(zip(self.frame["internal"].to_list(), self.frame["external"].to_list()))
        out = []
        for i in internal_ids:
            if int(i) not in lookup:
                raise UnknownIdError(f"{self.name} id {int(i)} is not in the id map")
            out.append(lookup[int(i)])
        return out

    def internal(self, external_ids) -> list[int]:
        lookup = dict(zip(self.frame["external"].to_list(), self.frame["internal"].to_list()))
        out = []
        for e in external_ids:
            if str(e) not in lookup:
                raise UnknownIdError(f"{self.name}_id={e!r} is not known")
            out.append(lookup[str(e)])
        return out

    def save(self, path: str | os.PathLike) -> None:
        from io import BytesIO

        buf = BytesIO()
        self.frame.with_columns(pl.lit(self.identity).alias("identity"), pl.lit(self.name).alias("name")).write_parquet(buf)
        atomic_write_bytes(path, buf.getvalue())

    @classmethod
    def load(cls, path: str | os.PathLike) -> "IdMap":
        frame = pl.read_parquet(Path(path))
        name = frame["name"][0] if frame.height else Path(path).stem
        identity = bool(frame["identity"][0]) if frame.height else True
        return cls(name, frame.select("external", "internal"), identity)
