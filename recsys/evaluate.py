"""Offline ranking evaluation on a data set (MovieLens 100K by default, or a user's folder):
per-user chronological 80/10/10 split, full ranking over unseen items, Recall@10/20, NDCG@10 and AUC for popularity, ALS (tuned on validation), BPR, the
ranker without multimodal features and the full ranker; plus a cold-item slice.

Protocol. Every model is fitted on the train split. ALS hyper-parameters are picked by validation
NDCG@10. For the test figures the validation events are applied to the live profile store first
(as the streaming layer would), so every model ranks with train + val history and train + val items
are excluded. Cold-item slice: items with fewer than ``COLD_THRESHOLD`` train interactions; each
user's cold test items are ranked among all unseen cold items.

Ranker training is not deterministic and the cold slice has few users, so the two ranker rows are
averaged over ``RankingEvalConfig.seeds`` independently seeded trainings: each user's metric is the mean
over the seeds, and the per-seed figures are reported beside it.
"""

from __future__ import annotations

import itertools
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import polars as pl
from scipy.stats import rankdata

from recsys.base import Recommender
from recsys.candidates import ALSConfig, ALSRecommender, ALSTrainingConfig, BPRRecommender, PopularityRecommender
from recsys.data import Split, chronological_split
from recsys.engine import EngineConfig, EngineTrainingConfig, RankingEngine
from recsys.profiles import ProfileStore, interactions_from_ratings
from crossrec_core.reports import Report

__all__ = [
    "COLD_THRESHOLD", "MODEL_ROWS", "RankingEvalConfig", "RankingEvalReport",
    "ranking_metrics", "per_user_metrics", "paired_bootstrap", "gain_gap_bootstrap", "evaluate_ranking",
]

COLD_THRESHOLD = 5
MODEL_ROWS = ("popularity", "als", "bpr", "ranker_no_mm", "ranker")
METRICS = ("ndcg@10", "recall@10", "recall@20", "auc")


@dataclass(frozen=True)
class RankingEvalConfig:
    dataset: str = "ml100k"  # a data set name or a folder (crossrec_datasets.open_dataset)
    data_dir: str | None = None
    out_dir: str = "runs/rank_eval"
    max_users: int | None = None  # evaluate on the first users only (tests)
    als_factors: tuple[int, ...] = (32, 64, 128)
    als_alpha: tuple[float, ...] = (2.0, 10.0, 40.0)
    als_regularization: tuple[float, ...] = (0.01, 0.05, 0.3)
    als_iterations: int = 15
    engine: EngineConfig = EngineConfig()
    training: EngineTrainingConfig = EngineTrainingConfig()
    embedder_dir: str | None = None  # aligned item embedder (None: the default one)
    seeds: int = 5  # independently seeded trainings of each ranker row, averaged per user

    def __post_init__(self) -> None:
        if not isinstance(self.seeds, int) or self.seeds < 1:
            raise ValueError(f"seeds={self.seeds!r}: at least 1 training per ranker row is required")


@dataclass(frozen=True)
class RankingEvalReport(Report):
    """Figures of every model row (``results``) and the files written beside them."""

    results: dict  # {model: {metric: value}, "cold_items": {model: {...}}, "validation": ..., ...}
    json_path: Path
    markdown_path: Path
    plot_path: Path

    def to_dict(self) -> dict:
        return self.results

    def to_markdown(self) -> str:
        return _markdown(self.results)


def ranking_metrics(scores: np.ndarray, relevant: Sequence[np.ndarray], excluded: Sequence[np.ndarray]) -> dict[str, float]:
    """Mean NDCG@10, Recall@10/20 and AUC over users with relevant items (see ``per_user_metrics``)."""
    return _means(per_user_metrics(scores, relevant, excluded))


def _means(per_user: dict[str, np.ndarray]) -> dict[str, float]:
    return {m: float(np.mean(v)) if len(v) else float("nan") for m, v in per_user.items()} | {"users": len(per_user["ndcg@10"])}


