"""Pretrained unimodal encoders loaded offline, behind one ``Encoder`` interface."""

from __future__ import annotations

import os
from pathlib import Path

from retrieval.encoders.base import Encoder
from retrieval.encoders.hf import HFDualEncoder, is_hf_dual_encoder
from retrieval.encoders.image import EncodedImages, LoadedImages, MobileNetV2Encoder, load_images
from retrieval.encoders.llm import Completion, LocalLanguageModel, load_language_model
from retrieval.encoders.onnx import OnnxTextEncoder, onnx_text_encoder
from retrieval.encoders.text import E5Encoder, SentenceTransformerEncoder, check_texts

__all__ = [
    "Encoder", "SentenceTransformerEncoder", "E5Encoder", "MobileNetV2Encoder", "HFDualEncoder",
    "LoadedImages", "EncodedImages", "load_images", "load_encoder", "check_texts", "TEXT_ENCODERS", "IMAGE_ENCODERS",
    "LocalLanguageModel", "Completion", "load_language_model", "OnnxTextEncoder", "onnx_text_encoder",
]

TEXT_ENCODERS = ("minilm", "e5")
IMAGE_ENCODERS = ("mobilenet_v2",)


def load_encoder(name: str, modality: str | None = None) -> Encoder:
    """Pick an encoder by short name or load one from a local model directory.

    Names: ``minilm`` (English text, default), ``e5`` (multilingual text), ``mobilenet_v2``
    (images). A directory holding an HF CLIP/SigLIP checkpoint needs ``modality``; one holding a
    sentence-transformers model is a text encoder.
    """
    if name == "minilm":
        return SentenceTransformerEncoder()
    if name == "e5":
        return E5Encoder()
    if name == "mobilenet_v2":
        return MobileNetV2Encoder()
    path = Path(os.path.expanduser(name))
    if path.is_dir():
        if is_hf_dual_encoder(path):
            if modality is None:
                raise ValueError(f"{name!r} is a CLIP-like checkpoint: pass modality='text' or 'image'")
            return HFDualEncoder(path, modality)
        if (path / "modules.json").is_file():
            return SentenceTransformerEncoder(path)
    raise ValueError(
        f"encoder {name!r} unknown: use one of {TEXT_ENCODERS + IMAGE_ENCODERS} or a local "
        "directory holding a sentence-transformers model or an HF CLIP/SigLIP checkpoint"
    )
