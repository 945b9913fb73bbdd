"""The two-stage engine: candidates (ALS, BPR, ANN over aligned item embeddings, popularity) ranked
by the TorchRec ranker on collaborative, genre, demographic and multimodal features.

The ranker is trained without leaking its labels into its features: each user's log is cut in
time; ALS/BPR/profiles are fitted on the earlier part and the later part gives the positive labels
(negatives: other candidates and random unseen items). The candidate models are then refitted on
the whole log for serving, and every request reads the live ``ProfileStore``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import polars as pl
import torch

from recsys.base import POPULARITY, Recommender
from recsys.candidates import ALSConfig, ALSRecommender, AnnCandidates, BPRConfig, BPRRecommender
from recsys.data import Catalogue, ItemFeatures, UserTable, chronological_split
from recsys.profiles import ProfileStore, UserProfile
from recsys.ranker import FEATURE_GROUPS, DCNRanker, RankerBatch, RankerConfig, TrainStats, train_ranker
from retrieval.errors import EmbeddingDimensionError, ModelLoadError
from retrieval.persist import atomic_directory, load_config

__all__ = ["EngineConfig", "RankingEngine"]

_KIND = "recsys.engine"


@dataclass(frozen=True)
class EngineConfig:
    multimodal: bool = True  # use the aligned image/text item embeddings and the profile vector
    n_per_source: int = 100  # candidates taken from each source before ranking
    label_fraction: float = 0.2  # last share of each user's log used as ranker labels
    negatives: int = 8  # per positive: hard_fraction from the candidates, the rest random unseen items
    hard_fraction: float = 0.5
    epochs: int = 3
    batch_size: int = 1024
    lr: float = 3e-3
    embedding_dim: int = 16
    als_factors: int = 64
    als_regularization: float = 0.05
    als_alpha: float = 10.0
    als_iterations: int = 15
    bpr_factors: int = 64
    bpr_iterations: int = 100
    seed: int = 0

    def als(self) -> ALSConfig:
        return ALSConfig(self.als_factors, self.als_regularization, self.als_alpha, self.als_iterations, self.seed)

    def bpr(self) -> BPRConfig:
        return BPRConfig(factors=self.bpr_factors, iterations=self.bpr_iterations, seed=self.seed)


class _Stage:
    """Candidate models fitted on one stretch of the log, sharing one profile store."""

    def __init__(self, catalogue: Catalogue, profiles: ProfileStore, config: EngineConfig) -> None:
        self.als = ALSRecommender(catalogue, profiles, config.als())
        self.bpr = BPRRecommender(catalogue, profiles, config.bpr())

    def fit(self, log: pl.DataFrame) -> "_Stage":
        self.als.fit(log)
        self.bpr.fit(log)
        return self


def _zscore(x: np.ndarray) -> np.ndarray:
    return (x - x.mean(axis=1, keepdims=True)) / (x.std(axis=1, keepdims=True) + 1e-6)


class RankingEngine(Recommender):
    """Candidates + TorchRec ranker; ``recommend`` explains each item (sources, top feature group)."""

    name = "ranker"

    def __init__(self, catalogue: Catalogue, users: UserTable, item_features: ItemFeatures | None = None,
                 profiles: ProfileStore | None = None, config: EngineConfig = EngineConfig()) -> None:
        super().__init__(catalogue, profiles)
        if config.multimodal:
            if item_features is None:
                raise ValueError("config.multimodal=True needs item_features (aligned item embeddings)")
            if not np.array_equal(item_features.item_ids, catalogue.item_ids):
                raise EmbeddingDimensionError("item_features rows do not match the catalogue's item ids (same order)")
        self.users = users
        self.item_features = item_features if config.multimodal else None
        self.config = config
        self.stage = _Stage(catalogue, self.profiles, config)
        self.user_rows: dict[int, int] = {}
        self.ranker: DCNRanker | None = None
        self.train_stats: TrainStats | None = None
        self._ann = AnnCandidates(item_features.fused, item_features.fingerprint) if self.item_features is not None else None
        self._genre_lists = [np.flatnonzero(g) for g in catalogue.genres]
        self._prepare_store(self.profiles)

    def _prepare_store(self, store: ProfileStore) -> None:
        vecs = None if self.item_features is None else self.item_features.fused
        if vecs is not None and store.dim not in (None, vecs.shape[1]):
            store.set_item_vectors(self.catalogue.item_ids, vecs, self.catalogue.categories(), replace=True)
        else:
            store.set_item_vectors(self.catalogue.item_ids, vecs, self.catalogue.categories())

    # -- features --------------------------------------------------------------------------

    def _features(self, stage: _Stage, profiles: Sequence[UserProfile], rows: Sequence[np.ndarray]) -> RankerBatch:
        """Ranker inputs for ``rows[b]`` (catalogue rows) of each user ``profiles[b]``."""
        als = stage.als.score_users(profiles)
        als_z, bpr_z = _zscore(als), _zscore(stage.bpr.score_users(profiles))
        pop = np.log1p(stage.als.popularity) / np.log1p(max(stage.als.popularity.max(), 1.0))
        genres = self.catalogue.genres.astype(np.float32)
        names = self.catalogue.genre_names
        n = sum(len(r) for r in rows)
        user_idx = np.repeat(np.arange(len(profiles)), [len(r) for r in rows])
        items = np.concatenate(rows) if n else np.zeros(0, np.int64)
        affinity = np.stack([np.array([p.category_affinity.get(g, 0.0) for g in names], np.float32) for p in profiles])
        dense = [als[user_idx, items], als_z[user_idx, items], bpr_z[user_idx, items], pop[items],
                 (affinity[user_idx] * genres[items]).sum(1),
                 np.log1p([profiles[u].n_events for u in user_idx]) / 5.0]
        mm = None
        if self.item_features is not None:
            f = self.item_features
            pv = np.stack([p.vector if p.vector is not None else np.zeros(f.dim, np.float32) for p in profiles])[user_idx]
            dense += [(pv * f.fused[items]).sum(1), (pv * f.image[items]).sum(1), (pv * f.text[items]).sum(1),
                      f.image_ok[items].astype(np.float32)]
            mm = np.concatenate([f.fused[items], f.image[items], f.text[items], pv], axis=1).astype(np.float32)
        codes = np.array([self.users.codes(p.demographics) for p in profiles], np.int64).reshape(-1, 3)
        return RankerBatch(
            user_rows=np.array([self.user_rows.get(profiles[u].user_id, 0) for u in user_idx], np.int64),
            item_rows=items + 1,
            genre_lists=[self._genre_lists[i] for i in items],
            demo_codes=codes[user_idx],
            dense=np.stack(dense, axis=1).astype(np.float32),
            mm=mm,
        )

    def candidates(self, stage: _Stage, profiles: Sequence[UserProfile]) -> list[dict[int, list[str]]]:
        """Per user: catalogue row -> the sources that proposed it (seen items excluded)."""
        n = self.config.n_per_source
        out: list[dict[int, list[str]]] = [{} for _ in profiles]
        seen = [self.catalogue.positions([h[0] for h in p.history]) for p in profiles]

        def add(source: str, score_rows: np.ndarray) -> None:
            for b, row in enumerate(score_rows):
                row = row.copy()
                row[seen[b][seen[b] >= 0]] = -np.inf
                for r in np.argpartition(-row, n)[:n] if n < len(row) else range(len(row)):
                    if np.isfinite(row[r]):
                        out[b].setdefault(int(r), []).append(source)

        add("als", stage.als.score_users(profiles))
        add("bpr", stage.bpr.score_users(profiles))
        add(POPULARITY, np.tile(stage.als.popularity, (len(profiles), 1)))
        if self._ann is not None:
            ann = np.full((len(profiles), len(self.catalogue)), -np.inf, np.float32)
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
        c = self.config
        known = [u for u in self.users.demographics]
        self.profiles.set_demographics_many({u: self.users.demographics[u] for u in known})
        # Stage A: candidate models and profiles from the earlier part of each user's log.
        cut = chronological_split(log, (1 - c.label_fraction, c.label_fraction, 0.0))
        early_store = ProfileStore(None, half_life_days=self.profiles.half_life_days)
        self._prepare_store(early_store)
        early_store.set_demographics_many({u: self.users.demographics[u] for u in known})
        early = _Stage(self.catalogue, early_store, c).fit(cut.train)
        self.user_rows = {int(u): r + 1 for r, u in enumerate(sorted(log["user_id"].unique().to_list()))}
        examples, labels = self._examples(early, cut.val)
        self.ranker = DCNRanker(self._ranker_config())
        self.train_stats = train_ranker(self.ranker, examples, labels, epochs=c.epochs, batch_size=c.batch_size,
                                        lr=c.lr, seed=c.seed, progress=progress)
        self.ranker.eval()
        # Serving: candidate models refitted on the whole log, profiles from the whole log.
        self.stage.fit(log)
        self.popularity = self.stage.als.popularity
        return self

    def _ranker_config(self) -> RankerConfig:
        return RankerConfig(n_users=len(self.user_rows) + 1, n_items=len(self.catalogue) + 1,
                            n_genres=len(self.catalogue.genre_names), n_occupations=len(self.users.occupations),
                            mm_dim=0 if self.item_features is None else self.item_features.dim,
                            embedding_dim=self.config.embedding_dim)

    def _examples(self, stage: _Stage, labels_log: pl.DataFrame) -> tuple[RankerBatch, np.ndarray]:
        c = self.config
        rng = np.random.default_rng(c.seed)
        users = [u for u in sorted(labels_log["user_id"].unique().to_list()) if stage.als.profiles.get(u) is not None]
        profiles = [stage.als.profiles.get(u) for u in users]
        cands = self.candidates(stage, profiles)
        by_user = labels_log.group_by("user_id").agg(pl.col("item_id"))
        positives = {int(u): items for u, items in zip(by_user["user_id"].to_list(), by_user["item_id"].to_list())}
        rows, labels = [], []
        for p, cand in zip(profiles, cands):
            pos = self.catalogue.positions(positives.get(p.user_id, []))
            pos = np.unique(pos[pos >= 0])
            seen = set(self.catalogue.positions([h[0] for h in p.history]).tolist()) | set(pos.tolist())
            pool = np.array([r for r in cand if r not in seen], np.int64)
            n_neg = c.negatives * len(pos)
            hard = rng.choice(pool, size=min(int(n_neg * c.hard_fraction), len(pool)), replace=False) if len(pool) else np.zeros(0, np.int64)
            rand = rng.integers(0, len(self.catalogue), size=n_neg - len(hard))
            rand = rand[~np.isin(rand, list(seen))]
            neg = np.concatenate([hard, rand]).astype(np.int64)
            rows.append(np.concatenate([pos, neg]))
            labels.append(np.concatenate([np.ones(len(pos)), np.zeros(len(neg))]))
        return self._features(stage, profiles, rows), np.concatenate(labels).astype(np.float32)

    # -- serving ---------------------------------------------------------------------------

    def _logits(self, batch: RankerBatch, drop: torch.Tensor | None = None) -> np.ndarray:
        if self.ranker is None:
            raise RuntimeError("RankingEngine is not fitted: call fit() or from_pretrained()")
        with torch.no_grad():
            mm = None if batch.mm is None else torch.from_numpy(batch.mm)
            return self.ranker(batch.kjt(), torch.from_numpy(batch.dense), mm, drop).numpy()

    def score_users(self, profiles: Sequence[UserProfile], all_items: bool = False) -> np.ndarray:
        """(B, N) ranker scores on each user's candidates (all unseen items if ``all_items``)."""
        if all_items:
            rows = [np.arange(len(self.catalogue)) for _ in profiles]
        else:
            rows = [np.array(sorted(c), np.int64) for c in self.candidates(self.stage, profiles)]
        logits = self._logits(self._features(self.stage, profiles, rows))
        out = np.full((len(profiles), len(self.catalogue)), -np.inf, np.float32)
        start = 0
        for b, r in enumerate(rows):
            out[b, r] = logits[start : start + len(r)]
            start += len(r)
        return out

    def explain(self, profile: UserProfile, positions: np.ndarray):
        if len(positions) == 0:
            return (), ()
        cand = self.candidates(self.stage, [profile])[0]
        sources = tuple(tuple(cand.get(int(p), ["ranker"])) for p in positions)
        batch = self._features(self.stage, [profile], [np.asarray(positions, np.int64)])
        full = self._logits(batch)
        groups = [g for g in FEATURE_GROUPS if g != "multimodal" or self.item_features is not None]
        drops = np.stack([full - self._logits(batch, self.ranker.group_mask(g)) for g in groups], axis=1)
        return sources, tuple(groups[i] for i in drops.argmax(axis=1))

    # -- persistence -----------------------------------------------------------------------

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        from safetensors.torch import save_file

        if self.ranker is None:
            raise RuntimeError("RankingEngine is not fitted: nothing to save")
        f = self.item_features
        arrays = {
            "als_item_factors": self.stage.als.item_factors,
            "bpr_item_factors": self.stage.bpr.item_factors,
            "bpr_user_ids": np.array(sorted(self.stage.bpr._user_factors), np.int64),
            "bpr_user_factors": np.stack([self.stage.bpr._user_factors[u] for u in sorted(self.stage.bpr._user_factors)]),
            "user_ids": np.array(sorted(self.user_rows), np.int64),
            "occupations": np.array(self.users.occupations),
        }
        if f is not None:
            arrays.update(mm_image=f.image, mm_text=f.text, mm_fused=f.fused, mm_image_ok=f.image_ok,
                          mm_fingerprint=np.array(f.fingerprint))
        with atomic_directory(directory) as tmp:
            self._save_common(tmp, self.config, _KIND, arrays)
            save_file({k: v.contiguous() for k, v in self.ranker.state_dict().items()}, str(tmp / "ranker.safetensors"))

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, profiles: ProfileStore | None = None,
                        users: UserTable | None = None) -> "RankingEngine":
        """Load a saved engine; ``users`` adds demographics of users not known at training time."""
        from safetensors.torch import load_file

        config = load_config(EngineConfig, directory, _KIND)
        catalogue, profiles, a = cls._load_common(directory, profiles)
        occupations = tuple(str(o) for o in a["occupations"])
        users = users or UserTable({}, occupations)
        if users.occupations != occupations:
            raise ModelLoadError(f"{directory}: saved occupations {occupations} differ from the given user table's")
        feats = None
        if config.multimodal:
            feats = ItemFeatures(catalogue.item_ids, a["mm_image"], a["mm_text"], a["mm_fused"], a["mm_image_ok"],
                                 str(a["mm_fingerprint"]))
        eng = cls(catalogue, users, feats, profiles, config)
        eng.popularity = a["popularity"]
        eng.stage.als.popularity = eng.stage.bpr.popularity = a["popularity"]
        eng.stage.als._model = eng.stage.als._new_model()
        eng.stage.als._model.item_factors = a["als_item_factors"]
        eng.stage.bpr.item_factors = a["bpr_item_factors"]
        eng.stage.bpr._user_factors = {int(u): f for u, f in zip(a["bpr_user_ids"], a["bpr_user_factors"])}
        eng.user_rows = {int(u): r + 1 for r, u in enumerate(a["user_ids"])}
        eng.ranker = DCNRanker(eng._ranker_config())
        state = load_file(str(Path(directory) / "ranker.safetensors"))
        try:
            eng.ranker.load_state_dict(state)
        except RuntimeError as exc:
            raise ModelLoadError(f"{directory}: ranker weights do not fit the saved feature sizes ({exc})") from exc
        eng.ranker.eval()
        return eng
