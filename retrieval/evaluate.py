"""Retrieval evaluation protocols (Grocery Store, MovieLens posters), reports and plots.

Closed set (Grocery): train on the train split, select the epoch on val, report on test:
image->text (a photo finds its product description among all 81), text->image (a description
finds photos of its product among all test photos), image->image (a photo finds its catalogue
image among 81) and image->item (a photo finds the fused catalogue item, image + text).
Open set: 5 folds over products; the model never sees the held-out products, whose test photos
are ranked against the held-out products' texts and catalogue images only.
MovieLens: 5 folds over movies; a poster finds its overview (and back) among held-out movies.
A user's folder (``evaluate_folder``): the same closed and open set with its query photos, or
catalogue image -> text when it has none.
Both open protocols report fold means and standard deviations, a paired t-test on image->text
Acc@1 and Cohen's d of the paired differences (d_z). With ``test_time_flip`` (the default) every
model's query photo embedding is the mean of the photo's and its mirror image's.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.nn import functional as F

from retrieval.align.features import (
    ImageFeatures, TextFeatures, extract_image_features, extract_text_features, lift_features, lift_to_stages,
)
from retrieval.align.embedder import default_cache_dir
from retrieval.align.model import AlignConfig, AlignedModel, AlignTrainingConfig, split_settings
from retrieval.align.train import PairData, TrainResult, embed_cached, model_image_inputs, train_aligned
from retrieval.encoders import MobileNetV2Encoder, load_encoder
from retrieval.metrics import retrieval_metrics
from crossrec_core.reports import Report

__all__ = [
    "EvalOptions", "RetrievalEvalReport", "score_model", "evaluate_grocery", "evaluate_folder", "evaluate_ml100k",
    "paired_stats", "markdown_table", "movielens_features",
]

MODELS = ("baseline", "crossclip")


@dataclass(frozen=True)
class EvalOptions:
    data_dir: str | None = None
    quick: bool = False              # a slice and fewer epochs/folds: a smoke run of a few minutes
    folds: int = 5
    cache_dir: str | None = None     # default: $CROSSREC_HOME/cache/features
    text_encoder: str = "minilm"
    seed: int = 0                    # folds, augmentation and the first training seed
    # independently seeded trainings per grocery open-set fold, averaged per fold: one seed's fold figures
    # move by up to 7 points from seed to seed, more than the effect measured
    seeds: int = 1
    progress: bool = True
    test_time_flip: bool = True      # query photo = mean of it and its mirror image, for every model
    crossclip: dict = field(default_factory=dict)   # AlignConfig and AlignTrainingConfig overrides
    baseline: dict = field(default_factory=dict)

    def __post_init__(self):
        if not isinstance(self.seeds, int) or self.seeds < 1:
            raise ValueError(f"seeds={self.seeds!r}: at least 1 training per open-set fold is required")
        if self.cache_dir is None:
            object.__setattr__(self, "cache_dir", str(default_cache_dir()))

    def configs(self) -> dict[str, tuple[AlignConfig, AlignTrainingConfig]]:
        """(architecture, training) of each compared model."""
        quick = {"epochs": 4} if self.quick else {}
        out = {}
        for name, arch_cls, train_cls, overrides in (
                ("baseline", AlignConfig.baseline, AlignTrainingConfig.baseline, self.baseline),
                ("crossclip", AlignConfig, AlignTrainingConfig, self.crossclip)):
            arch, training = split_settings({"text_encoder": self.text_encoder, "seed": self.seed, **quick, **overrides})
            out[name] = (arch_cls(**arch), train_cls(**training))
        return out


@dataclass
class RetrievalEvalReport(Report):
    """Baseline vs CrossCLIP on one data set: ``data`` is the JSON report, ``to_markdown`` the
    comparison table."""

    data: dict

    def to_dict(self) -> dict:
        return self.data

    def to_markdown(self) -> str:
        return markdown_table(self.data)


def _relevance(query_labels: np.ndarray, cand_labels: np.ndarray) -> np.ndarray:
    return np.asarray(query_labels)[:, None] == np.asarray(cand_labels)[None, :]


def score_model(model: AlignedModel, encoder: MobileNetV2Encoder, queries: ImageFeatures, query_labels: np.ndarray,
                texts: TextFeatures, text_labels: np.ndarray, catalogue: ImageFeatures | None = None,
                test_time_flip: bool = False) -> dict:
    """Metrics of one model on one query set: ``i2t``, ``t2i`` and, with catalogue images,
    ``i2i`` and ``i2item`` (photo -> fused catalogue item). ``test_time_flip`` averages each query
    photo's embedding with its mirror image's (``queries`` extracted with ``mirror=True``)."""
    if test_time_flip and queries.mirrored is None:
        raise ValueError("test_time_flip=True needs query features extracted with mirror=True")
    ok = queries.ok
    lifted = lift_features(queries, encoder, model.config.split_stage)
    zq = embed_cached(model, lifted.clean)
    if test_time_flip:
        zq = F.normalize(zq + embed_cached(model, lifted.mirrored), dim=-1)
    zq = zq[torch.as_tensor(ok)]
    ql = np.asarray(query_labels)[ok]
    with torch.inference_mode():
        zt = model.encode_text(texts.clean)
    rel = _relevance(ql, text_labels)
    out = {"i2t": retrieval_metrics((zq @ zt.T).numpy(), rel)}
    has_photo = rel.any(axis=0)
    out["t2i"] = retrieval_metrics((zt[has_photo] @ zq.T).numpy(), rel.T[has_photo])
    if catalogue is not None:
        c_in = model_image_inputs(model.config, catalogue, encoder)[0]
        zc, tokens = embed_cached(model, c_in, return_tokens=True)
        out["i2i"] = retrieval_metrics((zq @ zc.T).numpy(), rel)
        with torch.inference_mode():
            fused = model.fuse(zt, zc, tokens)
        out["i2item"] = retrieval_metrics((zq @ fused.T).numpy(), rel)
    return {k: v.to_dict() for k, v in out.items()}


def paired_stats(a: list[float], b: list[float]) -> dict:
    """Paired t-test of ``b`` against ``a`` (one value per fold) and Cohen's d of the differences."""
    from scipy import stats

    a_, b_ = np.asarray(a, float), np.asarray(b, float)
    diff = b_ - a_
    if len(diff) < 2:
        return {"p_value": None, "cohens_d": None, "mean_diff": float(diff.mean()) if len(diff) else None}
    sd = diff.std(ddof=1)
    p = float(stats.ttest_rel(b_, a_).pvalue) if sd > 0 else (0.0 if diff.mean() != 0 else 1.0)
    return {"p_value": p, "cohens_d": float(diff.mean() / sd) if sd > 0 else None, "mean_diff": float(diff.mean())}


