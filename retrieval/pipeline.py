"""Library functions behind ``crossrec retrieval train|eval|search``."""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from retrieval.align.embedder import ItemEmbedder, default_cache_dir, default_model_dir
from retrieval.align.features import TextFeatures, extract_image_features, extract_text_features
from retrieval.align.model import AlignConfig, AlignedModel, AlignTrainingConfig
from retrieval.align.queries import ItemFields, catalogue_queries, lm_catalogue_queries
from retrieval.align.train import PairData, train_aligned
from retrieval.encoders import MobileNetV2Encoder, load_encoder
from retrieval.evaluate import (
    EvalOptions, RetrievalEvalReport, evaluate_folder, evaluate_grocery, evaluate_ml100k, markdown_table, movielens_features,
)
from retrieval.provenance import write_training_record
from retrieval.plots import plot_retrieval_grid, plot_training_curves
from retrieval.search import CatalogueSearch, SearchHit

__all__ = ["DATASETS", "TrainSummary", "train_retrieval", "run_retrieval_eval", "search_catalogue", "catalogue_dir"]

DATASETS = ("grocery", "ml100k")


def catalogue_dir(model_dir: str | os.PathLike) -> Path:
    return Path(model_dir) / "catalogue"


@dataclass(frozen=True)
class TrainSummary:
    model_dir: Path
    catalogue_dir: Path
    seconds: float
    best_epoch: int
    val_i2t_acc1: float | None
    items_indexed: int
    images_skipped: int


def _check_dataset(dataset: str) -> None:
    if dataset not in DATASETS and not Path(dataset).is_dir():
        raise ValueError(f"dataset={dataset!r} is neither one of {DATASETS} nor a folder")


def _model_name(dataset: str) -> str:
    """``grocery``/``ml100k``, or a folder's name: the model goes to ``crossclip-<name>``."""
    return dataset if dataset in DATASETS else Path(dataset).expanduser().resolve().name


def _catalogue_items(dataset: str, data_dir: str | None):
    """(ids, texts, images, metadata) of the catalogue to index (a folder: the engine's int64 ids,
    the user's id in the metadata)."""
    if dataset not in DATASETS:
        from crossrec_datasets import open_dataset

        ds = open_dataset(dataset)
        cat = ds.catalogue().with_columns(ds.items.to_internal("item_id").alias("_id")).collect()
        return (cat["_id"].to_list(), ds.item_texts(), cat["image"].to_list(),
                [{"item_id": i, "title": t, "category": c, "image": im}
                 for i, t, c, im in cat.select("item_id", "title", "category", "image").iter_rows()])
    if dataset == "grocery":
        from crossrec_datasets import load_grocery

        products = load_grocery(data_dir).products
        return ([p.class_id for p in products], [p.description for p in products], [p.iconic_image for p in products],
                [{"name": p.name, "category": p.category, "image": str(p.iconic_image)} for p in products])
    from crossrec_datasets import load_movielens

    ml = load_movielens(data_dir)
    rows = ml.items.select("item_id", "title").rows()
    posters = ml.poster_paths()
    return ([r[0] for r in rows], ml.item_texts(), posters,
            [{"title": r[1], "image": str(p) if p else None} for r, p in zip(rows, posters)])


