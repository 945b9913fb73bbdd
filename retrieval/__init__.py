"""Cross-media retrieval: offline encoders, CrossCLIP-style alignment, FAISS index, evaluation."""

import os as _os

# No model hub is reachable from the machines this engine targets by default; without this,
# transformers / sentence-transformers wait on network timeouts before using local files.
_os.environ.setdefault("HF_HUB_OFFLINE", "1")
_os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from retrieval.encoders import Encoder, load_encoder  # noqa: E402
from retrieval.errors import (  # noqa: E402
    CrossrecError,
    EmbeddingDimensionError,
    ImageDecodeError,
    IncompatibleIndexError,
    ModelLoadError,
    UnknownIdError,
)

__all__ = [
    "Encoder", "load_encoder",
    "CrossrecError", "EmbeddingDimensionError", "ImageDecodeError", "IncompatibleIndexError",
    "ModelLoadError", "UnknownIdError",
]
