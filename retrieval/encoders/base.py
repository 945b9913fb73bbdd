"""The ``Encoder`` role: turns texts or images into fixed-width vectors."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Sequence

import numpy as np

__all__ = ["Encoder"]


class Encoder(ABC):
    """A unimodal encoder. ``encode`` returns float32 vectors ``(B, D)``, L2-normalised."""

    modality: str  # "text" or "image"

    @property
    @abstractmethod
    def dim(self) -> int:
        """Width ``D`` of the vectors ``encode`` returns."""

    @property
    @abstractmethod
    def fingerprint(self) -> str:
        """A string naming the model and its weights; indexes built with it record it."""

    @abstractmethod
    def encode(self, inputs: Sequence[Any], batch_size: int = 32, progress: bool = False) -> np.ndarray:
        """Encode ``inputs`` (texts, or images as paths / PIL images) into ``(B, D)`` float32."""