def train_retrieval(dataset: str = "grocery", *, data_dir: str | None = None, out_dir: str | os.PathLike | None = None,
                    config: AlignConfig | None = None, training: AlignTrainingConfig | None = None,
                    cache_dir: str | os.PathLike | None = None, progress: bool = True) -> TrainSummary:
    """Train the CrossCLIP-style model on ``dataset``, save it, and index its catalogue.

    Grocery: shop photos of the train split paired with product descriptions, best epoch on val.
    MovieLens: posters paired with title + genres + overview, 10% of movies held out for val.
    A folder (README "Your data"): its query photos, else its catalogue images, with the item texts.
    ``training.json`` records the data set and its catalogue fingerprint, so a model used on another
    catalogue says so (``retrieval.provenance``). ``config`` is the architecture (``config.json``),
    ``training`` how it is trained (``training_config.json`` beside it).
    """
    _check_dataset(dataset)
    config = config or AlignConfig()
    training = training or AlignTrainingConfig()
    if training.generated_queries and dataset == "ml100k":
        raise ValueError(f"generated_queries={training.generated_queries}: the query templates are written for shop "
                         "items (title, classes, attribute words of the description); use 0 for ml100k")
    cache_dir = cache_dir if cache_dir is not None else default_cache_dir()
    out = Path(out_dir) if out_dir is not None else default_model_dir(_model_name(dataset))
    encoder = MobileNetV2Encoder()
    text_encoder = load_encoder(config.text_encoder)
    start = time.perf_counter()
    if dataset == "grocery":
        from crossrec_datasets import load_grocery

        g = load_grocery(data_dir)
        fields = [ItemFields(p.name, (p.coarse_name, p.category), p.description) for p in g.products]
        texts = extract_text_features([p.description for p in g.products], views=training.text_views, seed=training.seed,
                                      encoder=text_encoder, cache_dir=cache_dir, progress=progress)
        parts = {}
        for split, views in (("train", training.image_views), ("val", 0)):
            photos = g.split(split)
            feats = extract_image_features([p.path for p in photos], views=views, mirror=split == "train" and training.mirror_view,
                                           seed=training.seed, encoder=encoder, cache_dir=cache_dir, progress=progress)
            parts[split] = PairData(feats, np.array([p.class_id for p in photos]), texts)
        train, val = _with_queries(parts["train"], fields, training, text_encoder, cache_dir, progress), parts["val"]
    elif dataset not in DATASETS:
        train, val = _folder_pairs(dataset, training, encoder, text_encoder, cache_dir, progress)
    else:
        images, texts = movielens_features(data_dir, image_views=training.image_views, text_views=training.text_views,
                                           seed=training.seed, encoder=encoder, text_encoder=text_encoder,
                                           cache_dir=cache_dir, progress=progress, mirror=training.mirror_view)
        order = np.random.default_rng(training.seed).permutation(np.flatnonzero(images.ok))
        n_val = max(2, len(order) // 10)
        val_idx, train_idx = np.sort(order[:n_val]), np.sort(order[n_val:])
        train = PairData(images.subset(train_idx), train_idx, texts)
        val = PairData(images.subset(val_idx), val_idx, texts)
    result = train_aligned(config, train, val, training, encoder=encoder, progress=progress)
    result.model.save_pretrained(out, training=training)
    seconds = time.perf_counter() - start
    embedder = ItemEmbedder(result.model, text_encoder, encoder, source=str(out))
    ids, item_texts, item_images, metadata = _catalogue_items(dataset, data_dir)
    catalogue = CatalogueSearch.empty(embedder, expected_size=len(ids))
    report = catalogue.upsert(ids, item_texts, item_images, metadata)
    catalogue.save(catalogue_dir(out))
    from crossrec_datasets import open_dataset

    write_training_record(out, open_dataset(dataset, data_dir=data_dir), seconds=seconds,
                          best_epoch=result.best_epoch, history=result.history)
    kept = result.history[result.best_epoch - 1].get("val_i2t_acc@1") if result.history else None
    return TrainSummary(out, catalogue_dir(out), seconds, result.best_epoch, kept, report.indexed, len(report.image_skipped))


def _with_queries(train: PairData, fields: list[ItemFields], training: AlignTrainingConfig, text_encoder,
                  cache_dir, progress: bool) -> PairData:
    """``train`` (one text per item, row = item) with up to ``training.generated_queries`` queries
    per item from each of ``training.query_writer``'s writers appended as more texts of their item
    (``PairData.text_item``); unchanged when that is 0. Validation keeps the item texts alone, so
    its figure means the same either way."""
    if not training.generated_queries:
        return train
    queries, rows = [], []
    if training.query_writer in ("templates", "both"):
        queries, rows = catalogue_queries(fields, max_queries=training.generated_queries)
    if training.query_writer in ("lm", "both"):
        from retrieval.encoders.llm import load_language_model

        written, written_rows = lm_catalogue_queries(fields, load_language_model(), per_item=training.generated_queries,
                                                     seed=training.seed, cache_dir=cache_dir, progress=progress)
        queries, rows = queries + written, rows + written_rows
    # queries get no augmented views: word dropout on two or three words leaves too little
    extra = extract_text_features(queries, views=0, seed=training.seed, encoder=text_encoder, cache_dir=cache_dir,
                                  progress=progress)
    text_item = np.concatenate([np.arange(len(fields)), np.asarray(rows, np.int64)])
    return PairData(train.images, train.image_text, TextFeatures.concat(train.texts, extra), text_item)


def _folder_pairs(folder: str, training: AlignTrainingConfig, encoder, text_encoder, cache_dir, progress: bool):
    """A user's folder as (train, val) pairs: query photos paired with their item's text when the
    folder has ``photos.*`` (every photo of an item is a positive of its text), else catalogue
    images with their own text; 10% of the photos (or items) held out for the best epoch."""
    from crossrec_core.errors import DataFormatError
    from crossrec_datasets import open_dataset

    ds = open_dataset(folder)
    cat = ds.catalogue().select("item_id", "image").collect()
    item_texts = ds.item_texts()
    texts = extract_text_features(item_texts, views=training.text_views, seed=training.seed, encoder=text_encoder,
                                  cache_dir=cache_dir, progress=progress)
    photos = ds.photos()
    if photos is not None:
        photos = photos.collect()
        row = {item: r for r, item in enumerate(cat["item_id"].to_list())}
        known = [(row[i], im) for i, im in photos.select("item_id", "image").iter_rows() if i in row and im]
        labels, paths = np.array([k for k, _ in known], np.int64), [im for _, im in known]
    else:
        keep = [r for r, im in enumerate(cat["image"].to_list()) if im]
        labels, paths = np.array(keep, np.int64), [cat["image"][r] for r in keep]
    if len(paths) < 4:
        raise DataFormatError(f"{folder}: {len(paths)} usable images; aligning images with texts needs at least 4 "
                              "(photos.* or catalogue images; check with `crossrec data check`)")
    feats = extract_image_features(paths, views=training.image_views, mirror=training.mirror_view, seed=training.seed,
                                   encoder=encoder, cache_dir=cache_dir, progress=progress)
    order = np.random.default_rng(training.seed).permutation(np.flatnonzero(feats.ok))
    n_val = max(2, len(order) // 10)
    val_idx, train_idx = np.sort(order[:n_val]), np.sort(order[n_val:])
    fields = _folder_fields(ds, item_texts) if training.generated_queries else []
    train = PairData(feats.subset(train_idx), labels[train_idx], texts)
    return (_with_queries(train, fields, training, text_encoder, cache_dir, progress),
            PairData(feats.subset(val_idx), labels[val_idx], texts))


def _folder_fields(ds, item_texts: list[str]) -> list[ItemFields]:
    """What a folder's generated queries are written from: title, subcategory and category (when
    the catalogue has them) and the item text, in catalogue order."""
    classes = [c for c in ("subcategory", "category") if c in ds.catalogue().collect_schema().names()]
    rows = ds.catalogue().select("title", *classes).collect().iter_rows()
    return [ItemFields(str(r[0]), tuple(str(c) for c in r[1:] if c), text) for r, text in zip(rows, item_texts)]


def _grocery_grid(model: AlignedModel, data_dir: str | None, path: Path, n_queries: int = 6, k: int = 5) -> Path:
    """Test photos (one per product, spread over the catalogue) and their top-k products."""
    from crossrec_datasets import load_grocery

    g = load_grocery(data_dir)
    embedder = ItemEmbedder(model)
    test = g.split("test")
    picks = [test[i] for i in np.linspace(0, len(test) - 1, n_queries).astype(int)]
    z = embedder.embed_images([p.path for p in picks], test_time_flip=True).vectors  # as the eval scores photos
    zt = embedder.embed_text([p.description for p in g.products]).vectors
    top = np.argsort(-(z @ zt.T), axis=1)[:, :k]
    names = [p.name for p in g.products]
    return plot_retrieval_grid(
        [p.path for p in picks], [names[p.class_id] for p in picks],
        [[g.products[j].iconic_image for j in row] for row in top], [[names[j] for j in row] for row in top],
        np.array([[j == p.class_id for j in row] for p, row in zip(picks, top)]), path,
        title="CrossCLIP image→text: shop photo → top-5 product descriptions (shown by catalogue image)")


def run_retrieval_eval(dataset: str, opts: EvalOptions, out_dir: str | os.PathLike, json_path: str | os.PathLike | None = None) -> RetrievalEvalReport:
    """Evaluate baseline vs CrossCLIP; write JSON, Markdown and plots under ``out_dir``.

    ``dataset``: "grocery" (closed + open set), "ml100k" (poster <-> overview folds), "all"
    (grocery report with an ``ml100k`` section) or a user's folder (closed set with its query
    photos, else catalogue image -> text; open set by item folds; the grocery report's shape).
    """
    if dataset not in (*DATASETS, "all"):
        _check_dataset(dataset)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    if dataset == "ml100k":
        ml = evaluate_ml100k(opts)
        report = RetrievalEvalReport({"dataset": "ml100k", "quick": opts.quick, **ml})
    elif dataset not in (*DATASETS, "all"):
        report, _ = evaluate_folder(dataset, opts)
        plot_training_curves(report.data["training"], out / "training_curves.png")
    else:
        report, models = evaluate_grocery(opts)
        plot_training_curves(report.data["training"], out / "training_curves.png")
        _grocery_grid(models["crossclip"], opts.data_dir, out / "retrieval_examples.png")
        if dataset == "all":
            report.data["ml100k"] = evaluate_ml100k(opts)
    report.data["seconds"] = time.perf_counter() - start
    report.data["options"] = dataclasses.asdict(opts)
    report.to_json(json_path or out / "retrieval_eval.json")
    (out / "retrieval_eval.md").write_text(report.to_markdown() if dataset != "ml100k" else markdown_table({"ml100k": report.data}))
    return report


def search_catalogue(query: str | None = None, image: str | os.PathLike | None = None, *, k: int = 10,
                     space: str = "fused", dataset: str = "grocery", model_dir: str | os.PathLike | None = None) -> list[SearchHit]:
    """Search the catalogue indexed by ``train_retrieval`` by text or by image."""
    if (query is None) == (image is None):
        raise ValueError("give exactly one of query (text) or image (a path)")
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k={k!r} must be an int >= 1")
    path = Path(model_dir) if model_dir is not None else default_model_dir(dataset)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"no trained model in {str(path)!r}: run `crossrec retrieval train --dataset {dataset}` first")
    embedder = ItemEmbedder(AlignedModel.from_pretrained(path), source=str(path))
    catalogue = CatalogueSearch.load(catalogue_dir(path), embedder)
    return catalogue.search_text(query, k, space) if query is not None else catalogue.search_image(image, k, space)