def per_user_metrics(scores: np.ndarray, relevant: Sequence[np.ndarray], excluded: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
    """Per-user NDCG@10, Recall@10/20 and AUC, in user order, for users with relevant items.

    ``scores`` (B, N); ``relevant[b]`` / ``excluded[b]``: catalogue rows of user b's held-out items
    and of items not to rank (seen, or outside the slice). Non-candidates (-inf) rank last, tied.
    """
    disc = 1.0 / np.log2(np.arange(2, 12))
    out = {m: [] for m in METRICS}
    for b, rel in enumerate(relevant):
        if len(rel) == 0:
            continue
        s = scores[b].astype(np.float64).copy()
        s[excluded[b]] = np.nan
        eligible = ~np.isnan(s)
        s[~eligible] = -np.inf
        order = np.argsort(-s, kind="stable")
        hit = np.zeros(len(s), bool)
        hit[rel] = True
        top = hit[order[:20]] & eligible[order[:20]]
        idcg = disc[: min(len(rel), 10)].sum()
        out["ndcg@10"].append(float((top[:10] * disc).sum() / idcg))
        out["recall@10"].append(float(top[:10].sum() / len(rel)))
        out["recall@20"].append(float(top.sum() / len(rel)))
        ranks = rankdata(s[eligible])  # average ranks: ties count half
        pos = hit[eligible]
        n_pos, n_neg = pos.sum(), (~pos).sum()
        if n_pos and n_neg:
            out["auc"].append(float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)))
    return {m: np.asarray(v, np.float64) for m, v in out.items()}


