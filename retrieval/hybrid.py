"""Hybrid retrieval: per-signal candidate search under a filter, then fusion.

Each signal (BM25, a dense text encoder, the aligned image or fused item vectors) returns its
top ``candidates`` among the items the filter allows; the filter is applied inside the search
(a faiss ``IDSelectorBitmap`` or a mask on the score array), never after cutting to k. The union of
the candidates is scored by every signal and fused, either by reciprocal-rank fusion or by a
weighted sum of per-signal standardised scores with weights learned on dev queries
(``learn_weights``), one weight set per query language.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Callable, Mapping, Sequence

import numpy as np

__all__ = [
    "SIGNALS", "FUSIONS", "DenseSignal", "SignalHits", "Fused", "HybridConfig", "fuse", "learn_weights", "ndcg_at",
]

SIGNALS = ("bm25", "trigram", "minilm", "minilm_title", "e5", "e5_title", "image", "fused")
FUSIONS = ("weighted", "rrf")
_EXACT_MAX = 20_000  # catalogues up to this size are scanned exactly; an IVF index above
_EXACT_ALLOWED = 5_000  # in an IVF catalogue, a filter leaving at most this many rows is scanned exactly


class DenseSignal:
    """Inner-product search over ``vectors (N, D)`` (L2-normalised float32).

    Up to 20,000 rows the scan is exact; above, an IVF-Flat faiss index searched with the filter
    as an ``IDSelectorBitmap``, so that filtered-out items never take a place in the top k (a
    filter leaving at most 5,000 rows is scanned exactly: the probed lists could hold too few).
    """

    def __init__(self, vectors: np.ndarray, *, nprobe: int = 24, seed: int = 0):
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.nprobe = nprobe
        self._ivf = None
        n, d = self.vectors.shape
        if n > _EXACT_MAX:
            import faiss

            nlist = int(4 * np.sqrt(n))
            quantizer = faiss.IndexFlatIP(d)
            self._ivf = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
            sample = np.random.default_rng(seed).choice(n, size=min(n, nlist * 40), replace=False)
            self._ivf.train(self.vectors[sample])
            self._ivf.add(self.vectors)
            self._quantizer = quantizer  # the IVF index does not own it

    def __len__(self) -> int:
        return len(self.vectors)

    def search(self, query: np.ndarray, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` rows among ``allowed (N,) bool`` (None: all): ``(rows, scores)``, best first."""
        n_allowed = len(self) if allowed is None else int(allowed.sum())
        if self._ivf is None or n_allowed <= _EXACT_ALLOWED:
            rows = np.arange(len(self)) if allowed is None else np.flatnonzero(allowed)
            return _top(rows, self.vectors[rows] @ query, k)
        import faiss

        params = faiss.SearchParametersIVF(nprobe=self.nprobe)
        if allowed is not None:
            bits = np.packbits(allowed, bitorder="little")
            params.sel = faiss.IDSelectorBitmap(len(allowed), faiss.swig_ptr(bits))
        scores, rows = self._ivf.search(query[None, :].astype(np.float32), k, params=params)
        keep = rows[0] >= 0
        return rows[0][keep].astype(np.int64), scores[0][keep]

    def score(self, query: np.ndarray, rows: np.ndarray) -> np.ndarray:
        return self.vectors[rows] @ query


