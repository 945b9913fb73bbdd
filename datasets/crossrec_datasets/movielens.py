"""MovieLens 100K joined with TMDB overviews and posters (research licence; never committed)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from crossrec_datasets.base import Dataset
from crossrec_datasets.manifest import load_manifest
from crossrec_datasets.schema import Positives
from crossrec_core.paths import resolve_data_dir

__all__ = ["GENRES", "MovieLens", "MovieLensDataset", "load_movielens"]

GENRES = (
    "genre_unknown", "Action", "Adventure", "Animation", "Children", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "FilmNoir", "Horror", "Musical", "Mystery", "Romance",
    "SciFi", "Thriller", "War", "Western",
)


@dataclass(frozen=True)
class MovieLens:
    """Frames: ``ratings`` (user_id, item_id, rating, timestamp), ``users`` (user_id, age, sex,
    occupation, zip_code), ``items`` (item_id, title, genres flags, year, overview, poster)."""

    root: Path
    ratings: pl.DataFrame
    users: pl.DataFrame
    items: pl.DataFrame

    def item_text(self, row: dict) -> str:
        genres = ", ".join(g for g in GENRES[1:] if row.get(g))
        overview = row.get("overview") or ""
        return f"{row['title']}. {genres}. {overview}".strip()

    def item_texts(self) -> list[str]:
        return [self.item_text(r) for r in self.items.iter_rows(named=True)]

    def poster_paths(self) -> list[Path | None]:
        return [Path(p) if p else None for p in self.items["poster"].to_list()]


def load_movielens(data_dir: str | os.PathLike | None = None) -> MovieLens:
    """Load ``<data_dir>/ml100k-posters``; items are de-duplicated on ``movie_id``."""
    root = load_manifest("ml100k").check(resolve_data_dir(data_dir))
    data = root / "data"
    ratings = pl.read_csv(data / "ratings.csv").rename({"movie_id": "item_id", "unix_timestamp": "timestamp"})
    users = pl.read_csv(data / "users.csv", schema_overrides={"zip_code": pl.Utf8})
    items = (
        pl.read_csv(data / "items.csv", infer_schema_length=5000)
        .unique(subset="movie_id", keep="first", maintain_order=True)
        .rename({"movie_id": "item_id"})
        .sort("item_id")
    )
    posters = data / "posters"
    items = items.with_columns(
        pl.col("item_id")
        .map_elements(lambda i: str(posters / f"{i}.jpg") if (posters / f"{i}.jpg").is_file() else None,
                      return_dtype=pl.Utf8)
        .alias("poster"),
        pl.col("overview").fill_null(""),
        pl.col("title").fill_null(""),
    )
    return MovieLens(root=root, ratings=ratings, users=users, items=items)


class MovieLensDataset(Dataset):
    """MovieLens 100K through the dataset interface: ratings are ``rating`` events and, as in the
    project's published protocol, every rating counts as a positive (``Positives(kinds=("rating",))``)."""

    def __init__(self, data_dir: str | os.PathLike | None = None) -> None:
        self._ml = load_movielens(data_dir)
        self.root, self.name = self._ml.root, "ml100k"
        self.positives = Positives(kinds=("rating",), min_rating=None)
        self.genre_columns = GENRES

    @property
    def movielens(self) -> MovieLens:
        return self._ml

    def catalogue(self) -> pl.LazyFrame:
        items = self._ml.items
        first_genre = pl.concat_list([pl.when(pl.col(g) == 1).then(pl.lit(g)) for g in GENRES[1:]]).list.drop_nulls().list.first()
        return items.lazy().select(
            pl.col("item_id").cast(pl.Utf8), pl.col("title"),
            pl.Series("text", self._ml.item_texts()), pl.col("poster").alias("image"),
            first_genre.fill_null("").alias("category"), *[pl.col(g) for g in GENRES],
        )

    def interactions(self) -> pl.LazyFrame:
        return self._ml.ratings.lazy().select(
            pl.col("user_id").cast(pl.Utf8), pl.col("item_id").cast(pl.Utf8), pl.col("timestamp").cast(pl.Int64),
            pl.lit("rating").alias("kind"), pl.col("rating").cast(pl.Float64).alias("value"))

    def users(self) -> pl.LazyFrame:
        return self._ml.users.lazy().with_columns(pl.col("user_id").cast(pl.Utf8))
