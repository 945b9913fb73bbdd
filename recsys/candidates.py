"""Candidate generators that are also full recommenders: popularity, implicit ALS and BPR; plus ANN.

ALS scores a user from the live history by solving for the user factor against the fixed item
factors (so a new click changes the next scores without refitting). BPR uses the fitted user
factor, or the mean of the consumed items' factors for users it was not fitted on.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import polars as pl
import scipy.sparse as sp

from recsys.base import Recommender
from recsys.data import Catalogue, user_item_matrix
from recsys.profiles import ProfileStore, UserProfile
from crossrec_core.persist import atomic_directory, load_config

__all__ = [
    "ALSConfig",
    "ALSTrainingConfig",
    "BPRConfig",
    "BPRTrainingConfig",
    "PopularityRecommender",
    "ALSRecommender",
    "BPRRecommender",
    "AnnCandidates",
    "history_matrix",
]


def history_matrix(profiles: Sequence[UserProfile], catalogue: Catalogue) -> sp.csr_matrix:
    """(B, N) binary CSR of the catalogue items in each profile's history."""
    rows, cols = [], []
    for r, p in enumerate(profiles):
        pos = np.unique(catalogue.positions([h[0] for h in p.history]))
        pos = pos[pos >= 0]
        rows.append(np.full(len(pos), r))
        cols.append(pos)
    rows = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    cols = np.concatenate(cols) if cols else np.zeros(0, np.int64)
    return sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(len(profiles), len(catalogue)))


def _user_rows(log: pl.DataFrame) -> dict[int, int]:
    return {int(u): r for r, u in enumerate(sorted(log["user_id"].unique().to_list()))}


class PopularityRecommender(Recommender):
    """Most interacted-with items first: the cold-start fallback and the weakest baseline."""

    name = "popularity"

    def fit(self, log: pl.DataFrame) -> "PopularityRecommender":
        self._fit_common(log)
        return self

    def score_users(self, profiles: Sequence[UserProfile]) -> np.ndarray:
        return np.tile(self.popularity, (len(profiles), 1))

    def save_pretrained(self, directory: str | os.PathLike, profiles: bool = True) -> None:
        with atomic_directory(directory) as tmp:
            self._save_common(tmp, _Empty(), "recsys.popularity", {}, profiles=profiles)

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, profiles: ProfileStore | None = None) -> "PopularityRecommender":
        load_config(_Empty, directory, "recsys.popularity")
        catalogue, profiles, arrays = cls._load_common(directory, profiles)
        rec = cls(catalogue, profiles)
        rec.popularity = arrays["popularity"]
        return rec


@dataclass(frozen=True)
class _Empty:
    pass


@dataclass(frozen=True)
class ALSConfig:
    """What a fitted ALS model is: serving solves each user's factor with these too."""

    factors: int = 64
    regularization: float = 0.05
    alpha: float = 10.0  # confidence of an observed interaction: 1 + alpha


