"""Ranking metrics for retrieval with one or several relevant candidates per query."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["RetrievalMetrics", "retrieval_metrics"]


@dataclass(frozen=True)
class RetrievalMetrics:
    """Acc@1: the top hit is relevant. Recall@K: a relevant candidate is in the top K (hit rate).
    MRR: mean reciprocal rank of the first relevant candidate. ``n``: number of queries."""

    acc1: float
    recall5: float
    recall10: float
    mrr: float
    n: int

    def to_dict(self) -> dict:
        return {"acc@1": self.acc1, "recall@5": self.recall5, "recall@10": self.recall10, "mrr": self.mrr, "n": self.n}


def retrieval_metrics(scores: np.ndarray, relevant: np.ndarray) -> RetrievalMetrics:
    """``scores (Q, C)`` similarities, ``relevant (Q, C)`` bool; queries with no relevant
    candidate are rejected (they would make every metric meaningless)."""
    scores = np.asarray(scores, dtype=np.float64)
    relevant = np.asarray(relevant, dtype=bool)
    if scores.shape != relevant.shape or scores.ndim != 2:
        raise ValueError(f"scores {scores.shape} and relevant {relevant.shape} must be equal (Q, C) shapes")
    if len(scores) == 0:
        raise ValueError("no queries to evaluate")
    if not relevant.any(axis=1).all():
        raise ValueError(f"{int((~relevant.any(axis=1)).sum())} queries have no relevant candidate")
    # rank of the best relevant candidate = number of candidates scoring strictly higher
    best_relevant = np.where(relevant, scores, -np.inf).max(axis=1)
    rank = (scores > best_relevant[:, None]).sum(axis=1) + 1
    return RetrievalMetrics(
        acc1=float((rank == 1).mean()),
        recall5=float((rank <= 5).mean()),
        recall10=float((rank <= 10).mean()),
        mrr=float((1.0 / rank).mean()),
        n=int(len(rank)),
    )
