"""Loaders and manifests for the real data sets the engine is evaluated on."""

from crossrec_datasets.grocery import SPLITS, GroceryPhoto, GroceryProduct, GroceryStore, load_grocery
from crossrec_datasets.manifest import Manifest, load_manifest
from crossrec_datasets.movielens import GENRES, MovieLens, load_movielens
from crossrec_datasets.synthetic import SynthConfig, make_shop
from crossrec_core.errors import DatasetNotFoundError
from crossrec_core.paths import DATA_DIR_ENV, resolve_data_dir

__all__ = [
    "DATA_DIR_ENV", "DatasetNotFoundError", "resolve_data_dir", "Manifest", "load_manifest",
    "SPLITS", "GroceryPhoto", "GroceryProduct", "GroceryStore", "load_grocery",
    "GENRES", "MovieLens", "load_movielens", "SynthConfig", "make_shop",
]
