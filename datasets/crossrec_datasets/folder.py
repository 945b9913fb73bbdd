"""Folders a user brings: the user-data layout (``catalogue.*``, ``photos.*``, ``interactions.*``,
``users.*`` as Parquet, CSV or JSON lines) and RecBole atomic files (``.item``, ``.inter``, ``.user``).
Read lazily with polars; ids are strings at the edge (see ``schema.IdMap``)."""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl

from crossrec_core.errors import DataFormatError, DatasetNotFoundError
from crossrec_datasets.base import Dataset
from crossrec_datasets.schema import TABLES, polars_schema, required_columns

__all__ = ["FORMATS", "FolderDataset", "RecBoleDataset", "find_table", "scan_table"]

FORMATS = ("parquet", "csv", "jsonl")


def find_table(root: Path, table: str) -> Path | None:
    """``root/<table>.{parquet,csv,jsonl}``; refuses a folder holding the table in two formats."""
    found = [root / f"{table}.{fmt}" for fmt in FORMATS if (root / f"{table}.{fmt}").is_file()]
    if len(found) > 1:
        raise DataFormatError(f"{root}: {table} is given as {', '.join(p.name for p in found)}; keep exactly one file per table")
    return found[0] if found else None


def scan_table(path: Path) -> pl.LazyFrame:
    """The raw table (ids as strings, other columns as the file has them)."""
    ids = {c: pl.Utf8 for c in ("item_id", "user_id")}
    if path.suffix == ".parquet":
        return pl.scan_parquet(path)
    if path.suffix == ".csv":
        return pl.scan_csv(path, schema_overrides=ids, infer_schema_length=10_000)
    return pl.scan_ndjson(path, schema_overrides=ids, infer_schema_length=10_000)


def _normalise(frame: pl.LazyFrame, table: str, path: Path) -> pl.LazyFrame:
    """Cast the schema's columns (missing optional ones become nulls); names the file and column on a
    missing required column. Type errors surface when collected; ``crossrec data check`` reports them."""
    columns = frame.collect_schema().names()
    missing = [c for c in required_columns(table) if c not in columns]
    if missing:
        raise DataFormatError(f"{path}: missing required column(s) {missing}; {table} needs "
                              f"{list(required_columns(table))} (optional: "
                              f"{[c for c in TABLES[table].model_fields if c not in required_columns(table)]})")
    schema = polars_schema(table)
    casts = [pl.col(c).cast(t) if c in columns else pl.lit(None, dtype=t).alias(c) for c, t in schema.items()]
    if table == "catalogue" and "text" not in columns:
        casts[list(schema).index("text")] = pl.lit("").alias("text")
    return frame.with_columns(casts)


