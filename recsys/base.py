"""The ``Recommender`` role, its result type and the shared top-k / filtering / cold-start logic."""

from __future__ import annotations

import json
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Callable, Sequence, TypeVar

import numpy as np
import polars as pl

from recsys.data import Catalogue, check_log
from crossrec_core.errors import ModelLoadError
from crossrec_core.persist import (TRAINING_CONFIG_NAME, atomic_write_text, load_arrays, load_split_configs,
                                   save_arrays, save_config)
from recsys.profiles import ProfileStore, UserProfile, interactions_from_ratings

__all__ = ["Recommendations", "Filters", "Recommender", "MAX_K", "POPULARITY", "ScoredItems", "apply_log"]

MAX_K = 1000  # larger k is clamped (and said so in the result's reason)
POPULARITY = "popularity"
PROFILES_FILE = "profiles.db"
ARRAYS_FILE = "arrays.safetensors"
CATALOGUE_FILE = "catalogue.json"
LEGACY_ARRAYS = "arrays.npz"  # models saved before safetensors; still read
C = TypeVar("C")
T = TypeVar("T")
# Catalogue rows (k,) -> per row: candidate sources, top feature group.
Explainer = Callable[[np.ndarray], tuple[tuple[tuple[str, ...], ...], tuple[str, ...]]]


@dataclass(frozen=True)
class Filters:
    """Restrictions on what may be recommended."""

    exclude_seen: bool = True  # drop items already in the user's history
    genres: tuple[str, ...] | None = None  # keep only items with at least one of these genres
    exclude_items: tuple[int, ...] = ()
    include_items: tuple[int, ...] | None = None  # restrict to these items

    @classmethod
    def coerce(cls, filters: "Filters | dict | None") -> "Filters":
        if filters is None:
            return cls()
        if isinstance(filters, cls):
            return filters
        if not isinstance(filters, dict):
            raise TypeError(f"filters must be a Filters, a dict or None, got {type(filters).__name__}")
        allowed = {f.name for f in fields(cls)}
        unknown = sorted(set(filters) - allowed)
        if unknown:
            raise ValueError(f"filters has unknown keys {unknown}; allowed: {sorted(allowed)}")
        norm = {k: tuple(v) if isinstance(v, (list, set)) else v for k, v in filters.items()}
        return cls(**norm)


@dataclass(frozen=True)
class Recommendations:
    """Top-k items for one user, best first: ``item_ids`` (k,), ``scores`` (k,)."""

    user_id: int
    item_ids: np.ndarray
    scores: np.ndarray
    sources: tuple[tuple[str, ...], ...]  # per item: the candidate sources that proposed it
    top_feature_group: tuple[str, ...]  # per item: the feature group that raised its score most
    cold_start: bool
    reason: str  # how the list was made, and any fallback taken


@dataclass(frozen=True)
class ScoredItems:
    """Scores over the whole catalogue for a batch of users: ``scores`` (B, N), -inf = not a candidate."""

    scores: np.ndarray
    cold: np.ndarray  # (B,) bool: no usable history, fell back to popularity


def apply_log(store: ProfileStore, log: pl.DataFrame, source: str = "log", batch: int = 20_000) -> None:
    """Load a log (``LOG_COLUMNS``) into ``store``, ``batch`` events per transaction; idempotent
    (event ids come from the rows and ``source``)."""
    for start in range(0, log.height, batch):
        store.apply(interactions_from_ratings(log.slice(start, batch), source=source))