class _PassBudget:
    """Training configs with ``iterations`` passes bounded by ``max_samples`` (passes x interactions)."""

    iterations: int
    max_samples: int | None

    def __post_init__(self) -> None:
        if self.iterations < 1 or (self.max_samples is not None and self.max_samples < 1):
            raise ValueError(f"iterations={self.iterations}, max_samples={self.max_samples}: must be >= 1 (max_samples "
                             "may be None: no bound)")

    def passes(self, interactions: int) -> int:
        """Passes over a log of ``interactions`` user-item pairs: ``iterations``, fewer where that
        would exceed ``max_samples``, 1 at least."""
        if self.max_samples is None:
            return self.iterations
        return max(1, min(self.iterations, self.max_samples // max(interactions, 1)))


@dataclass(frozen=True)
class ALSTrainingConfig(_PassBudget):
    iterations: int = 15
    seed: int = 0
    # Work per fit (passes x interactions), bounded as large-scale trainers bound their steps: ML-100K
    # and a 1M-event log keep 15 passes, a 10M-event log gets 6 or 7 (a pass cost about 1.2 s per
    # million interactions on one core: 15 passes at 10M would be 3 min per fit, and the engine fits twice).
    max_samples: int | None = 50_000_000


@dataclass(frozen=True)
class BPRConfig:
    factors: int = 64


@dataclass(frozen=True)
class BPRTrainingConfig(_PassBudget):
    learning_rate: float = 0.05
    regularization: float = 0.01
    iterations: int = 100
    seed: int = 0
    # SGD steps per fit (passes x interactions), bounded as large-scale trainers bound steps: a log
    # over max_samples / iterations interactions gets fewer passes (1 at least). ML-100K keeps its
    # 100 passes; a 1M-event log gets about 60 to 80, a 10M one 6 or 7 (BPR's cost was linear in both).
    max_samples: int | None = 50_000_000


class ALSRecommender(Recommender):
    """Implicit-feedback ALS (``implicit``); user factors are recomputed from the live history."""

    name = "als"

    def __init__(self, catalogue: Catalogue, profiles: ProfileStore | None = None, config: ALSConfig = ALSConfig(),
                 training: ALSTrainingConfig = ALSTrainingConfig()) -> None:
        super().__init__(catalogue, profiles)
        self.config = config
        self.training = training
        self._model = None

    def _new_model(self, num_threads: int, iterations: int | None = None):
        from implicit.cpu.als import AlternatingLeastSquares

        from threadpoolctl import threadpool_limits

        c, t = self.config, self.training
        with threadpool_limits(1, "blas"):  # see fit(); implicit checks the BLAS threads here
            return AlternatingLeastSquares(factors=c.factors, regularization=c.regularization, alpha=c.alpha,
                                           iterations=iterations or t.iterations, random_state=t.seed,
                                           num_threads=num_threads)

    def fit(self, log: pl.DataFrame, profiles: bool = True) -> "ALSRecommender":
        """``profiles``: also load ``log`` into the profile store (False: a composite loads it)."""
        log = self._fit_common(log, profiles)
        user_items = user_item_matrix(log, _user_rows(log), self.catalogue)
        user_items.data[:] = 1.0
        model = self._new_model(num_threads=0, iterations=self.training.passes(user_items.nnz))
        # implicit parallelises over users itself; a multi-threaded BLAS inside each of its
        # threads oversubscribes the cores (implicit warns about exactly this).
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1, "blas"):
            model.fit(user_items, show_progress=False)
        self.set_item_factors(np.asarray(model.item_factors))
        return self

    def set_item_factors(self, item_factors: np.ndarray) -> None:
        """Serve with these (N, F) item factors. Solving a few user factors is tiny work: one thread
        avoids OpenMP start-up and oversubscription next to torch on a small machine."""
        self._model = self._new_model(num_threads=1)
        self._model.item_factors = np.ascontiguousarray(item_factors, dtype=np.float32)

    @property
    def item_factors(self) -> np.ndarray:
        """(N, F) item factors."""
        if self._model is None:
            raise RuntimeError("ALSRecommender is not fitted: call fit() or from_pretrained()")
        return np.asarray(self._model.item_factors)

    def user_factors(self, profiles: Sequence[UserProfile]) -> np.ndarray:
        """(B, F) user factors solved from each profile's history."""
        self.item_factors  # noqa: B018  (raises when unfitted)
        hist = history_matrix(profiles, self.catalogue)
        return np.asarray(self._model.recalculate_user(np.arange(len(profiles)), hist)).reshape(len(profiles), -1)

    def score_users(self, profiles: Sequence[UserProfile]) -> np.ndarray:
        return self.user_factors(profiles) @ self.item_factors.T

    def save_pretrained(self, directory: str | os.PathLike, profiles: bool = True) -> None:
        with atomic_directory(directory) as tmp:
            self._save_common(tmp, self.config, "recsys.als", {"item_factors": self.item_factors}, self.training, profiles)

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, profiles: ProfileStore | None = None) -> "ALSRecommender":
        config, training = cls._load_configs(directory, "recsys.als", ALSConfig, ALSTrainingConfig)
        catalogue, profiles, arrays = cls._load_common(directory, profiles)
        rec = cls(catalogue, profiles, config, training)
        rec.popularity = arrays["popularity"]
        rec.set_item_factors(arrays["item_factors"])
        return rec


