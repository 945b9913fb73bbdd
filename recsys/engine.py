"""The two-stage engine: candidates (ALS, BPR, ANN over aligned item embeddings, popularity) ranked
by the TorchRec ranker on collaborative, genre, demographic and multimodal features.

The ranker is trained without leaking its labels into its features: each user's log is cut in
time; ALS/BPR/profiles are fitted on the earlier part and the later part gives the positive labels,
each against negatives drawn from the user's candidates (a listwise softmax over what serving
ranks); positives of cold items also come in groups against cold negatives, so ranking among cold
items is learnt too. Several rankers trained with different seeds are averaged. The candidate
models are then refitted on the whole log for serving, and every request reads the live
``ProfileStore``. A request computes the catalogue-wide signals once and reuses
them for candidates, ranker features and the batched feature-group explanation.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import numpy as np
import polars as pl
import torch

from recsys.base import POPULARITY, Recommender, apply_log
from recsys.candidates import (ALSConfig, ALSRecommender, ALSTrainingConfig, AnnCandidates, BPRConfig, BPRRecommender,
                               BPRTrainingConfig)
from recsys.data import Catalogue, ItemFeatures, ItemTrend, UserTable, chronological_split
from recsys.profiles import ProfileStore, UserProfile
from recsys.ranker import (
    FEATURE_GROUPS,
    SMALL_BATCH,
    RankerBatch,
    RankerConfig,
    RankerEnsemble,
    TrainStats,
    torch_threads,
    train_ranker,
)
from crossrec_core.errors import EmbeddingDimensionError, ModelLoadError
from crossrec_core.persist import atomic_directory, atomic_write_text, saved_kind

__all__ = ["EngineConfig", "EngineTrainingConfig", "RankingEngine"]

_KIND = "recsys.engine"
MODULES_FILE = "modules.json"  # the children: [{"name", "path", "kind"}], as sentence-transformers lists its modules
ENGINE_FILE = "engine.json"  # the engine's own non-array state: occupations, item-feature fingerprint


@dataclass(frozen=True)
class EngineConfig:
    """What a trained engine is: its features, candidates and model sizes (saved as ``config.json``)."""

    multimodal: bool = True  # use the aligned image/text item embeddings and the profile vector
    # Multimodal vectors given to the ranker besides the profile-item cosines: "product" (profile
    # x fused item, D), "raw" (fused, image, text item vectors and the profile, 4D) or "none".
    mm_vectors: str = "none"
    n_per_source: int = 100  # candidates taken from each source before ranking
    embedding_dim: int = 16
    id_embeddings: bool = True  # per-user and per-item embeddings (False: one shared row each)
    # Cold items (validation, 4 runs each: cold_groups 4 made the multimodal gain on cold items
    # positive every time; id dropout and the shared row for cold items did not help consistently).
    cold_count: int = 5  # items with fewer interactions than this in the fitted log are cold
    cold_id_row: bool = False  # cold items score with the unknown-item row: their own rows barely train
    n_models: int = 3  # rankers trained with seeds seed, seed + 1, ...; their logits are averaged (validation:
    # 3 lifted NDCG@10 over ALS from 1.19x to 1.26x; 5 did no better)
    trend_days: float = 30.0  # window of the item-trend feature
    als_factors: int = 64
    als_regularization: float = 0.05
    als_alpha: float = 10.0
    bpr_factors: int = 64

    def __post_init__(self) -> None:
        if self.mm_vectors not in MM_VECTORS:
            raise ValueError(f"mm_vectors={self.mm_vectors!r}: allowed {MM_VECTORS}")
        if self.n_per_source < 1:
            raise ValueError(f"n_per_source={self.n_per_source}: must be >= 1")
        if self.cold_count < 0 or self.n_models < 1:
            raise ValueError(f"cold_count={self.cold_count}, n_models={self.n_models}: need cold_count >= 0, n_models >= 1")

    def als(self) -> ALSConfig:
        return ALSConfig(self.als_factors, self.als_regularization, self.als_alpha)

    def bpr(self) -> BPRConfig:
        return BPRConfig(self.bpr_factors)


@dataclass(frozen=True)
class EngineTrainingConfig:
    """How the engine is trained (saved as ``training_config.json``, not needed to serve it)."""

    label_fraction: float = 0.2  # last share of each user's log used as ranker labels
    negatives: int = 15  # per positive, drawn from the user's candidates (what serving ranks)
    random_negatives: float = 1 / 3  # share of the negatives drawn from all unseen items instead (tuned on validation)
    loss: str = "softmax"  # "softmax": one positive against its negatives; "logistic": pointwise
    epochs: int = 2  # tuned on the validation split; at most this many with early stopping
    held_out: float = 0.0  # share of the label groups kept out for early stopping (0: off; the held-out
    # loss fell while validation NDCG dropped, so a fixed epoch count tuned on validation is used)
    batch_size: int = 2048  # rows per step
    lr: float = 3e-3
    weight_decay: float = 1e-4
    item_id_dropout: float = 0.0  # share of training rows scored with the unknown-item row (DropoutNet)
    cold_groups: int = 4  # extra training groups per cold positive, with negatives drawn from unseen cold items
    als_iterations: int = 15
    bpr_iterations: int = 100
    als_max_samples: int | None = 50_000_000  # ALS work per fit; see ALSTrainingConfig.max_samples
    bpr_max_samples: int | None = 50_000_000  # BPR SGD steps per fit; see BPRTrainingConfig.max_samples
    # Users whose label events train the ranker, drawn (seeded) when more have labels: a fixed example
    # budget, so building and training the ranker's examples stops growing with the log (ML-100K's
    # 943 users all train; a 10M-event shop's 200k users give 10,000 users' examples). None: all.
    max_label_users: int | None = 10_000
    seed: int = 0

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"loss={self.loss!r}: allowed {LOSSES}")
        if not 0.0 <= self.random_negatives <= 1.0:
            raise ValueError(f"random_negatives={self.random_negatives}: must be a share in [0, 1]")
        if self.negatives < 1:
            raise ValueError(f"negatives={self.negatives}: must be >= 1")
        if not 0.0 <= self.item_id_dropout < 1.0:
            raise ValueError(f"item_id_dropout={self.item_id_dropout}: must be a share in [0, 1)")
        if self.cold_groups < 0:
            raise ValueError(f"cold_groups={self.cold_groups}: must be >= 0")
        if self.max_label_users is not None and self.max_label_users < 1:
            raise ValueError(f"max_label_users={self.max_label_users}: must be >= 1 or None (every user)")

    def als(self) -> ALSTrainingConfig:
        return ALSTrainingConfig(self.als_iterations, self.seed, self.als_max_samples)

    def bpr(self) -> BPRTrainingConfig:
        return BPRTrainingConfig(iterations=self.bpr_iterations, seed=self.seed, max_samples=self.bpr_max_samples)


LOSSES = ("softmax", "logistic")
MM_VECTORS = ("product", "raw", "none")
RECENT_ITEMS = 10  # latest history items the "recent" similarity feature compares with
SCORE_ROWS = 65_536  # ranker rows scored per chunk in batch scoring


class _Stage:
    """Candidate models and the item trend fitted on one stretch of the log, sharing one profile store."""

    def __init__(self, catalogue: Catalogue, profiles: ProfileStore, config: EngineConfig,
                 training: EngineTrainingConfig) -> None:
        self.als = ALSRecommender(catalogue, profiles, config.als(), training.als())
        self.bpr = BPRRecommender(catalogue, profiles, config.bpr(), training.bpr())
        self.trend: ItemTrend | None = None
        self._catalogue, self._trend_days = catalogue, config.trend_days

    def fit(self, log: pl.DataFrame, profile_log: pl.DataFrame | None = None) -> "_Stage":
        """Fit on ``log``; the shared store receives ``profile_log`` (default ``log``) once, with the
        catalogue's categories (the engine set them, with its item vectors, when it made the store)."""
        apply_log(self.als.profiles, log if profile_log is None else profile_log)
        self.als.fit(log, profiles=False)
        self.bpr.fit(log, profiles=False)
        self.trend = ItemTrend.fit(log, self._catalogue, self._trend_days)
        return self


