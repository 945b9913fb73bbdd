"""Benchmark: ranker training throughput and ``recommend`` latency (one user, and batches)."""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from crossrec_core.reports import Report
from recsys.engine import EngineConfig, EngineTrainingConfig, RankingEngine
from recsys.profiles import ProfileStore

__all__ = ["RankingBenchConfig", "RankingBenchReport", "benchmark_ranking"]


@dataclass(frozen=True)
class RankingBenchConfig:
    model_dir: str | None = None  # a saved engine; None trains one (epochs below) on all of ``dataset``
    dataset: str = "ml100k"  # a data set name or a folder
    data_dir: str | None = None
    embedder_dir: str | None = None
    epochs: int = 1
    single_calls: int = 200  # per round
    rounds: int = 3  # the machine is shared: each round reports its own load average
    batch_sizes: tuple[int, ...] = (16, 64)
    batch_calls: int = 10
    k: int = 10
    seed: int = 0


@dataclass(frozen=True)
class RankingBenchReport(Report):
    device: str
    catalogue_size: int
    train_samples: int | None
    train_samples_per_s: float | None
    train_world_size: int | None
    single_p50_ms: float  # over all rounds
    single_p99_ms: float
    single_rounds: list  # per round: {"p50_ms", "p99_ms", "load_avg_1min"}
    batch: dict  # batch size -> {"p50_ms", "p99_ms", "users_per_s"}
    torch_threads: int

    def to_dict(self) -> dict:
        return asdict(self)

    def to_markdown(self) -> str:
        lines = [f"{self.catalogue_size:,} items on {self.device}, {self.torch_threads} torch threads", "",
                 "| call | p50 ms | p99 ms | users/s |", "|---|---:|---:|---:|",
                 f"| recommend (one user) | {self.single_p50_ms:.1f} | {self.single_p99_ms:.1f} | |"]
        lines += [f"| score {size} users | {b['p50_ms']:.1f} | {b['p99_ms']:.1f} | {b['users_per_s']:,.0f} |"
                  for size, b in self.batch.items()]
        if self.train_samples_per_s is not None:
            lines += ["", f"training: {self.train_samples:,} samples at {self.train_samples_per_s:,.0f}/s "
                          f"(world size {self.train_world_size})"]
        return "\n".join(lines)


def _percentiles(times: list[float]) -> tuple[float, float]:
    ms = np.array(times) * 1000.0
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def benchmark_ranking(config: RankingBenchConfig = RankingBenchConfig(), embedder: Any = None, json_path: str | os.PathLike | None = None,
                      progress: bool = True) -> RankingBenchReport:
    """Time training (unless ``model_dir`` is given) and ``recommend`` on ``config.dataset``."""
    import torch

    from recsys.training import load_rank_inputs

    if config.model_dir is not None:
        engine = RankingEngine.from_pretrained(config.model_dir)
    else:
        data = load_rank_inputs(config.dataset, config.data_dir, embedder=embedder, embedder_dir=config.embedder_dir)
        engine = RankingEngine(data.catalogue, data.users, data.features, ProfileStore(None),
                               EngineConfig(multimodal=data.features is not None), EngineTrainingConfig(epochs=config.epochs))
        engine.fit(data.log, progress=progress)
    users = engine.profiles.users()
    rng = np.random.default_rng(config.seed)
    for u in users[:5]:  # warm-up
        engine.recommend(u, k=config.k)
    single, rounds = [], []
    for _ in range(config.rounds):
        times = []
        for u in rng.choice(users, size=config.single_calls):
            t = time.perf_counter()
            engine.recommend(int(u), k=config.k)
            times.append(time.perf_counter() - t)
        p50, p99 = _percentiles(times)
        rounds.append({"p50_ms": p50, "p99_ms": p99, "load_avg_1min": os.getloadavg()[0]})
        single += times
    batch = {}
    for size in config.batch_sizes:
        times = []
        for _ in range(config.batch_calls):
            chosen = [int(u) for u in rng.choice(users, size=size, replace=False)]
            t = time.perf_counter()
            scores = engine.score(chosen).scores
            np.argpartition(-scores, config.k, axis=1)[:, : config.k]
            times.append(time.perf_counter() - t)
        p50, p99 = _percentiles(times)
        batch[str(size)] = {"p50_ms": p50, "p99_ms": p99, "users_per_s": size / float(np.median(times))}
    stats = engine.train_stats
    p50, p99 = _percentiles(single)
    report = RankingBenchReport(
        device=torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"cpu ({os.cpu_count()} cores)",
        catalogue_size=len(engine.catalogue),
        train_samples=None if stats is None else stats.samples,
        train_samples_per_s=None if stats is None else stats.samples_per_s,
        train_world_size=None if stats is None else stats.world_size,
        single_p50_ms=p50, single_p99_ms=p99, single_rounds=rounds, batch=batch, torch_threads=torch.get_num_threads(),
    )
    if json_path is not None:
        report.to_json(json_path)
    return report
