"""MIT Grocery Store data set: 81 products (catalogue image + description) and 5,421 shop photos."""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from crossrec_datasets.base import Dataset
from crossrec_datasets.manifest import load_manifest
from crossrec_datasets.schema import polars_schema
from crossrec_core.paths import resolve_data_dir

__all__ = ["GroceryProduct", "GroceryPhoto", "GroceryStore", "GroceryDataset", "load_grocery", "SPLITS"]

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class GroceryProduct:
    """One catalogue product: the item of the e-commerce catalogue."""

    class_id: int
    name: str
    coarse_id: int
    coarse_name: str
    category: str  # top level: Fruit, Vegetables or Packages
    description: str
    iconic_image: Path


@dataclass(frozen=True)
class GroceryPhoto:
    """One shop photo of a product."""

    path: Path
    class_id: int
    coarse_id: int
    split: str


@dataclass(frozen=True)
class GroceryStore:
    root: Path
    products: tuple[GroceryProduct, ...]
    photos: tuple[GroceryPhoto, ...]

    def split(self, name: str) -> list[GroceryPhoto]:
        if name not in SPLITS:
            raise ValueError(f"split={name!r} is not one of {SPLITS}")
        return [p for p in self.photos if p.split == name]

    def products_frame(self) -> pl.DataFrame:
        return pl.DataFrame(
            {
                "class_id": [p.class_id for p in self.products],
                "name": [p.name for p in self.products],
                "coarse_name": [p.coarse_name for p in self.products],
                "category": [p.category for p in self.products],
                "description": [p.description for p in self.products],
                "iconic_image": [str(p.iconic_image) for p in self.products],
            }
        )

    def photos_frame(self) -> pl.DataFrame:
        return pl.DataFrame(
            {
                "path": [str(p.path) for p in self.photos],
                "class_id": [p.class_id for p in self.photos],
                "coarse_id": [p.coarse_id for p in self.photos],
                "split": [p.split for p in self.photos],
            }
        )


def _product_text(name: str, description: str) -> str:
    # Descriptions do not always name the product; the catalogue title is part of the item text.
    return f"{name.replace('-', ' ')}. {description.strip()}"


def load_grocery(data_dir: str | os.PathLike | None = None) -> GroceryStore:
    """Load the catalogue and photo splits from ``<data_dir>/grocery-store``."""
    root = load_manifest("grocery").check(resolve_data_dir(data_dir))
    dataset = root / "dataset"
    products = []
    with open(dataset / "classes.csv", newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            iconic = dataset / row["Iconic Image Path (str)"].lstrip("/")
            desc_path = dataset / row["Product Description Path (str)"].lstrip("/")
            description = desc_path.read_text("utf-8", errors="replace") if desc_path.is_file() else ""
            products.append(
                GroceryProduct(
                    class_id=int(row["Class ID (int)"]),
                    name=row["Class Name (str)"],
                    coarse_id=int(row["Coarse Class ID (int)"]),
                    coarse_name=row["Coarse Class Name (str)"],
                    category=iconic.relative_to(dataset / "iconic-images-and-descriptions").parts[0],
                    description=_product_text(row["Class Name (str)"], description),
                    iconic_image=iconic,
                )
            )
    photos = []
    for split in SPLITS:
        for line in (dataset / f"{split}.txt").read_text("utf-8").splitlines():
            if not line.strip():
                continue
            rel, fine, coarse = (part.strip() for part in line.split(","))
            photos.append(GroceryPhoto(dataset / rel, int(fine), int(coarse), split))
    return GroceryStore(root=root, products=tuple(sorted(products, key=lambda p: p.class_id)), photos=tuple(photos))


class GroceryDataset(Dataset):
    """The grocery catalogue through the dataset interface: 81 products (catalogue image and
    description), the shop photos as query photos (with their ``split``), no interactions."""

    def __init__(self, data_dir: str | os.PathLike | None = None) -> None:
        self._store = load_grocery(data_dir)
        self.root, self.name = self._store.root, "grocery"

    @property
    def store(self) -> GroceryStore:
        return self._store

    def catalogue(self) -> pl.LazyFrame:
        p = self._store.products
        return pl.LazyFrame({
            "item_id": [str(x.class_id) for x in p], "title": [x.name.replace("-", " ") for x in p],
            "text": [x.description for x in p], "image": [str(x.iconic_image) for x in p],
            "category": [x.category for x in p], "coarse_name": [x.coarse_name for x in p],
        })

    def photos(self) -> pl.LazyFrame:
        ph = self._store.photos
        return pl.LazyFrame({"item_id": [str(x.class_id) for x in ph], "image": [str(x.path) for x in ph],
                             "split": [x.split for x in ph]})

    def interactions(self) -> pl.LazyFrame:
        return pl.LazyFrame(schema=polars_schema("interactions"))
