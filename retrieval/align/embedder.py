"""Raw items (text + image) -> aligned vectors, for indexing, search, profiles and ranking."""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F

from retrieval.align.features import frozen_stages
from retrieval.align.model import AlignConfig, AlignedModel
from retrieval.encoders import Encoder, MobileNetV2Encoder, load_encoder, load_images
from retrieval.encoders.text import check_texts
from crossrec_core.errors import ImageDecodeError, ModelLoadError
from crossrec_core.paths import cache_dir, models_dir
from crossrec_datasets.base import DEFAULT_DATASET
from retrieval.images import ImageInput, load_image

__all__ = [
    "Embeddings", "ItemEmbeddings", "ItemEmbedder", "load_item_embedder", "default_model_dir", "default_cache_dir",
    "UntrainedModelWarning", "UntrainedModelError",
]

log = logging.getLogger(__name__)


class UntrainedModelWarning(UserWarning):
    """An item embedder without a trained aligned model: image <-> text scores are at chance."""


class UntrainedModelError(ModelLoadError):
    """No trained aligned model where one was asked for (the message names the command that trains it)."""


def default_model_dir(dataset: str = DEFAULT_DATASET) -> Path:
    """``$CROSSREC_HOME/models/crossclip-<dataset>``: where ``crossrec retrieval train`` saves
    and everything else looks first."""
    return models_dir() / f"crossclip-{dataset}"


def default_cache_dir() -> Path:
    """``$CROSSREC_HOME/cache/features``: cached frozen-encoder features, shared by every run
    whatever its working directory."""
    return cache_dir("features")


@dataclass(frozen=True)
class Embeddings:
    """One modality of a batch: ``vectors (N, D)`` float32, L2-normalised, zero rows where ``ok
    (N,)`` is False; ``errors``: row -> why that input is unusable (an image that does not decode)."""

    vectors: np.ndarray
    ok: np.ndarray
    errors: dict[int, str]


def _batch(value, name: str, allowed: tuple[type, ...], what: str) -> list:
    """``value`` as a list (a list, tuple or 1-D array of inputs); one input alone, or an input of
    another type, is refused naming the argument, the position and what is allowed."""
    if isinstance(value, (str, os.PathLike, Image.Image)) or not isinstance(value, (list, tuple, np.ndarray)):
        raise TypeError(f"{name} must be a list of {what}, got a single {type(value).__name__}; wrap one input as [x]")
    out = list(value)
    for i, v in enumerate(out):
        if not isinstance(v, allowed):
            raise TypeError(f"{name}[{i}] is a {type(v).__name__}; expected {what}")
    return out


_IMAGE_TYPES = (str, os.PathLike, Image.Image, type(None))
_IMAGES = "image paths or PIL images (None for a missing image)"


@dataclass(frozen=True)
class ItemEmbeddings:
    """All ``(N, D)`` float32, L2-normalised, in one aligned space. ``image_ok``/``text_ok (N,)``
    are False where that modality was missing or did not decode (its rows are zero, and ``fused``
    falls back to the other modality)."""

    image: np.ndarray
    text: np.ndarray
    fused: np.ndarray
    image_ok: np.ndarray
    text_ok: np.ndarray
    errors: dict[int, str]