class Recommender(ABC):
    """A recommender over a fixed catalogue that reads user state from a live ``ProfileStore``."""

    name: str = "recommender"

    def __init__(self, catalogue: Catalogue, profiles: ProfileStore | None = None) -> None:
        self.catalogue = catalogue
        self.profiles = profiles if profiles is not None else ProfileStore(None)
        self.popularity = np.zeros(len(catalogue), np.float32)  # (N,) interaction counts at fit time

    # -- the role --------------------------------------------------------------------------

    @abstractmethod
    def fit(self, log: pl.DataFrame) -> "Recommender":
        """Fit on an interaction log (``user_id, item_id, rating, timestamp``) and load it into the
        profile store."""

    @abstractmethod
    def score_users(self, profiles: Sequence[UserProfile]) -> np.ndarray:
        """(B, N) scores over the catalogue for users with history; -inf marks non-candidates."""

    @abstractmethod
    def save_pretrained(self, directory: str | os.PathLike, profiles: bool = True) -> None:
        """Write the fitted model (config.json, training_config.json, arrays as safetensors) and,
        with ``profiles``, a snapshot of the profile store."""

    @classmethod
    @abstractmethod
    def from_pretrained(cls, directory: str | os.PathLike, profiles: ProfileStore | None = None) -> "Recommender":
        """Load a saved model; ``profiles`` (a live store) replaces the saved snapshot."""

    # -- shared behaviour ------------------------------------------------------------------

    def _fit_common(self, log: pl.DataFrame, profiles: bool = True) -> pl.DataFrame:
        """Popularity from ``log``; with ``profiles``, the catalogue and ``log`` loaded into the
        profile store (a composite whose children share one store loads it once, itself)."""
        log = check_log(log)
        pos = self.catalogue.positions(log["item_id"].to_numpy())
        self.popularity = np.bincount(pos[pos >= 0], minlength=len(self.catalogue)).astype(np.float32)
        if profiles:
            self.profiles.set_item_vectors(self.catalogue.item_ids, None, self.catalogue.categories())
            apply_log(self.profiles, log)
        return log

    def _save_common(self, directory: Path, config: object, kind: str, arrays: dict[str, np.ndarray],
                     training: object | None = None, profiles: bool = True) -> None:
        """The model's own files: ``config.json`` (what it is), ``training_config.json`` (how it was
        trained), its arrays (safetensors) and catalogue; with ``profiles``, a profile snapshot
        (a composite saves the one store its children share once, itself)."""
        cat = self.catalogue
        save_config(config, directory, kind)
        if training is not None:
            save_config(training, directory, f"{kind}.training", TRAINING_CONFIG_NAME)
        save_arrays(directory / ARRAYS_FILE, {"item_ids": cat.item_ids, "genres": cat.genres,
                                              "popularity": self.popularity, **arrays})
        atomic_write_text(directory / CATALOGUE_FILE, json.dumps({"genre_names": cat.genre_names, "titles": cat.titles}))
        if profiles:
            self.profiles.backup(directory / PROFILES_FILE)

    @staticmethod
    def _load_configs(directory: str | os.PathLike, kind: str, config_cls: type[C], training_cls: type[T]) -> tuple[C, T]:
        """(architecture, training) configs saved by ``_save_common`` (``load_split_configs``: a model
        saved before the two were apart has one ``config.json`` with both); default training settings
        when none were saved."""
        config, training = load_split_configs(config_cls, training_cls, directory, kind)
        return config, training if training is not None else training_cls()

    @staticmethod
    def _load_common(directory: str | os.PathLike, profiles: ProfileStore | None):
        """(catalogue, profiles, arrays) from a directory written by ``_save_common``."""
        directory = Path(directory)
        if (directory / ARRAYS_FILE).is_file():
            arrays = load_arrays(directory / ARRAYS_FILE)
        else:  # saved before arrays were safetensors
            try:
                arrays = dict(np.load(directory / LEGACY_ARRAYS, allow_pickle=False))
            except (OSError, ValueError) as exc:
                raise ModelLoadError(f"{directory}: no readable {ARRAYS_FILE} ({exc}); retrain it (crossrec rank train)") from exc
        try:
            meta = json.loads((directory / CATALOGUE_FILE).read_text("utf-8"))
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"{directory}: cannot read the saved recommender ({exc})") from exc
        catalogue = Catalogue(arrays.pop("item_ids"), arrays.pop("genres"), tuple(meta["genre_names"]), tuple(meta["titles"]))
        if profiles is None:
            profiles = ProfileStore.open(directory / PROFILES_FILE)
        return catalogue, profiles, arrays

    def has_history(self, profile: UserProfile | None) -> bool:
        return profile is not None and any(self.catalogue.positions([h[0] for h in profile.history]) >= 0)

    def score(self, user_ids: Sequence[int]) -> ScoredItems:
        """(B, N) scores for users by id; users without usable history get popularity scores."""
        profiles = [self.profiles.get(u) for u in user_ids]
        cold = np.array([not self.has_history(p) for p in profiles], dtype=bool)
        scores = np.empty((len(user_ids), len(self.catalogue)), np.float32)
        scores[cold] = self.popularity
        if (~cold).any():
            scores[~cold] = self.score_users([p for p, c in zip(profiles, cold) if not c])
        return ScoredItems(scores, cold)

    def _score_one(self, profile: UserProfile) -> tuple[np.ndarray, Explainer]:
        """(N,) scores for one user with usable history, and a function giving (sources, top feature
        group) per chosen catalogue row. Engines override it to reuse the request's work."""
        scores = self.score_users([profile])[0]
        return scores, lambda top: (tuple((self.name,) for _ in top), tuple("collaborative" for _ in top))

    def recommend(self, user_id: int, k: int = 10, filters: Filters | dict | None = None) -> Recommendations:
        """Top-``k`` items for ``user_id``; unknown users get the popularity fallback (``cold_start``)."""
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0:
            raise ValueError(f"k={k!r}: must be a positive integer")
        filters = Filters.coerce(filters)
        notes = []
        if k > MAX_K:
            notes.append(f"k={k} clamped to {MAX_K}")
            k = MAX_K
        profile = self.profiles.get(int(user_id))
        cold = not self.has_history(profile)
        if cold:
            notes.append("unknown user: popularity fallback" if profile is None
                         else "no history in the catalogue: popularity fallback")
            scores = self.popularity.copy()
            explain = lambda top: (tuple((POPULARITY,) for _ in top), tuple(POPULARITY for _ in top))  # noqa: E731
        else:
            scores, explain = self._score_one(profile)
        self._apply_filters(scores, profile, filters)
        eligible = int(np.isfinite(scores).sum())
        if eligible < k:
            notes.append(f"only {eligible} eligible items")
        top = np.argsort(-scores, kind="stable")[: min(k, eligible)]  # ties: catalogue order
        sources, groups = explain(top)
        return Recommendations(
            user_id=int(user_id),
            item_ids=self.catalogue.item_ids[top].copy(),
            scores=scores[top].astype(np.float32),
            sources=sources,
            top_feature_group=groups,
            cold_start=cold,
            reason="; ".join([f"{POPULARITY if cold else self.name} ranking"] + notes),
        )

    def _apply_filters(self, scores: np.ndarray, profile: UserProfile | None, filters: Filters) -> None:
        cat = self.catalogue
        if filters.exclude_seen and profile is not None:
            seen = cat.positions([h[0] for h in profile.history])
            scores[seen[seen >= 0]] = -np.inf
        if filters.exclude_items:
            pos = cat.positions(filters.exclude_items)
            scores[pos[pos >= 0]] = -np.inf
        if filters.include_items is not None:
            keep = np.zeros(len(cat), bool)
            pos = cat.positions(filters.include_items)
            keep[pos[pos >= 0]] = True
            scores[~keep] = -np.inf
        if filters.genres is not None:
            unknown = sorted(set(filters.genres) - set(cat.genre_names))
            if unknown:
                raise ValueError(f"filters.genres has unknown genres {unknown}; allowed: {list(cat.genre_names)}")
            cols = [cat.genre_names.index(g) for g in filters.genres]
            scores[~cat.genres[:, cols].any(axis=1)] = -np.inf
