"""Image encoder: ImageNet MobileNetV2 (offline weights), plain torch."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from retrieval.encoders.base import Encoder
from retrieval.encoders.mobilenet import FEATURE_DIM, MobileNetV2, mobilenet_v2_imagenet
from crossrec_core.errors import ImageDecodeError
from retrieval.images import ImageInput, load_image, preprocess

__all__ = ["MobileNetV2Encoder", "LoadedImages", "load_images"]


@dataclass(frozen=True)
class LoadedImages:
    """``tensors (M, 3, S, S)`` for the ``M`` inputs that decoded; ``ok (N,)`` marks them;
    ``errors`` maps input position to the reason it was skipped."""

    tensors: torch.Tensor
    ok: np.ndarray
    errors: dict[int, str]


def load_images(images: Sequence[ImageInput | None]) -> LoadedImages:
    """Decode and preprocess a batch, skipping (and counting) missing or corrupt images."""
    tensors, ok, errors = [], np.zeros(len(images), dtype=bool), {}
    for i, image in enumerate(images):
        if image is None:
            errors[i] = "no image"
            continue
        try:
            tensors.append(preprocess(load_image(image)))
            ok[i] = True
        except ImageDecodeError as exc:
            errors[i] = str(exc)
    stacked = torch.stack(tensors) if tensors else torch.zeros((0, 3, 224, 224))
    return LoadedImages(stacked, ok, errors)


class MobileNetV2Encoder(Encoder):
    """Pooled MobileNetV2 features ``(B, 1280)``; ``trunk(start, stop)`` exposes the stages so
    aligned models can cache features below the blocks they fine-tune."""

    modality = "image"

    def __init__(self, weights: str | os.PathLike | None = None, device: str = "cpu"):
        self.weights = weights
        self.device = device

    @cached_property
    def model(self) -> MobileNetV2:
        return mobilenet_v2_imagenet(self.weights).to(self.device)

    @property
    def dim(self) -> int:
        return FEATURE_DIM

    @property
    def fingerprint(self) -> str:
        name = Path(self.weights).name if self.weights else "imagenet"
        return f"mobilenet_v2:{name}:{FEATURE_DIM}"

    @torch.inference_mode()
    def stages(self, batch: torch.Tensor, stop: int) -> torch.Tensor:
        """Run stages ``0..stop-1`` on a preprocessed batch ``(B, 3, S, S)``."""
        return self.model.features[:stop](batch.to(self.device))

    def encode(self, inputs: Sequence[ImageInput], batch_size: int = 32, progress: bool = False) -> np.ndarray:
        """Encode images; raises ``ImageDecodeError`` on the first one that does not decode."""
        out = []
        for start in tqdm(range(0, len(inputs), batch_size), disable=not progress, desc="images"):
            chunk = list(inputs[start : start + batch_size])
            loaded = load_images(chunk)
            if loaded.errors:
                pos, why = next(iter(loaded.errors.items()))
                raise ImageDecodeError(f"inputs[{start + pos}]: {why}")
            with torch.inference_mode():
                feats = self.model(loaded.tensors.to(self.device))
            out.append(torch.nn.functional.normalize(feats, dim=-1).cpu().numpy())
        return np.concatenate(out).astype(np.float32) if out else np.zeros((0, self.dim), np.float32)