@dataclass(frozen=True)
class _Signals:
    """Per-request catalogue-wide scores, computed once and shared by candidates, features and
    explanations: als, als_z, bpr_z, trend, recent (B, N)."""

    als: np.ndarray
    als_z: np.ndarray
    bpr_z: np.ndarray
    trend: np.ndarray
    recent: np.ndarray


def _zscore(x: np.ndarray) -> np.ndarray:
    return (x - x.mean(axis=1, keepdims=True)) / (x.std(axis=1, keepdims=True) + 1e-6)


def _choice_excluding(rng: np.random.Generator, pool: np.ndarray, excluded: np.ndarray, size) -> np.ndarray:
    """``rng.choice(np.setdiff1d(pool, excluded), size)`` (same draws from the same generator state)
    without building the difference: per training user that was a sort of the whole catalogue.
    ``pool`` sorted and unique; ``excluded`` sorted and unique (as ``np.union1d`` returns)."""
    at = np.searchsorted(pool, excluded)
    hit = at < len(pool)
    gaps = at[hit][pool[at[hit]] == excluded[hit]]  # pool positions taken out, ascending
    j = rng.choice(len(pool) - len(gaps), size=size)
    # The j-th remaining position is j plus the number of gaps at or before it.
    return pool[j + np.searchsorted(gaps - np.arange(len(gaps)), j, side="right")]


