"""Ranking at scale on the synthetic shop: time and peak memory per stage against the log size.

For each size: generate the shop (``crossrec_datasets.synthetic``), load it as engine inputs, split
each user's log by time (80/10/10), fit the engine (one seed, one ranker model) on the train part,
apply the validation period to the profiles, and evaluate on ``eval_users`` sampled users with a
positive test event (NDCG@10, Recall@10 over their candidates), scoring ``batch`` users at a time:
nothing holds a dense users x items matrix. Peak memory is the resident set size sampled every
50 ms during each stage (the process's, so it includes what earlier stages still hold).
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from crossrec_core.persist import atomic_write_text

__all__ = ["ScaleConfig", "StageCost", "ScaleRow", "ScaleReport", "run_scale_bench"]

STAGES = ("generate", "load", "fit", "apply_val", "evaluate")


@dataclass(frozen=True)
class ScaleConfig:
    """sizes: interaction counts; users: per size, ``size // interactions_per_user``."""

    sizes: tuple[int, ...] = (1_000_000, 10_000_000)
    items: int = 100_000
    interactions_per_user: int = 50
    eval_users: int = 10_000
    batch: int = 256  # users scored at a time
    epochs: int = 1
    seed: int = 0
    work_dir: str = "runs/rank_scale"
    keep_data: bool = False  # keep each generated shop folder
    threads: int | None = None  # torch and BLAS threads (None: their defaults); 1 on a shared machine, where
    # spinning BLAS/torch threads made fitting 3x slower (measured at 60k interactions, load average 10 on 2 cores)

    def __post_init__(self) -> None:
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads={self.threads!r}: must be >= 1 or None")
        if not self.sizes or any(not isinstance(s, int) or s < 1000 for s in self.sizes):
            raise ValueError(f"sizes={self.sizes!r}: need interaction counts >= 1000")
        for name in ("items", "interactions_per_user", "eval_users", "batch", "epochs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)!r}: must be >= 1")


@dataclass(frozen=True)
class StageCost:
    seconds: float  # wall time
    peak_rss_gib: float
    load_avg_1min: float  # at the end of the stage
    cpu_s: float = 0.0  # CPU time of the process (all threads) during the stage: on a shared machine wall time
    # measures the neighbours too (a 1M run at load 12 took longer than a 10M run beside it)


@dataclass(frozen=True)
class ScaleRow:
    interactions: int
    items: int
    users: int
    stages: dict  # stage -> StageCost as a dict
    total_s: float
    eval_users: int
    metrics: dict  # ndcg@10, recall@10 of the ranker on the sampled users
    train_samples: int


@dataclass(frozen=True)
class ScaleReport:
    rows: list = field(default_factory=list)  # ScaleRow as dicts
    growth: dict = field(default_factory=dict)  # stage -> exponent b of time ~ size^b between the first and last size
    json_path: str | None = None
    plot_path: str | None = None


def _rss_gib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**30


class _Stage:
    """Times a block and samples its peak resident memory in a background thread."""

    def __init__(self, costs: dict, name: str) -> None:
        self.costs, self.name = costs, name

    def _sample(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, _rss_gib())

    def __enter__(self):
        self.peak, self._stop = _rss_gib(), threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        self.t0, self.cpu0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc) -> None:
        seconds = time.perf_counter() - self.t0
        self._stop.set()
        self._thread.join()
        self.costs[self.name] = asdict(StageCost(seconds, max(self.peak, _rss_gib()), os.getloadavg()[0],
                                                 time.process_time() - self.cpu0))


def _top_k_metrics(scores: np.ndarray, relevant: list, seen: list, k: int = 10) -> dict[str, np.ndarray]:
    """NDCG@k and Recall@k per user with relevant items, equal to ``recsys.evaluate.per_user_metrics``
    for users with at least k candidates and no tie at the k-th score (seen items left out, ties by
    catalogue row), from each row's top k alone: no sort of the whole catalogue per user (that and
    the AUC's full ranking took a third of the evaluation)."""
    s = scores.copy()
    keep = np.array([len(r) > 0 for r in relevant], bool)
    hit = np.zeros(s.shape, bool)
    for b, (rel, done) in enumerate(zip(relevant, seen)):
        s[b, done] = -np.inf
        hit[b, rel] = True
        hit[b, done] = False  # a seen item is never counted, as there
    top = np.argpartition(-s, k - 1, axis=1)[:, :k]
    vals = np.take_along_axis(s, top, axis=1)
    top = np.take_along_axis(top, np.lexsort((top, -vals), axis=1), axis=1)  # score desc, then row asc
    gains = np.take_along_axis(hit, top, axis=1)
    disc = 1.0 / np.log2(np.arange(2, k + 2))
    n_rel = np.array([len(r) for r in relevant], np.float64)
    idcg = np.array([disc[: min(int(n), k)].sum() for n in n_rel])
    return {"ndcg@10": ((gains * disc).sum(1) / np.maximum(idcg, 1e-12))[keep],
            "recall@10": (gains.sum(1) / np.maximum(n_rel, 1))[keep]}


