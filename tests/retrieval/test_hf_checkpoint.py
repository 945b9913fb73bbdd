"""A local HF-format CLIP checkpoint loads through the ``Encoder`` interface (built at toy size)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from retrieval.encoders import load_encoder
from crossrec_core.errors import ModelLoadError
from retrieval.encoders.hf import HFDualEncoder


@pytest.fixture(scope="module")
def tiny_clip_dir(tmp_path_factory):
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    d = tmp_path_factory.mktemp("tiny-clip")
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for ch in "abcdefghijklmnopqrstuvwxyz":
        vocab[ch] = len(vocab)
        vocab[ch + "</w>"] = len(vocab)
    (d / "vocab.json").write_text(json.dumps(vocab))
    (d / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(d / "vocab.json"), str(d / "merges.txt"))
    images = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    config = CLIPConfig(
        text_config=dict(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=32),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                           image_size=32, patch_size=8),
        projection_dim=16,
    )
    CLIPModel(config).save_pretrained(d)
    CLIPProcessor(image_processor=images, tokenizer=tokenizer).save_pretrained(d)
    return d


def test_both_towers_encode_into_one_space(tiny_clip_dir, grocery):
    text = load_encoder(str(tiny_clip_dir), modality="text")
    image = load_encoder(str(tiny_clip_dir), modality="image")
    t = text.encode(["red apple", "whole milk"])
    i = image.encode([p.iconic_image for p in grocery.products[:2]])
    assert t.shape == (2, 16) and i.shape == (2, 16)
    np.testing.assert_allclose(np.linalg.norm(np.vstack([t, i]), axis=1), 1.0, atol=1e-4)
    assert text.fingerprint != image.fingerprint


def test_modality_required_and_checked(tiny_clip_dir, tmp_path):
    with pytest.raises(ValueError, match="modality"):
        load_encoder(str(tiny_clip_dir))
    with pytest.raises(ValueError, match="modality='audio'"):
        HFDualEncoder(tiny_clip_dir, "audio")
    (tmp_path / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(ModelLoadError, match="not an HF CLIP"):
        HFDualEncoder(tmp_path, "text")
