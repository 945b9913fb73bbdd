"""HF-format CLIP / SigLIP checkpoints from a local directory, behind the ``Encoder`` interface."""

from __future__ import annotations

import json
import os
from functools import cached_property
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from retrieval.encoders.base import Encoder
from retrieval.encoders.text import check_texts, no_weight_loading_bar
from crossrec_core.errors import ModelLoadError
from retrieval.images import load_image

__all__ = ["HFDualEncoder", "is_hf_dual_encoder"]

_DUAL_TYPES = ("clip", "siglip", "siglip2", "chinese_clip", "altclip")


def is_hf_dual_encoder(path: str | os.PathLike) -> bool:
    cfg = Path(path) / "config.json"
    if not cfg.is_file():
        return False
    try:
        return json.loads(cfg.read_text("utf-8")).get("model_type") in _DUAL_TYPES
    except json.JSONDecodeError:
        return False


class HFDualEncoder(Encoder):
    """One tower of a local CLIP-like checkpoint: ``modality`` is "text" or "image".

    Both towers of the same checkpoint share an embedding space, so such a pair needs no alignment
    training; crossrec's adapters can still be trained on top.
    """

    def __init__(self, path: str | os.PathLike, modality: str, device: str = "cpu"):
        if modality not in ("text", "image"):
            raise ValueError(f"modality={modality!r}; allowed: 'text', 'image'")
        self.path = Path(path)
        if not is_hf_dual_encoder(self.path):
            raise ModelLoadError(f"path={str(self.path)!r} is not an HF CLIP/SigLIP checkpoint (config.json model_type in {_DUAL_TYPES})")
        self.modality = modality
        self.device = device

    @cached_property
    def _loaded(self):
        from transformers import AutoModel, AutoProcessor

        try:
            with no_weight_loading_bar():
                model = AutoModel.from_pretrained(str(self.path), local_files_only=True).to(self.device).eval()
            processor = AutoProcessor.from_pretrained(str(self.path), local_files_only=True)
        except Exception as exc:
            raise ModelLoadError(f"cannot load HF checkpoint {str(self.path)!r}: {exc}") from exc
        return model, processor

    @property
    def dim(self) -> int:
        cfg = self._loaded[0].config
        return int(getattr(cfg, "projection_dim", None) or cfg.text_config.hidden_size)

    @property
    def fingerprint(self) -> str:
        return f"hf:{self.path.name}:{self.modality}:{self.dim}"

    @torch.inference_mode()
    def encode(self, inputs: Sequence, batch_size: int = 32, progress: bool = False) -> np.ndarray:
        model, processor = self._loaded
        out = []
        for start in range(0, len(inputs), batch_size):
            chunk = list(inputs[start : start + batch_size])
            if self.modality == "text":
                batch = processor(text=check_texts(chunk), return_tensors="pt", padding=True, truncation=True)
                feats = model.get_text_features(**batch.to(self.device))
            else:
                batch = processor(images=[load_image(i) for i in chunk], return_tensors="pt")
                feats = model.get_image_features(**batch.to(self.device))
            if not isinstance(feats, torch.Tensor):  # some versions return a model output
                feats = feats.pooler_output
            out.append(torch.nn.functional.normalize(feats.float(), dim=-1).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)