def _one_size(n: int, config: ScaleConfig, progress: bool) -> ScaleRow:
    from crossrec_datasets.synthetic import make_shop
    from recsys.data import chronological_split
    from recsys.engine import EngineConfig, EngineTrainingConfig, RankingEngine
    from recsys.evaluate import _rows_per_user
    from recsys.base import apply_log
    from recsys.profiles import ProfileStore
    from recsys.training import load_rank_inputs

    costs: dict = {}
    n_users = max(10, n // config.interactions_per_user)
    folder = Path(config.work_dir) / f"shop-{n}"
    t0 = time.perf_counter()
    with _Stage(costs, "generate"):
        make_shop(folder, n_items=config.items, n_users=n_users, n_interactions=n, seed=config.seed, progress=progress)
    with _Stage(costs, "load"):
        data = load_rank_inputs(str(folder), multimodal=False)
        split = chronological_split(data.log)
    engine_cfg = EngineConfig(multimodal=False, n_models=1)
    training = EngineTrainingConfig(epochs=config.epochs, seed=config.seed)
    engine = RankingEngine(data.catalogue, data.users, None, ProfileStore(None), engine_cfg, training)
    with _Stage(costs, "fit"):
        engine.fit(split.train, progress=progress)
    with _Stage(costs, "apply_val"):
        apply_log(engine.profiles, split.val, source="val")
    with _Stage(costs, "evaluate"):
        test_pos = split.test.filter(pl.col("positive"))
        candidates = sorted(test_pos["user_id"].unique().to_list())
        rng = np.random.default_rng(config.seed)
        users = sorted(rng.choice(candidates, size=min(config.eval_users, len(candidates)), replace=False).tolist())
        seen = [np.union1d(a, b) for a, b in zip(_rows_per_user(split.train, users, data.catalogue),
                                                 _rows_per_user(split.val, users, data.catalogue))]
        relevant = _rows_per_user(test_pos, users, data.catalogue)
        parts = []
        for s in range(0, len(users), config.batch):  # (batch, N) scores at a time, never (users, N)
            profiles = [engine.profiles.get(u) for u in users[s : s + config.batch]]
            scores = engine.score_users(profiles)
            parts.append(_top_k_metrics(scores, relevant[s : s + config.batch], seen[s : s + config.batch]))
        metrics = {m: float(np.mean(np.concatenate([p[m] for p in parts]))) for m in ("ndcg@10", "recall@10")}
    if not config.keep_data:
        shutil.rmtree(folder, ignore_errors=True)
    return ScaleRow(n, config.items, n_users, costs, time.perf_counter() - t0, len(users), metrics,
                    engine.train_stats.samples)


def _plot(rows: list[dict], path: Path) -> None:
    from crossrec_core.plots import pyplot, save_figure

    plt = pyplot()
    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(11, 4))
    sizes = [r["interactions"] for r in rows]
    for stage in STAGES:
        ax_t.plot(sizes, [r["stages"][stage]["seconds"] for r in rows], marker="o", label=stage)
        ax_m.plot(sizes, [r["stages"][stage]["peak_rss_gib"] for r in rows], marker="o", label=stage)
    for ax, label in ((ax_t, "seconds"), (ax_m, "peak RSS (GiB)")):
        ax.set_xscale("log")
        ax.set_yscale("log" if ax is ax_t else "linear")
        ax.set_xlabel("interactions")
        ax.set_ylabel(label)
        ax.legend(fontsize=8)
    ax_t.set_title("time per stage")
    ax_m.set_title("peak memory per stage")
    fig.tight_layout()
    save_figure(fig, path)


def run_scale_bench(config: ScaleConfig = ScaleConfig(), json_path: str | os.PathLike | None = None,
                    progress: bool = True) -> ScaleReport:
    """Run every size in turn (JSON rewritten after each, so a long run keeps what it measured)."""
    from contextlib import nullcontext

    import torch
    from threadpoolctl import threadpool_limits

    if config.threads is not None:
        torch.set_num_threads(config.threads)
    with threadpool_limits(config.threads) if config.threads is not None else nullcontext():
        return _run(config, json_path, progress)


def _run(config: ScaleConfig, json_path, progress: bool) -> ScaleReport:
    out = Path(config.work_dir)
    json_path = Path(json_path) if json_path else out / "rank_scale.json"
    plot_path = json_path.with_suffix(".png")
    rows: list[dict] = []
    report = ScaleReport()
    for n in config.sizes:
        rows.append(asdict(_one_size(n, config, progress)))
        growth = {}
        if len(rows) > 1:
            a, b = rows[0], rows[-1]
            ratio = np.log(b["interactions"] / a["interactions"])
            growth = {s: float(np.log(b["stages"][s]["seconds"] / max(a["stages"][s]["seconds"], 1e-9)) / ratio)
                      for s in STAGES}
        report = ScaleReport(rows, growth, str(json_path), str(plot_path))
        atomic_write_text(json_path, json.dumps({"config": asdict(config), **asdict(report)}, indent=2))
        _plot(rows, plot_path)
    return report

