"""The one shape of every evaluation and benchmark report: figures as a dict, JSON, a Markdown table.

Each component names its own report after what it measures (``RetrievalEvalReport``,
``RankingEvalReport``, ``IndexBenchReport``, ``RankingBenchReport``), so no two public names mean
different things; they all subclass ``Report`` and are written the same way.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod

from crossrec_core.persist import write_json

__all__ = ["Report"]


class Report(ABC):
    """A run's figures: ``to_dict`` (JSON-ready), ``to_json(path)`` (atomic), ``to_markdown``."""

    @abstractmethod
    def to_dict(self) -> dict:
        """Every figure of the run, JSON-ready (what ``--json PATH`` writes)."""

    @abstractmethod
    def to_markdown(self) -> str:
        """The human-readable table of the main figures."""

    def to_json(self, path: str | os.PathLike) -> None:
        write_json(path, self.to_dict())