class BPRRecommender(Recommender):
    """Bayesian personalised ranking (``implicit``) on binary interactions."""

    name = "bpr"

    def __init__(self, catalogue: Catalogue, profiles: ProfileStore | None = None, config: BPRConfig = BPRConfig(),
                 training: BPRTrainingConfig = BPRTrainingConfig()) -> None:
        super().__init__(catalogue, profiles)
        self.config = config
        self.training = training
        self.item_factors: np.ndarray | None = None  # (N, F + 1), the last column is the item bias
        self._user_factors: dict[int, np.ndarray] = {}

    def fit(self, log: pl.DataFrame, profiles: bool = True) -> "BPRRecommender":
        """``profiles``: also load ``log`` into the profile store (False: a composite loads it)."""
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        log = self._fit_common(log, profiles)
        rows = _user_rows(log)
        user_items = user_item_matrix(log, rows, self.catalogue)
        user_items.data[:] = 1.0
        t = self.training
        model = BayesianPersonalizedRanking(factors=self.config.factors, learning_rate=t.learning_rate,
                                            regularization=t.regularization, iterations=t.passes(user_items.nnz),
                                            random_state=t.seed, num_threads=0)
        model.fit(user_items, show_progress=False)
        users = np.array(list(rows), np.int64)
        self.set_factors(np.asarray(model.item_factors), users, np.asarray(model.user_factors)[[rows[u] for u in users]])
        return self

    def set_factors(self, item_factors: np.ndarray, user_ids: np.ndarray, user_factors: np.ndarray) -> None:
        """Serve with these (N, F + 1) item factors and the (U, F + 1) factors of fitted users ``user_ids`` (U,)."""
        self.item_factors = np.asarray(item_factors)
        self._user_factors = {int(u): f for u, f in zip(user_ids, np.asarray(user_factors))}

    def user_factors(self, profiles: Sequence[UserProfile]) -> np.ndarray:
        """(B, F + 1): the fitted factor, else the mean factor of the consumed items (bias weight 1)."""
        if self.item_factors is None:
            raise RuntimeError("BPRRecommender is not fitted: call fit() or from_pretrained()")
        out = np.zeros((len(profiles), self.item_factors.shape[1]), np.float32)
        hist = history_matrix(profiles, self.catalogue)
        for r, p in enumerate(profiles):
            fitted = self._user_factors.get(p.user_id)
            if fitted is not None:
                out[r] = fitted
            elif hist[r].nnz:
                out[r] = self.item_factors[hist[r].indices].mean(axis=0)
                out[r, -1] = 1.0
        return out

    def score_users(self, profiles: Sequence[UserProfile]) -> np.ndarray:
        return self.user_factors(profiles) @ self.item_factors.T

    def save_pretrained(self, directory: str | os.PathLike, profiles: bool = True) -> None:
        if self.item_factors is None:
            raise RuntimeError("BPRRecommender is not fitted: nothing to save")
        users = np.array(sorted(self._user_factors), np.int64)
        factors = (np.stack([self._user_factors[u] for u in users]) if len(users)
                   else np.zeros((0, self.item_factors.shape[1]), np.float32))
        with atomic_directory(directory) as tmp:
            self._save_common(tmp, self.config, "recsys.bpr",
                              {"item_factors": self.item_factors, "user_ids": users, "user_factors": factors},
                              self.training, profiles)

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, profiles: ProfileStore | None = None) -> "BPRRecommender":
        config, training = cls._load_configs(directory, "recsys.bpr", BPRConfig, BPRTrainingConfig)
        catalogue, profiles, arrays = cls._load_common(directory, profiles)
        rec = cls(catalogue, profiles, config, training)
        rec.popularity = arrays["popularity"]
        rec.set_factors(arrays["item_factors"], arrays["user_ids"], arrays["user_factors"])
        return rec


class AnnCandidates:
    """Nearest items to each user's profile vector in the aligned embedding space (``retrieval.index``)."""

    def __init__(self, item_vectors: np.ndarray, fingerprint: str = "") -> None:
        """``item_vectors`` (N, D), rows in catalogue order; the index ids are the catalogue rows."""
        from retrieval.index import create_index

        vectors = np.ascontiguousarray(item_vectors, dtype=np.float32)
        self._index = create_index(vectors.shape[1], expected_size=len(vectors), fingerprint=fingerprint)
        self._index.add(np.arange(len(vectors), dtype=np.int64), vectors)
        self.size = len(vectors)

    def search(self, vectors: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(B, n) cosine scores and catalogue rows (-1: no hit) of the items nearest to ``vectors`` (B, D)."""
        hits = self._index.search(np.ascontiguousarray(vectors, dtype=np.float32), min(n, self.size))
        return hits.scores, hits.ids

