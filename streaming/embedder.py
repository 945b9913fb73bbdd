"""The item embedder used to index new catalogue items on the fly."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

__all__ = ["TextItemEmbedder", "load_embedder"]


class TextItemEmbedder:
    """Adapter giving a text ``retrieval`` encoder the ``embed_items(texts, images)`` interface.

    Images are ignored: it is the fallback until ``retrieval.load_item_embedder`` (the aligned
    image+text model) is available.
    """

    def __init__(self, encoder) -> None:
        self.encoder = encoder

    @property
    def dim(self) -> int:
        return self.encoder.dim

    def embed_items(self, texts: list[str], images: list[Any]) -> np.ndarray:
        """(N, D) float32 vectors of ``texts``."""
        return np.asarray(self.encoder.encode(list(texts)), dtype=np.float32)


def load_embedder(model_dir: str | os.PathLike | None = None):
    """``retrieval.load_item_embedder(model_dir)`` when the retrieval package provides it, else the
    MiniLM text encoder behind ``TextItemEmbedder`` (``model_dir`` must then be None)."""
    try:
        from retrieval import load_item_embedder
    except ImportError:
        if model_dir is not None:
            raise ValueError(
                f"model_dir={str(model_dir)!r}: this retrieval package has no load_item_embedder; "
                "leave model_dir unset to use the MiniLM text encoder"
            ) from None
        from retrieval import load_encoder

        return TextItemEmbedder(load_encoder("minilm"))
    return load_item_embedder(model_dir)