class FolderDataset(Dataset):
    """The user-data layout (README "Your data"); ``catalogue`` and ``interactions`` are required
    for ranking, a catalogue alone is enough for retrieval."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root).expanduser().resolve()
        self.name = self.root.name
        if not self.root.is_dir():
            raise DatasetNotFoundError(f"dataset folder {str(self.root)!r} does not exist")
        self._files = {t: find_table(self.root, t) for t in TABLES}
        if self._files["catalogue"] is None:
            raise DatasetNotFoundError(f"{self.root}: no catalogue.{{{','.join(FORMATS)}}}; a dataset folder needs at least "
                                       "a catalogue (item_id, title, ...); see the README section 'Your data'")

    def _table(self, table: str) -> pl.LazyFrame | None:
        path = self._files[table]
        if path is None:
            return None
        frame = _normalise(scan_table(path), table, path)
        if "image" in polars_schema(table):
            root = str(self.root) + os.sep
            frame = frame.with_columns(pl.when(pl.col("image").is_not_null() & (pl.col("image") != ""))
                                       .then(pl.lit(root) + pl.col("image")).otherwise(None).alias("image"))
        return frame

    def catalogue(self) -> pl.LazyFrame:
        return self._table("catalogue")

    def interactions(self) -> pl.LazyFrame:
        frame = self._table("interactions")
        if frame is None:
            return pl.LazyFrame(schema=polars_schema("interactions"))
        return frame

    def photos(self) -> pl.LazyFrame | None:
        return self._table("photos")

    def users(self) -> pl.LazyFrame | None:
        return self._table("users")

    def item_vectors(self):
        """``item_vectors.npy`` or the catalogue column ``embedding`` (``crossrec_datasets.vectors``);
        a problem with them raises ``DataFormatError`` naming it (``crossrec data check`` counts all)."""
        from crossrec_datasets.vectors import inspect_vectors

        vectors, problems = inspect_vectors(self.root, self.catalogue().collect())
        if problems:
            p = problems[0]
            raise DataFormatError(f"{self.root}: {p.message} ({p.count}{': ' + ', '.join(p.examples) if p.examples else ''}); "
                                  "run `crossrec data check` for every problem")
        return vectors


def _scan_atomic(path: Path) -> pl.LazyFrame:
    """A RecBole atomic file: tab-separated, header ``name:type``; the types are dropped from the names."""
    frame = pl.scan_csv(path, separator="\t", quote_char=None, infer_schema=False)
    return frame.rename({c: c.split(":", 1)[0] for c in frame.collect_schema().names()})


class RecBoleDataset(Dataset):
    """RecBole atomic files ``<name>.inter`` (user_id, item_id, [rating], [timestamp]), ``<name>.item``
    and ``<name>.user``. Rows of ``.inter`` with a rating are ``rating`` events, others ``click``s."""

    _TITLE = ("title", "movie_title", "item_name", "name")
    _CATEGORY = ("genre", "class", "categories", "category")

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root).expanduser().resolve()
        inter = sorted(self.root.glob("*.inter"))
        if len(inter) != 1:
            raise DatasetNotFoundError(f"{self.root}: expected exactly one RecBole .inter file, found {[p.name for p in inter]}")
        self.name = inter[0].stem
        self._inter = inter[0]

    def _file(self, suffix: str) -> Path | None:
        path = self._inter.with_suffix(suffix)
        return path if path.is_file() else None

    def interactions(self) -> pl.LazyFrame:
        frame = _scan_atomic(self._inter)
        cols = frame.collect_schema().names()
        missing = [c for c in ("user_id", "item_id") if c not in cols]
        if missing:
            raise DataFormatError(f"{self._inter}: missing field(s) {missing} (header names like user_id:token)")
        has_rating = "rating" in cols
        return frame.select(
            pl.col("user_id"), pl.col("item_id"),
            (pl.col("timestamp").cast(pl.Float64).cast(pl.Int64) if "timestamp" in cols else pl.int_range(pl.len(), dtype=pl.Int64)).alias("timestamp"),
            pl.lit("rating" if has_rating else "click").alias("kind"),
            (pl.col("rating").cast(pl.Float64) if has_rating else pl.lit(None, dtype=pl.Float64)).alias("value"),
        )

    def catalogue(self) -> pl.LazyFrame:
        path = self._file(".item")
        if path is None:  # items known only by id
            ids = _scan_atomic(self._inter).select("item_id").unique(maintain_order=True)
            return ids.with_columns(pl.col("item_id").alias("title"), pl.lit("").alias("text"),
                                    pl.lit(None, dtype=pl.Utf8).alias("image"), pl.lit("").alias("category"))
        frame = _scan_atomic(path)
        cols = frame.collect_schema().names()
        title = next((c for c in self._TITLE if c in cols), "item_id")
        category = next((c for c in self._CATEGORY if c in cols), None)
        cat_expr = pl.col(category).str.split(" ").list.first().fill_null("") if category else pl.lit("")
        text_cols = [c for c in cols if c not in ("item_id", title)]
        return frame.with_columns(
            pl.col(title).alias("title"),
            pl.concat_str([pl.col(c) for c in text_cols], separator=". ", ignore_nulls=True).alias("text") if text_cols else pl.lit("").alias("text"),
            pl.lit(None, dtype=pl.Utf8).alias("image"), cat_expr.alias("category"),
        )

    def users(self) -> pl.LazyFrame | None:
        path = self._file(".user")
        return None if path is None else _scan_atomic(path)