class RankingEngine(Recommender):
    """Candidates + TorchRec ranker; ``recommend`` explains each item (sources, top feature group)."""

    name = "ranker"

    def __init__(self, catalogue: Catalogue, users: UserTable, item_features: ItemFeatures | None = None,
                 profiles: ProfileStore | None = None, config: EngineConfig = EngineConfig(),
                 training: EngineTrainingConfig = EngineTrainingConfig()) -> None:
        super().__init__(catalogue, profiles)
        if config.multimodal:
            if item_features is None:
                raise ValueError("config.multimodal=True needs item_features (aligned item embeddings)")
            if not np.array_equal(item_features.item_ids, catalogue.item_ids):
                raise EmbeddingDimensionError("item_features rows do not match the catalogue's item ids (same order)")
        self.users = users
        self.item_features = item_features if config.multimodal else None
        self.config = config
        self.training = training
        self.stage = _Stage(catalogue, self.profiles, config, training)
        self.user_rows: dict[int, int] = {}
        self.ranker: RankerEnsemble | None = None
        self.train_stats: TrainStats | None = None
        # Item-side inputs, built once: padded genre ids (N, G_max; -1 = none), genre flags and
        # the multimodal item block (N, 3D).
        flags = catalogue.genres
        self._genre_pad = np.full((len(catalogue), max(int(flags.sum(1).max()), 1)), -1, np.int64)
        for r, g in enumerate(flags):
            self._genre_pad[r, : g.sum()] = np.flatnonzero(g)
        self._genre_flags = flags.astype(np.float32)
        self._ann = None
        self._item_mm = None
        if self.item_features is not None:
            f = self.item_features
            self._ann = AnnCandidates(f.fused, f.fingerprint)
            self._item_mm = np.concatenate([f.fused, f.image, f.text], axis=1).astype(np.float32)
        self._explain_masks: torch.Tensor | None = None
        self._stage_cache: dict[tuple[int, int, int], tuple[np.ndarray, ...]] = {}
        self._prepare_store(self.profiles)

    def _prepare_store(self, store: ProfileStore) -> None:
        vecs = None if self.item_features is None else self.item_features.fused
        if vecs is not None and store.dim not in (None, vecs.shape[1]):
            store.set_item_vectors(self.catalogue.item_ids, vecs, self.catalogue.categories(), replace=True)
        else:
            store.set_item_vectors(self.catalogue.item_ids, vecs, self.catalogue.categories())

    # -- features --------------------------------------------------------------------------

    def _signals(self, stage: _Stage, profiles: Sequence[UserProfile]) -> _Signals:
        als = stage.als.score_users(profiles)
        latest = np.array([max((h[3] for h in p.history), default=0.0) for p in profiles])
        # Similarity to the latest items (ALS item space): taste drifts, the last few items say most.
        unit = self._stage_arrays(stage)[0]
        # mean cosine to the last items = cosine-sum with their mean unit vector: one (B, F) @ (F, N)
        mean_last = np.zeros((len(profiles), unit.shape[1]), unit.dtype)
        for b, p in enumerate(profiles):
            last = self.catalogue.positions([h[0] for h in p.history[-RECENT_ITEMS:]])
            last = last[last >= 0]
            if len(last):
                mean_last[b] = unit[last].mean(axis=0)
        recent = (mean_last @ unit.T).astype(als.dtype, copy=False)
        return _Signals(als, _zscore(als), _zscore(stage.bpr.score_users(profiles)), stage.trend.at(latest), recent)

    def _stage_arrays(self, stage: _Stage) -> tuple[np.ndarray, np.ndarray]:
        """Unit-length ALS item factors (N, F) and the popularity feature (N,) of ``stage``'s fitted
        models: the same for every request, so computed once per fitted model, not per request."""
        factors, pop = stage.als.item_factors, stage.als.popularity
        key = (id(stage), id(factors), id(pop))
        cached = self._stage_cache.get(key)
        if cached is None or cached[0] is not factors or cached[1] is not pop:  # ids of freed arrays are reused
            unit = factors / np.maximum(np.linalg.norm(factors, axis=1, keepdims=True), 1e-6)
            cached = (factors, pop, unit, np.log1p(pop) / np.log1p(max(pop.max(), 1.0)))
            self._stage_cache = {key: cached}  # one stage at a time: the training stage, then serving
        return cached[2], cached[3]

    def _features(self, stage: _Stage, profiles: Sequence[UserProfile], rows: Sequence[np.ndarray],
                  sig: _Signals) -> RankerBatch:
        """Ranker inputs for ``rows[b]`` (catalogue rows) of each user ``profiles[b]``."""
        user_idx = np.repeat(np.arange(len(profiles)), [len(r) for r in rows])
        items = np.concatenate(rows).astype(np.int64) if len(rows) else np.zeros(0, np.int64)
        pop = self._stage_arrays(stage)[1]
        names = self.catalogue.genre_names
        affinity = np.array([[p.category_affinity.get(g, 0.0) for g in names] for p in profiles], np.float32)
        n_events = np.log1p(np.array([p.n_events for p in profiles], np.float32)) / 5.0
        dense = [sig.als[user_idx, items], sig.als_z[user_idx, items], sig.bpr_z[user_idx, items],
                 sig.recent[user_idx, items], pop[items],
                 sig.trend[user_idx, items], (affinity[user_idx] * self._genre_flags[items]).sum(1), n_events[user_idx]]
        mm = None
        if self.item_features is not None:
            f = self.item_features
            pv = np.stack([p.vector if p.vector is not None else np.zeros(f.dim, np.float32) for p in profiles])
            item_mm = self._item_mm[items]
            d = f.dim
            upv = pv[user_idx]
            dense += [(upv * item_mm[:, :d]).sum(1), (upv * item_mm[:, d : 2 * d]).sum(1),
                      (upv * item_mm[:, 2 * d :]).sum(1), f.image_ok[items].astype(np.float32)]
            if self.config.mm_vectors == "product":
                mm = item_mm[:, :d] * upv
            elif self.config.mm_vectors == "raw":
                mm = np.concatenate([item_mm, upv], axis=1)
        codes = np.array([self.users.codes(p.demographics) for p in profiles], np.int64).reshape(-1, 3)
        user_rows = np.array([self.user_rows.get(p.user_id, 0) for p in profiles], np.int64)
        ids = self.config.id_embeddings
        item_rows = items + 1 if ids else np.zeros(len(items), np.int64)
        if self.config.cold_id_row:
            item_rows[self._cold(stage)[items]] = 0
        return RankerBatch(
            user_rows=user_rows[user_idx] if ids else np.zeros(len(items), np.int64),
            item_rows=item_rows,
            genres=self._genre_pad[items],
            demo_codes=codes[user_idx],
            dense=np.stack(dense, axis=1).astype(np.float32),
            mm=mm,
        )

    def _cold(self, stage: _Stage) -> np.ndarray:
        """(N,) True for items with fewer than ``cold_count`` interactions in the stage's log."""
        return stage.als.popularity < self.config.cold_count

    def candidates(self, stage: _Stage, profiles: Sequence[UserProfile], sig: _Signals) -> list[dict[int, list[str]]]:
        """Per user: catalogue row -> the sources that proposed it (seen items excluded)."""
        n = self.config.n_per_source
        out: list[dict[int, list[str]]] = [{} for _ in profiles]
        seen = [self.catalogue.positions([h[0] for h in p.history]) for p in profiles]

        def add(source: str, score_rows: np.ndarray) -> None:
            for b, row in enumerate(score_rows):
                row = row.copy()
                row[seen[b][seen[b] >= 0]] = -np.inf
                top = np.argpartition(-row, n)[:n] if n < len(row) else np.arange(len(row))
                for r in top[np.isfinite(row[top])].tolist():
                    out[b].setdefault(r, []).append(source)

        add("als", sig.als)
        add("bpr", sig.bpr_z)
        add(POPULARITY, np.broadcast_to(stage.als.popularity, sig.als.shape))
        if self._ann is not None:
            ann = np.full(sig.als.shape, -np.inf, np.float32)
            have = [b for b, p in enumerate(profiles) if p.vector is not None]
            if have:
                # Ask for extra neighbours: seen items are dropped afterwards.
                scores, rows = self._ann.search(np.stack([profiles[b].vector for b in have]), n + 200)
                sub = np.full((len(have), len(self.catalogue)), -np.inf, np.float32)
                np.put_along_axis(sub, np.where(rows >= 0, rows, 0), np.where(rows >= 0, scores, -np.inf), axis=1)
                ann[have] = sub
            add("ann", ann)
        return out

    # -- training --------------------------------------------------------------------------

    def fit(self, log: pl.DataFrame, progress: bool = True) -> "RankingEngine":
        c = self.training
        known = [u for u in self.users.demographics]
        self.profiles.set_demographics_many({u: self.users.demographics[u] for u in known})
        # Stage A: candidate models and profiles from the earlier part of each user's log.
        cut = chronological_split(log, (1 - c.label_fraction, c.label_fraction, 0.0))
        labels_log = self._label_sample(cut.val)
        early_store = ProfileStore(None, half_life_days=self.profiles.half_life_days)
        self._prepare_store(early_store)
        early_store.set_demographics_many({u: self.users.demographics[u] for u in known})
        # Only the label users' profiles are read from the early store: load only their events.
        label_users = labels_log["user_id"].unique()
        early = _Stage(self.catalogue, early_store, self.config, c).fit(
            cut.train, profile_log=cut.train.filter(pl.col("user_id").is_in(label_users)))
        self.user_rows = {int(u): r + 1 for r, u in enumerate(sorted(log["user_id"].unique().to_list()))}
        examples, labels = self._examples(early, labels_log)
        self.ranker = RankerEnsemble(self._ranker_config(), self.config.n_models)
        stats = [train_ranker(member, examples, labels, group_size=1 + c.negatives if c.loss == "softmax" else 1,
                              epochs=c.epochs, held_out=c.held_out, batch_size=c.batch_size, lr=c.lr,
                              weight_decay=c.weight_decay, item_id_dropout=c.item_id_dropout, seed=c.seed + i,
                              progress=progress)
                 for i, member in enumerate(self.ranker.members)]
        samples, seconds = sum(s.samples for s in stats), sum(s.seconds for s in stats)
        self.train_stats = replace(stats[0], samples=samples, seconds=seconds, samples_per_s=samples / max(seconds, 1e-9),
                                   final_loss=float(np.mean([s.final_loss for s in stats])),
                                   held_out_loss=float(np.mean([s.held_out_loss for s in stats])))
        self._ready()
        # Serving: candidate models refitted on the whole log, profiles from the whole log.
        self.stage.fit(log)
        self.popularity = self.stage.als.popularity
        return self

    def _ranker_config(self) -> RankerConfig:
        return RankerConfig(n_users=len(self.user_rows) + 1, n_items=len(self.catalogue) + 1,
                            n_genres=len(self.catalogue.genre_names), n_occupations=len(self.users.occupations),
                            mm_dim=0 if self.item_features is None else self.item_features.dim,
                            mm_block=self._mm_block_width(),
                            embedding_dim=self.config.embedding_dim)

    def _mm_block_width(self) -> int:
        if self.item_features is None:
            return 0
        return {"none": 0, "product": 1, "raw": 4}[self.config.mm_vectors] * self.item_features.dim

    def _ready(self) -> None:
        """Switch the trained ranker to serving: eval mode and the explanation masks, built once."""
        self.ranker.eval()
        self._explain_groups = tuple(g for g in FEATURE_GROUPS if g != "multimodal" or self.item_features is not None)
        self._explain_masks = torch.stack([torch.ones_like(self.ranker.group_mask(self._explain_groups[0]))]
                                          + [self.ranker.group_mask(g) for g in self._explain_groups])

    def _label_sample(self, labels_log: pl.DataFrame) -> pl.DataFrame:
        """The label events of at most ``max_label_users`` users, drawn with their own generator (so the
        negatives drawn later are the same whenever no user is left out)."""
        cap = self.training.max_label_users
        users = np.sort(labels_log["user_id"].unique().to_numpy())
        if cap is None or len(users) <= cap:
            return labels_log
        keep = np.random.default_rng([self.training.seed, 1]).choice(users, size=cap, replace=False)
        return labels_log.filter(pl.col("user_id").is_in(keep))

    def _examples(self, stage: _Stage, labels_log: pl.DataFrame) -> tuple[RankerBatch, np.ndarray]:
        """Groups of 1 + ``negatives`` rows per label event: the positive, then negatives drawn from
        the user's candidates (random unseen items when the candidates run out)."""
        c = self.training
        rng = np.random.default_rng(c.seed)
        users = [u for u in sorted(labels_log["user_id"].unique().to_list()) if stage.als.profiles.get(u) is not None]
        profiles = [stage.als.profiles.get(u) for u in users]
        by_user = labels_log.group_by("user_id").agg(pl.col("item_id"))
        positives = {int(u): items for u, items in zip(by_user["user_id"].to_list(), by_user["item_id"].to_list())}
        cold = self._cold(stage)
        every_row, cold_rows = np.arange(len(self.catalogue)), np.flatnonzero(cold)
        examples = []
        for start in range(0, len(profiles), 256):  # bounded memory: (256, N) signals at a time
            chunk = profiles[start : start + 256]
            sig = self._signals(stage, chunk)
            rows = []
            for p, cand in zip(chunk, self.candidates(stage, chunk, sig)):
                pos = self.catalogue.positions(positives.get(p.user_id, []))
                pos = np.unique(pos[pos >= 0])
                seen = np.union1d(self.catalogue.positions([h[0] for h in p.history]), pos)
                pool = np.setdiff1d(np.fromiter(cand, np.int64, len(cand)), seen)
                if len(pool) == 0:
                    pool = np.setdiff1d(np.arange(len(self.catalogue)), seen)
                n_rand = int(round(c.negatives * c.random_negatives))
                neg = rng.choice(pool, size=(len(pos), c.negatives - n_rand), replace=len(pool) < c.negatives * len(pos))
                if n_rand:  # items outside the candidates too: full-catalogue scoring stays in range
                    neg = np.concatenate([neg, _choice_excluding(rng, every_row, seen, (len(pos), n_rand))], axis=1)
                groups = [np.concatenate([pos[:, None], neg], axis=1)]
                cold_pos = pos[cold[pos]]
                if c.cold_groups and len(cold_pos) and len(cold_rows) > np.count_nonzero(cold[seen[seen >= 0]]):
                    # Cold positives against cold negatives: ranking among cold items, where the id rows
                    # and the collaborative scores say little, is learnt from content and genre.
                    cold_pos = np.repeat(cold_pos, c.cold_groups)
                    cold_neg = _choice_excluding(rng, cold_rows, seen, (len(cold_pos), c.negatives))
                    groups.append(np.concatenate([cold_pos[:, None], cold_neg], axis=1))
                rows.append(np.concatenate(groups).reshape(-1))
            examples.append(self._features(stage, chunk, rows, sig))  # the chunk's signals, computed once
        batch = RankerBatch.concat(examples)
        labels = np.zeros((len(batch) // (1 + c.negatives), 1 + c.negatives), np.float32)
        labels[:, 0] = 1.0
        return batch, labels.reshape(-1)

    # -- serving ---------------------------------------------------------------------------

    def _logits(self, batch: RankerBatch, drop: torch.Tensor | None = None) -> np.ndarray:
        if self.ranker is None:
            raise RuntimeError("RankingEngine is not fitted: call fit() or from_pretrained()")
        with torch.inference_mode(), torch_threads(1 if len(batch) <= SMALL_BATCH else torch.get_num_threads()):
            return self.ranker.score(batch, drop).numpy()

    def _rank(self, profiles: Sequence[UserProfile], all_items: bool = False):
        """Signals, candidates, (B, N) ranker scores (-inf: not a candidate), and the ranker batch
        with its catalogue rows per user (ascending)."""
        sig = self._signals(self.stage, profiles)
        cands = self.candidates(self.stage, profiles, sig)
        if all_items:
            rows = [np.arange(len(self.catalogue)) for _ in profiles]
        else:
            rows = [np.fromiter(sorted(c), np.int64, len(c)) for c in cands]
        batch = self._features(self.stage, profiles, rows, sig)
        logits = self._logits(batch)
        out = np.full((len(profiles), len(self.catalogue)), -np.inf, np.float32)
        start = 0
        for b, r in enumerate(rows):
            out[b, r] = logits[start : start + len(r)]
            start += len(r)
        return sig, cands, out, batch, rows

    def score_users(self, profiles: Sequence[UserProfile], all_items: bool = False) -> np.ndarray:
        """(B, N) ranker scores on each user's candidates (all items if ``all_items``), computed in
        chunks of users so the (rows, 4D) multimodal block stays bounded."""
        per_chunk = max(1, SCORE_ROWS // (len(self.catalogue) if all_items else 4 * self.config.n_per_source))
        parts = [self._rank(profiles[s : s + per_chunk], all_items)[2] for s in range(0, len(profiles), per_chunk)]
        return np.concatenate(parts) if parts else np.zeros((0, len(self.catalogue)), np.float32)

    def _score_one(self, profile: UserProfile):
        _, cands, scores, ranked, rows = self._rank([profile])

        def explain(top: np.ndarray):
            # One batch holds every item under every ablation: (1 + groups) x k rows, one forward.
            if len(top) == 0:
                return (), ()
            sources = tuple(tuple(cands[0].get(int(p), ["ranker"])) for p in top)
            masks = self._explain_masks
            # The chosen items' ranker inputs are rows of the batch just scored (features are per row).
            batch = ranked.take(np.tile(np.searchsorted(rows[0], top), len(masks)))
            logits = self._logits(batch, masks.repeat_interleave(len(top), dim=0)).reshape(len(masks), len(top))
            drops = logits[0] - logits[1:]
            return sources, tuple(self._explain_groups[i] for i in drops.argmax(axis=0))

        return scores[0], explain

    # -- persistence -----------------------------------------------------------------------

    def save_pretrained(self, directory: str | os.PathLike, profiles: bool = True) -> None:
        """The engine's own config, arrays and catalogue, one folder per child (``als``, ``bpr``,
        ``ranker``: each saved by itself and loadable alone) listed in ``modules.json``, and one
        snapshot of the profile store the children share."""
        if self.ranker is None:
            raise RuntimeError("RankingEngine is not fitted: nothing to save")
        f = self.item_features
        arrays = {"user_ids": np.array(sorted(self.user_rows), np.int64), "trend_start": np.array([self.stage.trend.start]),
                  "trend_cumulative": self.stage.trend.cumulative}
        if f is not None:
            arrays.update(mm_image=f.image, mm_text=f.text, mm_fused=f.fused, mm_image_ok=f.image_ok)
        extra = {"occupations": list(self.users.occupations), "mm_fingerprint": None if f is None else f.fingerprint}
        children = {"als": self.stage.als, "bpr": self.stage.bpr, "ranker": self.ranker}
        with atomic_directory(directory) as tmp:
            self._save_common(tmp, self.config, _KIND, arrays, self.training, profiles)
            atomic_write_text(tmp / ENGINE_FILE, json.dumps(extra))
            for name, child in children.items():
                child.save_pretrained(tmp / name, **({} if name == "ranker" else {"profiles": False}))
            atomic_write_text(tmp / MODULES_FILE, json.dumps(
                [{"name": name, "path": name, "kind": saved_kind(tmp / name)} for name in children], indent=2))

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, profiles: ProfileStore | None = None,
                        users: UserTable | None = None) -> "RankingEngine":
        """Load a saved engine; ``users`` adds demographics of users not known at training time.
        Engines saved before the children had their own folders load too."""
        directory = Path(directory)
        config, training = cls._load_configs(directory, _KIND, EngineConfig, EngineTrainingConfig)
        catalogue, profiles, a = cls._load_common(directory, profiles)
        legacy = not (directory / MODULES_FILE).is_file()
        if legacy:
            missing = sorted({"als_item_factors", "bpr_item_factors", "occupations", "trend_start"} - set(a))
            if missing:
                raise ModelLoadError(f"{directory}: the saved engine lacks {missing} (saved by an older version?): retrain it")
            extra = {"occupations": [str(o) for o in a["occupations"]],
                     "mm_fingerprint": str(a["mm_fingerprint"]) if config.multimodal else None}
        else:
            extra = json.loads((directory / ENGINE_FILE).read_text("utf-8"))
        occupations = tuple(extra["occupations"])
        users = users or UserTable({}, occupations)
        if users.occupations != occupations:
            raise ModelLoadError(f"{directory}: saved occupations {occupations} differ from the given user table's")
        feats = None
        if config.multimodal:
            feats = ItemFeatures(catalogue.item_ids, a["mm_image"], a["mm_text"], a["mm_fused"], a["mm_image_ok"],
                                 extra["mm_fingerprint"])
        eng = cls(catalogue, users, feats, profiles, config, training)
        eng.popularity = a["popularity"]
        eng.stage.trend = ItemTrend(a["trend_start"].item(), a["trend_cumulative"], config.trend_days)
        eng.user_rows = {int(u): r + 1 for r, u in enumerate(a["user_ids"])}
        if legacy:  # one arrays file held every child's arrays
            eng.stage.als.popularity = eng.stage.bpr.popularity = a["popularity"]
            eng.stage.als.set_item_factors(a["als_item_factors"])
            eng.stage.bpr.set_factors(a["bpr_item_factors"], a["bpr_user_ids"], a["bpr_user_factors"])
            eng.ranker = RankerEnsemble.from_state(eng._ranker_config(), directory / "ranker.safetensors")
        else:
            eng.stage.als = ALSRecommender.from_pretrained(directory / "als", profiles=eng.profiles)
            eng.stage.bpr = BPRRecommender.from_pretrained(directory / "bpr", profiles=eng.profiles)
            for child in (eng.stage.als, eng.stage.bpr):
                if not np.array_equal(child.catalogue.item_ids, catalogue.item_ids):
                    raise ModelLoadError(f"{directory}: the {child.name} child's catalogue differs from the engine's")
            eng.ranker = RankerEnsemble.from_pretrained(directory / "ranker")
            if eng.ranker.config != eng._ranker_config():
                raise ModelLoadError(f"{directory}: the ranker's config {eng.ranker.config} does not fit the engine's "
                                     f"features ({eng._ranker_config()})")
        if len(eng.ranker.members) != config.n_models:
            raise ModelLoadError(f"{directory}: {len(eng.ranker.members)} saved rankers, config.n_models={config.n_models}")
        eng._ready()
        return eng
