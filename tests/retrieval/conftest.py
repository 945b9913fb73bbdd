"""Fixtures: a small real slice of the Grocery Store data and a tiny trained aligned model."""

from __future__ import annotations

import numpy as np
import pytest

from crossrec_datasets import load_grocery
from retrieval.align.features import extract_image_features, extract_text_features
from retrieval.align.model import AlignConfig, AlignTrainingConfig
from retrieval.align.train import PairData, train_aligned
from retrieval.encoders import MobileNetV2Encoder, load_encoder

N_PRODUCTS = 6


@pytest.fixture(scope="session")
def grocery():
    return load_grocery()


@pytest.fixture(scope="session")
def image_encoder():
    return MobileNetV2Encoder()


@pytest.fixture(scope="session")
def text_encoder():
    return load_encoder("minilm")


@pytest.fixture(scope="session")
def slice_data(grocery, image_encoder, text_encoder):
    """3 train photos and 1 test photo for each of N_PRODUCTS products spread over the catalogue."""
    products = grocery.products[:: len(grocery.products) // N_PRODUCTS][:N_PRODUCTS]
    ids = {p.class_id for p in products}
    train = [p for p in grocery.split("train") if p.class_id in ids]
    test = [p for p in grocery.split("test") if p.class_id in ids]
    train = [p for c in sorted(ids) for p in [q for q in train if q.class_id == c][:3]]
    test = [p for c in sorted(ids) for p in [q for q in test if q.class_id == c][:1]]
    texts = extract_text_features([p.description for p in products], views=2, encoder=text_encoder, progress=False)
    tr = extract_image_features([p.path for p in train], views=1, encoder=image_encoder, progress=False)
    te = extract_image_features([p.path for p in test], encoder=image_encoder, progress=False)
    pos = {p.class_id: i for i, p in enumerate(products)}  # image_text indexes `texts`
    return {
        "products": products, "train_photos": train, "test_photos": test, "texts": texts,
        "train": PairData(tr, np.array([pos[p.class_id] for p in train]), texts),
        "test": PairData(te, np.array([pos[p.class_id] for p in test]), texts),
    }


TINY = dict(embed_dim=32, adapter_hidden=16, fusion_heads=2)
TINY_TRAINING = dict(epochs=6, batch_size=6, lr=3e-3, image_views=1, text_views=2)


@pytest.fixture(scope="session")
def tiny_configs() -> tuple[AlignConfig, AlignTrainingConfig]:
    """(architecture, training) of the tiny test model (fixtures: test modules cannot import this file)."""
    return AlignConfig(**TINY), AlignTrainingConfig(**TINY_TRAINING)


@pytest.fixture(scope="session")
def tiny_crossclip(slice_data, image_encoder, tiny_configs):
    return train_aligned(tiny_configs[0], slice_data["train"], slice_data["test"], tiny_configs[1],
                         encoder=image_encoder, progress=False)