def paired_bootstrap(a: np.ndarray, b: np.ndarray, ratio: bool = False, n_resamples: int = 2000,
                     seed: int = 0) -> dict[str, float]:
    """Mean(a) - mean(b) (or mean(a) / mean(b) with ``ratio``) over the same users (n,), with a 95%
    interval from resampling users, and the share of resamples where a does not beat b."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape or a.ndim != 1 or len(a) == 0:
        raise ValueError(f"a and b must be equally long non-empty per-user vectors; got shapes {a.shape} and {b.shape}")
    idx = np.random.default_rng(seed).integers(0, len(a), size=(n_resamples, len(a)))
    ma, mb = a[idx].mean(axis=1), b[idx].mean(axis=1)
    stat = ma / np.maximum(mb, 1e-12) if ratio else ma - mb
    point = a.mean() / max(b.mean(), 1e-12) if ratio else a.mean() - b.mean()
    lo, hi = np.quantile(stat, [0.025, 0.975])
    return {"value": float(point), "ci95_low": float(lo), "ci95_high": float(hi),
            "p_not_better": float(np.mean(stat <= (1.0 if ratio else 0.0))), "users": int(len(a))}


def gain_gap_bootstrap(gain_all: np.ndarray, gain_cold: np.ndarray, cold_users: np.ndarray,
                       n_resamples: int = 2000, seed: int = 0) -> dict[str, float]:
    """Mean cold-slice gain minus mean overall gain, resampling the same users for both.

    ``gain_all`` (U,): per-user gain over all test users; ``gain_cold`` (C,): per-user gain of the
    users with cold test items, who are ``gain_all``'s positions ``cold_users`` (C,). A resample
    draws U users; its cold gain is over the drawn users that are in the cold slice.
    """
    gain_all, gain_cold = np.asarray(gain_all, np.float64), np.asarray(gain_cold, np.float64)
    cold_users = np.asarray(cold_users, np.int64)
    if len(gain_cold) != len(cold_users) or len(gain_cold) == 0 or len(gain_all) == 0:
        raise ValueError(f"gain_cold ({len(gain_cold)}) must be non-empty and as long as cold_users ({len(cold_users)})")
    full_cold = np.full(len(gain_all), np.nan)
    full_cold[cold_users] = gain_cold
    idx = np.random.default_rng(seed).integers(0, len(gain_all), size=(n_resamples, len(gain_all)))
    stat = np.nanmean(full_cold[idx], axis=1) - gain_all[idx].mean(axis=1)
    lo, hi = np.quantile(stat, [0.025, 0.975])
    return {"value": float(gain_cold.mean() - gain_all.mean()), "ci95_low": float(lo), "ci95_high": float(hi),
            "p_not_better": float(np.mean(stat <= 0.0)), "users": int(len(gain_all)), "cold_users": int(len(gain_cold))}


def _positions_among(outer: Sequence[np.ndarray], inner: Sequence[np.ndarray]) -> np.ndarray:
    """Positions, among the users with ``outer`` items, of the users with ``inner`` items (inner
    is a subset of outer per user): how per-user arrays of the two slices line up."""
    has_outer = np.flatnonzero([len(r) > 0 for r in outer])
    return np.searchsorted(has_outer, np.flatnonzero([len(r) > 0 for r in inner]))


def _rows_per_user(frame: pl.DataFrame, users: list[int], catalogue) -> list[np.ndarray]:
    by = dict(zip(*frame.group_by("user_id").agg(pl.col("item_id")).to_dict(as_series=False).values()))
    out = []
    for u in users:
        pos = catalogue.positions(by.get(u, []))
        out.append(np.unique(pos[pos >= 0]))
    return out


def _score(model: Recommender, users: list[int], all_items: bool = False) -> np.ndarray:
    profiles = [model.profiles.get(u) for u in users]
    if isinstance(model, RankingEngine):
        return model.score_users(profiles, all_items=all_items)
    return model.score_users(profiles)


def evaluate_ranking(config: RankingEvalConfig = RankingEvalConfig(), embedder: Any = None,
                     progress: bool = True) -> RankingEvalReport:
    """Run the whole evaluation on ``config.dataset`` and write ``metrics.json``, ``metrics.md`` and
    ``metrics.png``. Relevant items are the held-out events the data set's positives setting counts
    (MovieLens: every rating); users without such an event in the test period are not scored."""
    from recsys.training import load_rank_inputs

    t0 = time.perf_counter()
    timings: dict[str, float] = {"load_avg_1min_at_start": os.getloadavg()[0]}
    data = load_rank_inputs(config.dataset, config.data_dir, embedder=embedder, embedder_dir=config.embedder_dir,
                            max_users=config.max_users, multimodal=config.engine.multimodal)
    catalogue, users_table, feats = data.catalogue, data.users, data.features
    split = chronological_split(data.log)
    timings["load_and_embed_s"] = time.perf_counter() - t0
    positive = lambda frame: frame.filter(pl.col("positive"))  # noqa: E731
    users = sorted(positive(split.test)["user_id"].unique().to_list())
    train_seen = _rows_per_user(split.train, users, catalogue)
    val_rel = _rows_per_user(positive(split.val), users, catalogue)
    test_rel = _rows_per_user(positive(split.test), users, catalogue)

    # ALS tuned on validation only.
    t = time.perf_counter()
    shared = ProfileStore(None)
    validation: dict[str, dict] = {}
    best_cfg, best = None, -1.0
    als_training = ALSTrainingConfig(config.als_iterations)
    grid = [ALSConfig(f, 0.05, a) for f, a in itertools.product(config.als_factors, config.als_alpha)]
    for cfg in _progress(grid, progress, "tune ALS (factors x alpha)"):
        best_cfg, best = _try_als(cfg, als_training, catalogue, shared, split, users, val_rel, train_seen, validation,
                                  best_cfg, best)
    for reg in _progress([r for r in config.als_regularization if r != 0.05], progress, "tune ALS (regularization)"):
        best_cfg, best = _try_als(replace(best_cfg, regularization=reg), als_training, catalogue, shared, split, users,
                                  val_rel, train_seen, validation, best_cfg, best)
    timings["als_tuning_s"] = time.perf_counter() - t
    engine_cfg = replace(config.engine, als_factors=best_cfg.factors, als_alpha=best_cfg.alpha,
                         als_regularization=best_cfg.regularization)
    training = replace(config.training, als_iterations=als_training.iterations)
    baselines: dict[str, Recommender] = {
        "popularity": PopularityRecommender(catalogue, ProfileStore(None)),
        "als": ALSRecommender(catalogue, ProfileStore(None), best_cfg, als_training),
        "bpr": BPRRecommender(catalogue, ProfileStore(None), engine_cfg.bpr(), training.bpr()),
    }
    # Ranker seeds never overlap: each training is an ensemble of n_models consecutive seeds.
    engine_seeds = [training.seed + k * engine_cfg.n_models for k in range(config.seeds)]
    # without item features (a folder with no aligned model yet) the "ranker" row is the ranker without them
    ranker_cfgs = {"ranker_no_mm": (replace(engine_cfg, multimodal=False), None),
                   "ranker": (replace(engine_cfg, multimodal=feats is not None), feats)}
    counts = np.bincount(np.concatenate(train_seen + [np.zeros(0, np.int64)]).astype(np.int64), minlength=len(catalogue))
    cold_items = np.flatnonzero(counts < COLD_THRESHOLD)
    not_cold = np.setdiff1d(np.arange(len(catalogue)), cold_items)
    seen = [np.union1d(a, b) for a, b in zip(train_seen, val_rel)]
    cold_rel = [np.intersect1d(r, cold_items) for r in test_rel]
    cold_excluded = [np.union1d(s_, not_cold) for s_ in seen]
    val_events = interactions_from_ratings(split.val, source="val")

    def run(model: Recommender) -> tuple[dict, dict, float]:
        """Fit on train, apply the validation period, score test: per-user metrics (all, cold), fit s."""
        t = time.perf_counter()
        if isinstance(model, RankingEngine):
            model.fit(split.train, progress=progress)
        else:
            model.fit(split.train)
        fit_s = time.perf_counter() - t
        model.profiles.apply(val_events)  # the validation period has happened before the test period
        scores = _score(model, users)
        cold_scores = _score(model, users, all_items=True) if isinstance(model, RankingEngine) else scores
        return (per_user_metrics(scores, test_rel, seen), per_user_metrics(cold_scores, cold_rel, cold_excluded), fit_s)

    results: dict[str, Any] = {"cold_items": {}}
    ndcg: dict[str, np.ndarray] = {}  # per-user NDCG@10 of each model, for paired bootstraps
    cold_ndcg: dict[str, np.ndarray] = {}
    per_seed: dict[str, dict[str, list[float]]] = {}
    jobs = [(name, None) for name in baselines] + [(name, s_) for name in ranker_cfgs for s_ in engine_seeds]
    runs: dict[str, list[tuple[dict, dict, float]]] = {}
    for name, seed in _progress(jobs, progress, "fit + score"):
        t = time.perf_counter()
        if seed is None:
            model = baselines[name]
        else:
            cfg, item_feats = ranker_cfgs[name]
            model = RankingEngine(catalogue, users_table, item_feats, ProfileStore(None), cfg, replace(training, seed=seed))
        runs.setdefault(name, []).append(run(model))
        timings[f"{name}_s"] = timings.get(f"{name}_s", 0.0) + time.perf_counter() - t
        if isinstance(model, RankingEngine):
            results.setdefault(name, {}).update(ranker_epochs=model.train_stats.epochs,
                                                train_samples_per_s=model.train_stats.samples_per_s)
    for name, fits in runs.items():
        all_users = {m: np.mean([f[0][m] for f in fits], axis=0) for m in METRICS}
        cold_users = {m: np.mean([f[1][m] for f in fits], axis=0) for m in METRICS}
        results[name] = results.get(name, {}) | _means(all_users) | {"fit_s": float(np.mean([f[2] for f in fits]))}
        results["cold_items"][name] = _means(cold_users)
        ndcg[name], cold_ndcg[name] = all_users["ndcg@10"], cold_users["ndcg@10"]
        per_seed[name] = {"ndcg@10": [float(f[0]["ndcg@10"].mean()) for f in fits],
                          "cold_ndcg@10": [float(f[1]["ndcg@10"].mean()) for f in fits]}
    gains = {k: (np.subtract(per_seed["ranker"][k], per_seed["ranker_no_mm"][k])) for k in ("ndcg@10", "cold_ndcg@10")}
    results["seeds"] = {
        "n": config.seeds, "engine_seeds": engine_seeds, "per_seed": per_seed,
        "mm_gain_ndcg@10": gains["ndcg@10"].tolist(), "mm_gain_cold_ndcg@10": gains["cold_ndcg@10"].tolist(),
        "seeds_cold_gain_larger": int(np.sum(gains["cold_ndcg@10"] > gains["ndcg@10"])),
    }
    results["validation"] = validation
    results["als_best"] = {"factors": best_cfg.factors, "alpha": best_cfg.alpha,
                           "regularization": best_cfg.regularization, "iterations": als_training.iterations}
    results["protocol"] = {"dataset": data.dataset.name, "positives": data.dataset.positives.model_dump(),
                           "split": "per-user chronological 80/10/10", "test_users": len(users),
                           "cold_threshold": COLD_THRESHOLD, "n_cold_items": int(len(cold_items)),
                           "ranker_seeds": config.seeds,
                           "item_features": None if feats is None else feats.fingerprint}
    als_ndcg = results["als"]["ndcg@10"]
    results["targets"] = {
        "ranker_over_als_ndcg@10": results["ranker"]["ndcg@10"] / als_ndcg if als_ndcg else float("nan"),
        "mm_gain_ndcg@10": results["ranker"]["ndcg@10"] - results["ranker_no_mm"]["ndcg@10"],
        "mm_gain_cold_ndcg@10": results["cold_items"]["ranker"]["ndcg@10"] - results["cold_items"]["ranker_no_mm"]["ndcg@10"],
    }
    # How sure each figure is: users resampled with replacement (the cold slice has few users).
    results["bootstrap"] = {
        "ranker_over_als_ndcg@10": paired_bootstrap(ndcg["ranker"], ndcg["als"], ratio=True),
        "mm_gain_ndcg@10": paired_bootstrap(ndcg["ranker"], ndcg["ranker_no_mm"]),
        "mm_gain_cold_ndcg@10": paired_bootstrap(cold_ndcg["ranker"], cold_ndcg["ranker_no_mm"]),
        "cold_gain_minus_overall_gain": gain_gap_bootstrap(
            ndcg["ranker"] - ndcg["ranker_no_mm"], cold_ndcg["ranker"] - cold_ndcg["ranker_no_mm"],
            _positions_among(test_rel, cold_rel)),
    }
    timings["total_s"] = time.perf_counter() - t0
    timings["load_avg_1min_at_end"] = os.getloadavg()[0]
    results["timings"] = timings
    return _write(results, Path(config.out_dir))


def _try_als(cfg, training, catalogue, shared, split: Split, users, val_rel, train_seen, validation, best_cfg, best):
    model = ALSRecommender(catalogue, shared, cfg, training).fit(split.train)
    m = ranking_metrics(_score(model, users), val_rel, train_seen)
    validation[f"als f={cfg.factors} a={cfg.alpha} r={cfg.regularization}"] = m
    return (cfg, m["ndcg@10"]) if m["ndcg@10"] > best else (best_cfg, best)


def _progress(items: list, enabled: bool, desc: str):
    from tqdm import tqdm

    return tqdm(items, desc=desc, disable=not enabled, leave=False)


def _write(results: dict, out_dir: Path) -> RankingEvalReport:
    from crossrec_core.persist import atomic_write_text
    from crossrec_core.plots import pyplot, save_figure

    plt = pyplot()

    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path, png_path = out_dir / "metrics.json", out_dir / "metrics.md", out_dir / "metrics.png"
    report = RankingEvalReport(results, json_path, md_path, png_path)
    report.to_json(json_path)
    atomic_write_text(md_path, report.to_markdown())
    sd = results["seeds"]
    fig, axes = plt.subplots(1, 3, figsize=(16, 4), gridspec_kw={"width_ratios": [2, 2, 1.2]})
    for ax, (title, rows) in zip(axes, (("all items", results), ("cold items", results["cold_items"]))):
        x = np.arange(len(MODEL_ROWS))
        for i, metric in enumerate(METRICS[:3]):
            ax.bar(x + (i - 1) * 0.27, [rows[m][metric] for m in MODEL_ROWS], 0.27, label=metric)
        ax.set_xticks(x, MODEL_ROWS, rotation=20)
        ax.set_title(f"{results['protocol']['dataset']} test, {title}")
        ax.legend()
    ax = axes[2]
    gain_keys = {"all items": "mm_gain_ndcg@10", "cold items": "mm_gain_cold_ndcg@10"}
    for i, key in enumerate(gain_keys.values()):
        ax.scatter(np.full(sd["n"], i), sd[key], alpha=0.7)
        ax.hlines(np.mean(sd[key]), i - 0.25, i + 0.25, colors="k")
    ax.axhline(0.0, color="grey", lw=0.8)
    ax.set_xticks(range(len(gain_keys)), list(gain_keys))
    ax.set_xlim(-0.6, 1.6)
    ax.set_title("multimodal gain per seed\n(NDCG@10; bar: mean)")
    fig.tight_layout()
    save_figure(fig, png_path)
    return report


def _markdown(results: dict) -> str:
    lines = []
    for title, rows in (("All test items", results), ("Cold items (< 5 train interactions)", results["cold_items"])):
        lines += [f"### {title}", "", "| model | " + " | ".join(METRICS) + " | users |",
                  "|---|" + "---|" * (len(METRICS) + 1)]
        lines += [f"| {m} | " + " | ".join(f"{rows[m][k]:.4f}" for k in METRICS) + f" | {rows[m]['users']} |"
                  for m in MODEL_ROWS]
        lines.append("")
    t = results["targets"]
    lines.append(f"ranker / ALS NDCG@10: {t['ranker_over_als_ndcg@10']:.3f}; multimodal gain NDCG@10: "
                 f"{t['mm_gain_ndcg@10']:+.4f} (cold slice {t['mm_gain_cold_ndcg@10']:+.4f})")
    sd = results["seeds"]
    lines += ["", f"Ranker rows: per-user mean over {sd['n']} seeded trainings (engine seeds {sd['engine_seeds']}); "
              "multimodal gain per seed, all items: " + ", ".join(f"{g:+.4f}" for g in sd["mm_gain_ndcg@10"])
              + "; cold items: " + ", ".join(f"{g:+.4f}" for g in sd["mm_gain_cold_ndcg@10"])
              + f" (cold gain larger in {sd['seeds_cold_gain_larger']} of {sd['n']})"]
    lines += ["", "Paired bootstrap over users (2,000 resamples): " + "; ".join(
        f"{k} {v['value']:.4f} [95% CI {v['ci95_low']:.4f}, {v['ci95_high']:.4f}], P(not better) {v['p_not_better']:.3f}"
        for k, v in results["bootstrap"].items())]
    return "\n".join(lines) + "\n"