def _top(rows: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    if len(rows) > k:
        part = np.argpartition(-scores, k - 1)[:k]
        rows, scores = rows[part], scores[part]
    order = np.argsort(-scores, kind="stable")
    return rows[order], scores[order]


def top_of_scores(scores: np.ndarray, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Top ``k`` of a full ``(N,)`` score array among ``allowed`` rows, rows scoring exactly 0
    left out (a lexical signal with no matching word proposes nothing)."""
    ok = scores > 0 if allowed is None else allowed & (scores > 0)
    rows = np.flatnonzero(ok)
    return _top(rows, scores[rows], k)


@dataclass(frozen=True)
class SignalHits:
    """One signal's answer to one query: its ranked candidate ``rows`` and raw ``scores``, and
    ``score_of(rows) -> (R,)`` raw scores of any rows (to score candidates other signals found)."""

    rows: np.ndarray
    scores: np.ndarray
    score_of: Callable[[np.ndarray], np.ndarray]

    @cached_property
    def spread(self) -> tuple[float, float]:
        """(mean, standard deviation) of the candidates' scores; (0, 0) for fewer than 2."""
        if len(self.scores) < 2:
            return 0.0, 0.0
        return float(self.scores.mean()), float(self.scores.std())


@dataclass(frozen=True)
class Fused:
    """Fused ranking: ``rows (R,)`` best first with ``scores (R,)``; per signal its raw score,
    standardised score and rank in its own list (-1: not among its candidates), each ``(R,)``."""

    rows: np.ndarray
    scores: np.ndarray
    raw: dict[str, np.ndarray]
    standardised: dict[str, np.ndarray]
    rank: dict[str, np.ndarray]


def _standardise(hits: SignalHits, raw: np.ndarray) -> np.ndarray:
    """Scores in units of the spread of the signal's own candidate list (z-scores), so that a
    cosine and a BM25 score can be added; a signal whose list is flat or empty gives zeros."""
    mean, sd = hits.spread
    return np.zeros_like(raw) if sd < 1e-9 else (raw - mean) / sd


def _ranks(rows: np.ndarray, union: np.ndarray) -> np.ndarray:
    """Position of each ``union`` row in ``rows`` (a signal's ranked candidates), -1 where absent."""
    if not len(rows):
        return np.full(len(union), -1, dtype=np.int64)
    order = np.argsort(rows, kind="stable")
    at = np.minimum(np.searchsorted(rows[order], union), len(rows) - 1)
    return np.where(rows[order][at] == union, order[at], -1).astype(np.int64)


def fuse(hits: Mapping[str, SignalHits], *, fusion: str = "weighted", weights: Mapping[str, float] | None = None,
         rrf_k: int = 60, k: int | None = None) -> Fused:
    """Fuse per-signal candidates; ``weights`` (signal -> weight) for ``fusion="weighted"``.
    Signals missing from ``weights`` or weighted 0 still report their scores per hit.

    Only what the ranking needs is computed over the whole candidate union (the weighted signals'
    scores, or every signal's ranks for RRF); the per-signal breakdown is computed for the top
    ``k`` rows it returns (all rows when ``k`` is None)."""
    if fusion not in FUSIONS:
        raise ValueError(f"fusion={fusion!r} is not one of {FUSIONS}")
    union = np.unique(np.concatenate([h.rows for h in hits.values()] or [np.zeros(0, np.int64)])).astype(np.int64)
    total = np.zeros(len(union))
    for name, h in hits.items():
        if fusion == "rrf":
            rank = _ranks(h.rows, union)
            total += np.where(rank >= 0, 1.0 / (rrf_k + rank + 1), 0.0)
        elif (weights or {}).get(name, 0.0):
            total += weights[name] * _standardise(h, h.score_of(union).astype(np.float64))
    order = np.lexsort((union, -total))[: k if k is not None else len(union)]
    rows = union[order]
    raw = {name: h.score_of(rows).astype(np.float64) for name, h in hits.items()}
    return Fused(rows, total[order], raw, {n: _standardise(hits[n], raw[n]) for n in hits},
                 {n: _ranks(h.rows, rows) for n, h in hits.items()})


@dataclass(frozen=True)
class HybridConfig:
    """Fusion settings: weights per query language (``en`` also covers any non-CJK script, ``zh``
    any query holding CJK ideographs), candidates per signal, the RRF constant."""

    weights_en: Mapping[str, float] = field(default_factory=lambda: {s: 1.0 for s in SIGNALS})
    weights_zh: Mapping[str, float] = field(default_factory=lambda: {s: 1.0 for s in SIGNALS})
    candidates: int = 100
    rrf_k: int = 60

    def weights(self, lang: str) -> Mapping[str, float]:
        return self.weights_zh if lang == "zh" else self.weights_en


def ndcg_at(ranked: Sequence, gains: Mapping, k: int = 10) -> float:
    """nDCG@k with graded gains ``2**g - 1`` over ``ranked`` item keys; ideal from all judged."""
    dcg = sum((2 ** gains.get(key, 0) - 1) / np.log2(i + 2) for i, key in enumerate(list(ranked)[:k]))
    ideal = sorted(gains.values(), reverse=True)[:k]
    idcg = sum((2**g - 1) / np.log2(i + 2) for i, g in enumerate(ideal))
    return float(dcg / idcg) if idcg > 0 else 0.0


def learn_weights(per_query: Sequence[tuple[Mapping[str, SignalHits], Mapping[int, int]]], signals: Sequence[str],
                  *, grid: Sequence[float] = (0.0, 0.25, 0.5, 1.0, 2.0), passes: int = 3,
                  k: int = 10) -> tuple[dict[str, float], float]:
    """Weights maximising mean nDCG@k over ``per_query`` = (signal hits, {row: grade}), by
    coordinate ascent over ``grid`` from equal weights (each signal's weight in turn, ``passes``
    times). Returns (weights, mean nDCG@k); a tie keeps the current weight."""
    prepared = []
    for hits, gains in per_query:  # standardised scores of every candidate, once per query
        f = fuse(hits, fusion="weighted", weights={})
        prepared.append((f.rows, np.stack([f.standardised[s] for s in signals]), gains))

    def objective(w: np.ndarray) -> float:
        if not w.any():
            return -1.0
        total = 0.0
        for rows, z, gains in prepared:
            score = w @ z
            total += ndcg_at(rows[np.lexsort((rows, -score))][:k].tolist(), gains, k)
        return total / max(1, len(prepared))

    w = np.ones(len(signals))
    best = objective(w)
    for _ in range(passes):
        improved = False
        for j in range(len(signals)):
            for value in grid:
                trial = w.copy()
                trial[j] = value
                score = objective(trial)
                if score > best + 1e-12:
                    best, w, improved = score, trial, True
        if not improved:
            break
    return {s: float(v) for s, v in zip(signals, w)}, float(best)