class ItemEmbedder:
    """Wraps the frozen encoders and a trained ``AlignedModel`` behind raw-input methods."""

    def __init__(self, model: AlignedModel, text_encoder: Encoder | None = None,
                 image_encoder: MobileNetV2Encoder | None = None, source: str = ""):
        self.model = model.eval()
        self.text_encoder = text_encoder or load_encoder(model.config.text_encoder)
        self.image_encoder = image_encoder or MobileNetV2Encoder()
        if self.text_encoder.dim != model.config.text_dim:
            raise ValueError(f"text encoder gives {self.text_encoder.dim}-d vectors, model expects {model.config.text_dim}")
        self.source = source
        self._digest = model.digest()

    @property
    def dim(self) -> int:
        return self.model.config.embed_dim

    @property
    def trained(self) -> bool:
        """False for the untrained fallback (random projections) of ``load_item_embedder``."""
        return bool(self.source)

    @property
    def fingerprint(self) -> str:
        return f"{self.model.config.name}:{self._digest}:{self.text_encoder.fingerprint}:{self.dim}"

    @torch.inference_mode()
    def embed_text(self, texts: Sequence[str]) -> Embeddings:
        """Queries or item texts (a list of non-empty strings) -> ``Embeddings`` (every row ok)."""
        texts = check_texts(_batch(texts, "texts", (str,), "strings"))
        vectors = self.model.encode_text(torch.from_numpy(self.text_encoder.encode(texts))).numpy()
        return Embeddings(vectors, np.ones(len(texts), bool), {})

    @torch.inference_mode()
    def _images(self, images: Sequence[ImageInput | None], batch: int = 64):
        n, d = len(images), self.dim
        z = np.zeros((n, d), np.float32)
        tokens: dict[int, torch.Tensor] = {}
        ok = np.zeros(n, dtype=bool)
        errors: dict[int, str] = {}
        split = self.model.config.split_stage
        for start in range(0, n, batch):
            loaded = load_images(list(images[start : start + batch]))
            errors.update({start + i: why for i, why in loaded.errors.items()})
            if not len(loaded.tensors):
                continue
            x = frozen_stages(self.image_encoder, loaded.tensors, 0, split)
            zi, tok = self.model.encode_image(x, return_tokens=True)
            pos = start + np.flatnonzero(loaded.ok)
            z[pos] = zi.float().numpy()
            ok[pos] = True
            for j, p in enumerate(pos):
                tokens[int(p)] = tok[j].float()
        return z, tokens, ok, errors

    def embed_images(self, images: Sequence[ImageInput | None], test_time_flip: bool = False) -> Embeddings:
        """Images -> ``Embeddings``; undecodable images give zero rows (``ok`` False, ``errors``
        says why). ``test_time_flip``: each vector is the normalised mean of the image's and its
        mirror image's, as ``crossrec retrieval eval`` scores query photos (use it for photos
        queried against a catalogue, so a user's own evaluation reproduces the project's figures)."""
        images = _batch(images, "images", _IMAGE_TYPES, _IMAGES)
        z, _, ok, errors = self._images(images)
        if test_time_flip and ok.any():
            rows = np.flatnonzero(ok)
            mirrored = self._images([load_image(images[r]).transpose(Image.Transpose.FLIP_LEFT_RIGHT) for r in rows])[0]
            z[rows] = F.normalize(torch.from_numpy(z[rows] + mirrored), dim=-1).numpy()
        return Embeddings(z, ok, errors)

    def embed_query_image(self, image: ImageInput, test_time_flip: bool = True) -> np.ndarray:
        """One query photo -> ``(D,)``, by default scored as ``crossrec retrieval eval`` scores
        photos (``embed_images(..., test_time_flip=True)``). Raises ``ImageDecodeError`` saying why
        the image is unusable."""
        out = self.embed_images([image], test_time_flip=test_time_flip)
        if not out.ok[0]:
            raise ImageDecodeError(f"query image: {out.errors.get(0, 'does not decode')}")
        return out.vectors[0]

    @torch.inference_mode()
    def embed(self, texts: Sequence[str | None], images: Sequence[ImageInput | None]) -> ItemEmbeddings:
        """Items given as parallel lists of texts and images (either may be None per item)."""
        texts = _batch(texts, "texts", (str, type(None)), "strings (None for a missing text)")
        images = _batch(images, "images", _IMAGE_TYPES, _IMAGES)
        if len(texts) != len(images):
            raise ValueError(f"texts has {len(texts)} entries but images has {len(images)}; give one of each per item")
        n, d = len(texts), self.dim
        text_ok = np.array([isinstance(t, str) and bool(t.strip()) for t in texts], dtype=bool)
        zt = np.zeros((n, d), np.float32)
        if text_ok.any():
            zt[text_ok] = self.embed_text([t for t, ok in zip(texts, text_ok) if ok]).vectors
        zi, tokens, image_ok, errors = self._images(images)
        for i in np.flatnonzero(~text_ok):
            errors.setdefault(int(i), "empty text")
        missing = np.flatnonzero(~text_ok & ~image_ok)
        if len(missing):
            raise ValueError(f"items {missing[:10].tolist()} have neither a usable text nor a decodable image: {[errors.get(int(i)) for i in missing[:3]]}")
        fused = np.where(text_ok[:, None], zt, zi).copy()
        both = np.flatnonzero(text_ok & image_ok)
        if len(both):
            tok = torch.stack([tokens[int(i)] for i in both])
            fused[both] = self.model.fuse(torch.from_numpy(zt[both]), torch.from_numpy(zi[both]), tok).float().numpy()
        fused = F.normalize(torch.from_numpy(fused), dim=-1).numpy()
        return ItemEmbeddings(zi, zt, fused, image_ok, text_ok, errors)

    def embed_items(self, texts: Sequence[str | None], images: Sequence[ImageInput | None]) -> np.ndarray:
        """Fused item vectors ``(N, D)``."""
        return self.embed(texts, images).fused


def load_item_embedder(model_dir: str | os.PathLike | None = None, dataset: str = DEFAULT_DATASET, *,
                       allow_untrained: bool = False) -> ItemEmbedder:
    """Load a trained aligned model; ``model_dir=None`` looks in ``default_model_dir(dataset)``
    (``dataset`` defaults to ``crossrec_datasets.DEFAULT_DATASET``, the one default search shares).

    With nothing trained there it raises ``UntrainedModelError`` naming the command that trains
    one. ``allow_untrained=True`` opts in to frozen encoders with fixed (seeded) random projections
    instead, usable for same-modality similarity only, and says so loudly (an
    ``UntrainedModelWarning`` and a logged warning: cross-modal results are at chance).
    """
    path = Path(model_dir) if model_dir is not None else default_model_dir(dataset)
    if model_dir is not None or (path / "config.json").is_file():
        return ItemEmbedder(AlignedModel.from_pretrained(path), source=str(path))
    missing = f"no trained aligned model for dataset {dataset!r} (looked in {path})"
    train = f"crossrec retrieval train --dataset {dataset}"
    if not allow_untrained:
        raise UntrainedModelError(f"{missing}; train one first: {train} (or pass allow_untrained=True for random "
                                  "projections, at chance across image and text)")
    message = (f"{missing}: using frozen encoders with random projections, so image <-> text scores are at chance. "
               f"Train one first: {train}")
    log.warning(message)
    warnings.warn(message, UntrainedModelWarning, stacklevel=2)
    torch.manual_seed(0)
    return ItemEmbedder(AlignedModel(AlignConfig.baseline(fusion=False)), source="")
