"""The ``Encoder`` role: turns texts or images into fixed-width vectors."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

__all__ = ["Encoder", "OnnxSource"]


class Encoder(ABC):
    """A unimodal encoder. ``encode`` returns float32 vectors ``(B, D)``, L2-normalised."""

    modality: str  # "text" or "image"
    multilingual: bool = False  # a text encoder that reads Chinese as written (others get it glossed in English)

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


@dataclass(frozen=True)
class OnnxSource:
    """What an ONNX export of a mean-pooled, L2-normalised text encoder needs from its source.

    ``name``: the export's file name stem; ``weight_files``: the files whose names, sizes and first
    MiB key the export (a changed model is exported again); ``transformer``: builds the torch module
    (called only to export) taking ``input_ids``, ``attention_mask``, ``token_type_ids`` ``(B, L)``
    and returning an output with ``last_hidden_state`` ``(B, L, D)``; ``tokenize``: a padded batch
    of texts as int arrays ``(B, L)`` named like the inputs (``token_type_ids`` may be left out)."""

    name: str
    weight_files: tuple[Path, ...]
    transformer: Callable[[], object]
    tokenize: Callable[[list[str]], dict[str, np.ndarray]]