def _fold_summary(per_fold: list[dict], spread: bool = True) -> dict:
    """Mean of every metric of ``{task: {metric: value}}`` dicts (folds, or seeded runs on one fold),
    with ``<metric>_std`` beside it (sample std) when ``spread``."""
    out = {}
    for task in per_fold[0]:
        out[task] = {}
        for metric in per_fold[0][task]:
            values = np.array([f[task][metric] for f in per_fold], float)
            out[task][metric] = float(values.mean())
            if spread and metric != "n":
                out[task][f"{metric}_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    return out


def _fold_ids(n: int, folds: int, seed: int) -> list[np.ndarray]:
    return np.array_split(np.random.default_rng(seed).permutation(n), folds)


def _history_record(res: TrainResult) -> dict:
    return {"seconds": res.seconds, "best_epoch": res.best_epoch, "history": res.history,
            "config": dataclasses.asdict(res.model.config), "training_config": dataclasses.asdict(res.training)}


def _open_set_summary(runs: dict[str, list[list[dict]]], folds: int, seeds: list[int]) -> dict:
    """Fold means and spreads of ``runs`` (model -> fold -> one metric dict per training seed), the
    paired test of image->text Acc@1 (CrossCLIP against the baseline) and the per-seed figures."""
    per_fold = {n: [_fold_summary(fold, spread=False) for fold in runs[n]] for n in runs}
    open_set = {name: _fold_summary(per_fold[name]) for name in runs}
    open_set.update(paired_stats([f["i2t"]["acc@1"] for f in per_fold["baseline"]],
                                 [f["i2t"]["acc@1"] for f in per_fold["crossclip"]]))
    open_set["folds"] = folds
    open_set["per_fold_i2t_acc@1"] = {n: [f["i2t"]["acc@1"] for f in per_fold[n]] for n in runs}
    per_seed = {n: [[fold[i]["i2t"]["acc@1"] for fold in runs[n]] for i in range(len(seeds))] for n in runs}
    means = {n: [float(np.mean(v)) for v in per_seed[n]] for n in runs}
    open_set["seeds"] = {"n": len(seeds), "training_seeds": seeds, "per_seed_per_fold_i2t_acc@1": per_seed,
                         "per_seed_i2t_acc@1": means,
                         "i2t_acc@1_seed_std": {n: float(np.std(v, ddof=1)) if len(v) > 1 else 0.0 for n, v in means.items()}}
    return open_set


def evaluate_grocery(opts: EvalOptions, model_out: str | os.PathLike | None = None) -> tuple[RetrievalEvalReport, dict]:
    """Closed set and open set on the Grocery Store data. Returns the report and the trained
    closed-set models (for plots and saving)."""
    from crossrec_datasets import load_grocery

    g = load_grocery(opts.data_dir)
    encoder = MobileNetV2Encoder()
    text_encoder = load_encoder(opts.text_encoder)
    configs = opts.configs()
    splits = {s: g.split(s) for s in ("train", "val", "test")}
    if opts.quick:  # every 4th train photo, every 5th test photo: all products stay present
        splits = {"train": splits["train"][::4], "val": splits["val"], "test": splits["test"][::5]}
    views = max(t.image_views for _, t in configs.values())
    mirror = {"train": any(t.mirror_view for _, t in configs.values()), "val": False, "test": opts.test_time_flip}
    feats = {s: extract_image_features([p.path for p in ps], views=views if s == "train" else 0, mirror=mirror[s],
                                       seed=opts.seed, encoder=encoder, cache_dir=opts.cache_dir, progress=opts.progress)
             for s, ps in splits.items()}
    labels = {s: np.array([p.class_id for p in ps]) for s, ps in splits.items()}
    iconic = extract_image_features([p.iconic_image for p in g.products], encoder=encoder,
                                    cache_dir=opts.cache_dir, progress=opts.progress)
    stages = {c.split_stage for c, _ in configs.values()}
    lifted = {s: lift_to_stages(f, encoder, stages) for s, f in {**feats, "iconic": iconic}.items()}
    text_views = max(t.text_views for _, t in configs.values())
    texts = extract_text_features([p.description for p in g.products], views=text_views, seed=opts.seed,
                                  encoder=text_encoder, cache_dir=opts.cache_dir, progress=opts.progress)
    product_labels = np.array([p.class_id for p in g.products])
    skipped = {s: int((~f.ok).sum()) for s, f in feats.items()}

    report: dict = {"dataset": "grocery", "quick": opts.quick, "skipped_images": skipped, "training": {}}
    models = {}
    for name, (cfg, tcfg) in configs.items():
        at = {s: lifted[s][cfg.split_stage] for s in lifted}
        res = train_aligned(cfg, PairData(at["train"], labels["train"], texts),
                            PairData(at["val"], labels["val"], texts), tcfg, encoder=encoder, progress=opts.progress)
        models[name] = res.model
        report[name] = score_model(res.model, encoder, at["test"], labels["test"], texts, product_labels, at["iconic"],
                                   test_time_flip=opts.test_time_flip)
        report["training"][name] = _history_record(res)
        if model_out is not None and name == "crossclip":
            res.model.save_pretrained(model_out, training=res.training)

    folds = 2 if opts.quick else opts.folds
    seeds = [opts.seed + i for i in range(opts.seeds)]
    runs: dict[str, list[list[dict]]] = {m: [] for m in configs}  # model -> fold -> one metric dict per seed
    for k, held in enumerate(_fold_ids(len(g.products), folds, opts.seed)):
        held_ids = set(product_labels[held].tolist())
        keep = {s: np.array([l not in held_ids for l in labels[s]]) for s in labels}
        test_idx = np.flatnonzero(~keep["test"])
        held_texts = TextFeatures(texts.clean[held], None)
        for name, (cfg, tcfg) in configs.items():
            at = {s: lifted[s][cfg.split_stage] for s in lifted}
            train = PairData(at["train"].subset(np.flatnonzero(keep["train"])), labels["train"][keep["train"]], texts)
            val = PairData(at["val"].subset(np.flatnonzero(keep["val"])), labels["val"][keep["val"]], texts)
            queries, catalogue = at["test"].subset(test_idx), at["iconic"].subset(held)
            runs[name].append([
                score_model(train_aligned(cfg, train, val, dataclasses.replace(tcfg, seed=seed), encoder=encoder,
                                          progress=opts.progress).model,
                            encoder, queries, labels["test"][test_idx], held_texts, product_labels[held], catalogue,
                            test_time_flip=opts.test_time_flip)
                for seed in seeds])
    report["open_set"] = _open_set_summary(runs, folds, seeds)
    return RetrievalEvalReport(report), models


def _split(n: int, fractions: tuple[float, ...], seed: int) -> list[np.ndarray]:
    """``range(n)`` shuffled and cut at ``fractions`` (each part sorted)."""
    order = np.random.default_rng(seed).permutation(n)
    cuts = np.cumsum([int(round(f * n)) for f in fractions[:-1]])
    return [np.sort(part) for part in np.split(order, cuts)]


def _concat_images(parts: list[ImageFeatures]) -> ImageFeatures:
    """Image features of several extractions (same stage), rows in order."""
    if len(parts) == 1:
        return parts[0]
    cat = lambda name: None if any(getattr(p, name) is None for p in parts) else torch.cat([getattr(p, name) for p in parts])  # noqa: E731
    offsets = np.cumsum([0] + [len(p.ok) for p in parts])
    errors = {int(i) + int(off): e for p, off in zip(parts, offsets) for i, e in p.errors.items()}
    return ImageFeatures(cat("clean"), cat("views"), np.concatenate([p.ok for p in parts]), errors, parts[0].stage,
                         cat("mirrored"))


def evaluate_folder(folder: str | os.PathLike, opts: EvalOptions) -> tuple[RetrievalEvalReport, dict]:
    """Closed and open set on a user's folder (README "Your data"), in the grocery report's shape.

    With ``photos.*``: query photos split 60/20/20 into train/val/test; the models train on every
    catalogue image and the train photos (each paired with its item's text); a test photo finds its
    item's text (i2t), catalogue image (i2i) and fused item (i2item) among all items. Without
    photos the closed set is catalogue image -> text in sample (the images were trained on); the
    held-out figure is then the open set. Open set: ``folds`` folds over items; held-out items' photos
    (else catalogue images) are ranked against the held-out items only. Returns the report and the
    closed-set models.
    """
    from crossrec_core.errors import DataFormatError
    from crossrec_datasets import open_dataset

    ds = open_dataset(folder)
    cat = ds.catalogue().select("item_id", "image").collect()
    n_items = cat.height
    row = {item: r for r, item in enumerate(cat["item_id"].to_list())}
    cat_rows = [r for r, im in enumerate(cat["image"].to_list()) if im]
    photo_frame = ds.photos()
    photos = [] if photo_frame is None else [
        (row[i], im) for i, im in photo_frame.select("item_id", "image").collect().iter_rows() if i in row and im]
    folds = 2 if opts.quick else opts.folds
    if len(cat_rows) + len(photos) < 10 or n_items < 2 * folds:
        raise DataFormatError(f"{ds.root}: {n_items} items, {len(cat_rows)} catalogue images and {len(photos)} photos; "
                              f"evaluating retrieval needs at least {2 * folds} items ({folds} folds) and 10 images "
                              "(check the folder with `crossrec data check`)")
    encoder = MobileNetV2Encoder()
    configs = opts.configs()
    paths = [cat["image"][r] for r in cat_rows] + [im for _, im in photos]
    labels = np.array(cat_rows + [r for r, _ in photos], np.int64)  # the item (catalogue row) of each image
    is_photo = np.arange(len(paths)) >= len(cat_rows)
    # catalogue images and photos extracted apart: the photos' features are then the ones
    # `retrieval train --dataset FOLDER` cached (the cache is keyed by the list's content)
    parts = [extract_image_features(part, views=max(t.image_views for _, t in configs.values()), mirror=True, seed=opts.seed,
                                    encoder=encoder, cache_dir=opts.cache_dir, progress=opts.progress)
             for part in (paths[:len(cat_rows)], paths[len(cat_rows):]) if part]
    feats = _concat_images(parts)
    lifted = lift_to_stages(feats, encoder, {c.split_stage for c, _ in configs.values()})
    texts = extract_text_features(ds.item_texts(), views=max(t.text_views for _, t in configs.values()), seed=opts.seed,
                                  encoder=load_encoder(opts.text_encoder), cache_dir=opts.cache_dir, progress=opts.progress)
    ok = feats.ok
    # i2i / i2item need one catalogue image per candidate item, in the texts' order
    cat_image = {int(labels[j]): j for j in np.flatnonzero(~is_photo & ok)}
    has_photos = bool((is_photo & ok).sum() >= 5)

    def catalogue_of(items: np.ndarray, stage: int) -> ImageFeatures | None:
        if not has_photos or any(int(i) not in cat_image for i in items):
            return None
        return lifted[stage].subset(np.array([cat_image[int(i)] for i in items]))

    if has_photos:
        train_p, val_p, test_p = (np.flatnonzero(is_photo & ok)[part] for part in _split(int((is_photo & ok).sum()), (0.6, 0.2, 0.2), opts.seed))
        closed = {"train": np.concatenate([np.flatnonzero(~is_photo & ok), train_p]), "val": val_p, "test": test_p}
        protocol = "photo -> item: photos split 60/20/20; trained on catalogue images + train photos; ranked among all items"
    else:
        everything = np.flatnonzero(ok)
        closed = {"train": everything, "val": everything, "test": everything}
        protocol = "catalogue image -> text in sample (no photos.*): the images were trained on; see the open set"
    every_item = np.arange(n_items)
    report: dict = {"dataset": ds.name, "folder": str(ds.root), "quick": opts.quick,
                    "skipped_images": {"catalogue": int((~ok & ~is_photo).sum()), "photos": int((~ok & is_photo).sum())},
                    "protocol": {"closed_set": protocol, "items": n_items, "queries": int(len(closed["test"])),
                                 "open_set": f"{folds} folds over items; held-out {'photos' if has_photos else 'catalogue images'} "
                                             "ranked among held-out items only"},
                    "training": {}}
    models = {}
    for name, (cfg, tcfg) in configs.items():
        at = lifted[cfg.split_stage]
        part = {s: PairData(at.subset(idx), labels[idx], texts) for s, idx in closed.items()}
        res = train_aligned(cfg, part["train"], part["val"], tcfg, encoder=encoder, progress=opts.progress)
        models[name] = res.model
        report[name] = score_model(res.model, encoder, part["test"].images, labels[closed["test"]], texts, every_item,
                                   catalogue_of(every_item, cfg.split_stage), test_time_flip=opts.test_time_flip)
        report["training"][name] = _history_record(res)

    seeds = [opts.seed + i for i in range(opts.seeds)]
    runs: dict[str, list[list[dict]]] = {m: [] for m in configs}
    for k, held in enumerate(_fold_ids(n_items, folds, opts.seed)):
        is_held = np.isin(labels, held)
        rest = np.flatnonzero(ok & ~is_held)
        val_part, train_part = _split(len(rest), (0.1, 0.9), opts.seed + k)
        query = np.flatnonzero(ok & is_held & (is_photo if has_photos else ~is_photo))
        held_texts = TextFeatures(texts.clean[held], None)
        for name, (cfg, tcfg) in configs.items():
            at = lifted[cfg.split_stage]
            train = PairData(at.subset(rest[train_part]), labels[rest[train_part]], texts)
            val = PairData(at.subset(rest[val_part]), labels[rest[val_part]], texts)
            runs[name].append([
                score_model(train_aligned(cfg, train, val, dataclasses.replace(tcfg, seed=seed), encoder=encoder,
                                          progress=opts.progress).model,
                            encoder, at.subset(query), labels[query], held_texts, held,
                            catalogue_of(held, cfg.split_stage), test_time_flip=opts.test_time_flip)
                for seed in seeds])
    report["open_set"] = _open_set_summary(runs, folds, seeds)
    return RetrievalEvalReport(report), models


def movielens_features(data_dir: str | None, *, image_views: int, text_views: int, seed: int,
                       encoder: MobileNetV2Encoder, text_encoder, cache_dir, progress: bool,
                       limit: int | None = None, mirror: bool = False) -> tuple[ImageFeatures, TextFeatures]:
    """Cached poster and item-text features of the MovieLens movies that have a poster, in the
    same order (the ``limit`` first ones); ``mirror`` adds the mirrored posters."""
    from crossrec_datasets import load_movielens

    ml = load_movielens(data_dir)
    posters, item_texts = ml.poster_paths(), ml.item_texts()
    idx = [i for i, p in enumerate(posters) if p is not None][:limit]
    images = extract_image_features([posters[i] for i in idx], views=image_views, mirror=mirror, seed=seed,
                                    encoder=encoder, cache_dir=cache_dir, progress=progress)
    texts = extract_text_features([item_texts[i] for i in idx], views=text_views, seed=seed, encoder=text_encoder,
                                  cache_dir=cache_dir, progress=progress)
    return images, texts


def evaluate_ml100k(opts: EvalOptions) -> dict:
    """Poster <-> overview retrieval on MovieLens, 5 folds over movies (held-out movies only)."""
    encoder = MobileNetV2Encoder()
    configs = opts.configs()
    images, texts = movielens_features(
        opts.data_dir, image_views=max(t.image_views for _, t in configs.values()),
        text_views=max(t.text_views for _, t in configs.values()), seed=opts.seed, encoder=encoder,
        text_encoder=load_encoder(opts.text_encoder), cache_dir=opts.cache_dir, progress=opts.progress,
        limit=400 if opts.quick else None,
        mirror=opts.test_time_flip or any(t.mirror_view for _, t in configs.values()))
    lifted = lift_to_stages(images, encoder, {c.split_stage for c, _ in configs.values()})
    good = np.flatnonzero(images.ok)
    folds = 2 if opts.quick else opts.folds
    per_fold: dict[str, list[dict]] = {m: [] for m in configs}
    rng = np.random.default_rng(opts.seed)
    for held in _fold_ids(len(good), folds, opts.seed):
        test = good[held]
        rest = np.setdiff1d(good, test)
        val = rng.choice(rest, size=max(2, len(rest) // 10), replace=False)
        train = np.setdiff1d(rest, val)
        for name, (cfg, tcfg) in configs.items():
            at = lifted[cfg.split_stage]
            res = train_aligned(cfg, PairData(at.subset(train), train, texts), PairData(at.subset(val), val, texts),
                                tcfg, encoder=encoder, progress=opts.progress)
            per_fold[name].append(score_model(res.model, encoder, at.subset(test), test,
                                              TextFeatures(texts.clean[test], None), test,
                                              test_time_flip=opts.test_time_flip))
    out = {name: _fold_summary(per_fold[name]) for name in configs}
    out.update(paired_stats([f["i2t"]["acc@1"] for f in per_fold["baseline"]],
                            [f["i2t"]["acc@1"] for f in per_fold["crossclip"]]))
    out.update({"folds": folds, "items": int(len(good)), "skipped_images": int((~images.ok).sum()),
                "protocol": "5 folds over movies; poster (i2t) / overview (t2i) among held-out movies"})
    return out


def _fmt(block: dict | None, task: str, metric: str, std: bool = False) -> str:
    if not block or task not in block:
        return "-"
    value = block[task][metric]
    text = f"{100 * value:.1f}%" if metric != "n" else str(value)
    if std and f"{metric}_std" in block[task]:
        text += f" ± {100 * block[task][f'{metric}_std']:.1f}"
    return text


def markdown_table(report: dict) -> str:
    """Baseline vs CrossCLIP, in the shape of the reference table."""
    rows = ["| metric | CLIP-style baseline | CrossCLIP (ours) |", "|---|---|---|"]
    for task, label in (("i2t", "image→text"), ("t2i", "text→image"), ("i2i", "image→image"), ("i2item", "image→fused item")):
        for metric in ("acc@1", "mrr", "recall@10"):
            if task in report.get("crossclip", {}):
                rows.append(f"| closed set {label} {metric} | {_fmt(report.get('baseline'), task, metric)} | {_fmt(report.get('crossclip'), task, metric)} |")
    open_set = report.get("open_set")
    if open_set:
        for task, label in (("i2t", "image→text"), ("t2i", "text→image"), ("i2i", "image→image")):
            rows.append(f"| open set ({open_set['folds']} folds) {label} acc@1 | {_fmt(open_set['baseline'], task, 'acc@1', True)} | {_fmt(open_set['crossclip'], task, 'acc@1', True)} |")
        p, d = open_set.get("p_value"), open_set.get("cohens_d")
        rows.append(f"| open set i2t paired t-test p / Cohen's d | | {p if p is None else f'{p:.2g}'} / {d if d is None else f'{d:.2f}'} |")
        seeds = open_set.get("seeds")
        if seeds and seeds["n"] > 1:
            per_seed = {n: ", ".join(f"{100 * v:.1f}%" for v in seeds["per_seed_i2t_acc@1"][n]) for n in MODELS}
            rows.append(f"| open set image→text acc@1 of each of {seeds['n']} training seeds | {per_seed['baseline']} | {per_seed['crossclip']} |")
    ml = report.get("ml100k")
    if ml:
        for task, label in (("i2t", "poster→overview"), ("t2i", "overview→poster")):
            rows.append(f"| MovieLens ({ml['folds']} folds) {label} acc@1 | {_fmt(ml['baseline'], task, 'acc@1', True)} | {_fmt(ml['crossclip'], task, 'acc@1', True)} |")
            rows.append(f"| MovieLens {label} mrr | {_fmt(ml['baseline'], task, 'mrr', True)} | {_fmt(ml['crossclip'], task, 'mrr', True)} |")
        p = ml.get("p_value")
        rows.append(f"| MovieLens poster→overview paired t-test p | | {p if p is None else f'{p:.2g}'} |")
    train = report.get("training", {})
    if train:
        rows.append(f"| closed-set training time (min) | {train['baseline']['seconds'] / 60:.1f} | {train['crossclip']['seconds'] / 60:.1f} |")
    return "\n".join(rows) + "\n"
