"""Data sets behind one interface (``open_dataset``: a name or a user's folder), the user-data
schema, the synthetic shop, and the loaders of the real data sets the engine is evaluated on."""

from crossrec_datasets.base import DEFAULT_DATASET, NAMES, Dataset, is_named
from crossrec_datasets.folder import FolderDataset, RecBoleDataset
from crossrec_datasets.grocery import SPLITS, GroceryDataset, GroceryPhoto, GroceryProduct, GroceryStore, load_grocery
from crossrec_datasets.manifest import Manifest, load_manifest
from crossrec_datasets.movielens import GENRES, MovieLens, MovieLensDataset, load_movielens
from crossrec_datasets.schema import KINDS, IdMap, Positives
from crossrec_datasets.sources import open_dataset
from crossrec_datasets.synthetic import SynthConfig, make_shop
from crossrec_core.errors import DataFormatError, DatasetNotFoundError
from crossrec_core.paths import DATA_DIR_ENV, resolve_data_dir

__all__ = [
    "DATA_DIR_ENV", "DatasetNotFoundError", "DataFormatError", "resolve_data_dir", "Manifest", "load_manifest",
    "Dataset", "NAMES", "DEFAULT_DATASET", "open_dataset", "is_named", "FolderDataset", "RecBoleDataset",
    "KINDS", "IdMap", "Positives",
    "SPLITS", "GroceryDataset", "GroceryPhoto", "GroceryProduct", "GroceryStore", "load_grocery",
    "GENRES", "MovieLens", "MovieLensDataset", "load_movielens", "SynthConfig", "make_shop",
]
