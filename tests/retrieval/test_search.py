"""Catalogue search over real grocery products with a tiny trained model."""

from __future__ import annotations

import pytest

from retrieval.align.embedder import ItemEmbedder
from retrieval.align.model import AlignConfig, AlignedModel
from crossrec_core.errors import ImageDecodeError, IncompatibleIndexError, UnknownIdError
from retrieval.search import CatalogueSearch


@pytest.fixture(scope="module")
def embedder(tiny_crossclip, image_encoder, text_encoder):
    return ItemEmbedder(tiny_crossclip.model, text_encoder, image_encoder)


@pytest.fixture
def catalogue(embedder, grocery):
    products = grocery.products[:8]
    cat = CatalogueSearch.empty(embedder, expected_size=8)
    cat.upsert([p.class_id for p in products], [p.description for p in products], [p.iconic_image for p in products],
               [{"name": p.name} for p in products])
    return cat


def test_text_finds_its_own_item(catalogue, grocery):
    product = grocery.products[3]
    hits = catalogue.search_text(product.description, k=3, space="text")
    assert hits[0].item_id == product.class_id and hits[0].metadata == {"name": product.name}
    assert hits[0].score == pytest.approx(1.0, abs=1e-4)


def test_image_query_and_bad_query_image(catalogue, grocery, tmp_path):
    product = grocery.products[5]
    assert catalogue.search_image(product.iconic_image, k=1, space="image")[0].item_id == product.class_id
    bad = tmp_path / "q.jpg"
    bad.write_bytes(b"bad")
    with pytest.raises(ImageDecodeError):
        catalogue.search_image(bad)


def test_upsert_bad_image_is_indexed_by_text_and_counted(catalogue, grocery, tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"bad")
    report = catalogue.upsert([1000], ["Crunchy organic carrots from Sweden."], [bad])
    assert report.indexed == 1 and 1000 in report.image_skipped
    assert 1000 in catalogue.indexes["fused"] and 1000 not in catalogue.indexes["image"]
    assert catalogue.search_text("Crunchy organic carrots from Sweden.", k=1, space="text")[0].item_id == 1000


def test_update_replaces_and_remove(catalogue, grocery):
    product = grocery.products[0]
    catalogue.upsert([product.class_id], ["A completely different item text about milk."], [None])
    assert product.class_id not in catalogue.indexes["image"]  # the stale image vector is gone
    assert len(catalogue) == 8
    assert catalogue.remove([product.class_id]) == 1
    assert all(product.class_id not in idx for idx in catalogue.indexes.values())
    with pytest.raises(UnknownIdError):
        catalogue.remove([424242])


def test_save_load_and_model_mismatch(catalogue, embedder, tmp_path, grocery):
    catalogue.save(tmp_path / "cat")
    again = CatalogueSearch.load(tmp_path / "cat", embedder)
    q = grocery.products[2].description
    assert [h.item_id for h in again.search_text(q, k=5)] == [h.item_id for h in catalogue.search_text(q, k=5)]
    other = ItemEmbedder(AlignedModel(AlignConfig.baseline(embed_dim=embedder.dim)), embedder.text_encoder, embedder.image_encoder)
    with pytest.raises(IncompatibleIndexError, match="another model"):
        CatalogueSearch.load(tmp_path / "cat", other)


def test_space_validated(catalogue):
    with pytest.raises(ValueError, match="space='audio'"):
        catalogue.search_text("apple", space="audio")
