"""The item embedder as a library user meets it: loud when untrained, photos scored as the eval
does, one result type for both modalities, lists accepted and anything else refused clearly."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from retrieval.align.embedder import UntrainedModelWarning, load_item_embedder


@pytest.fixture(scope="module")
def untrained(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("CROSSREC_HOME", str(tmp_path_factory.mktemp("home")))
    with pytest.warns(UntrainedModelWarning):
        embedder = load_item_embedder(dataset="grocery", allow_untrained=True)
    mp.undo()
    return embedder


def test_query_photo_is_the_mean_with_its_mirror(untrained, shop_folder):
    photo = shop_folder / "photos" / "SKU0000001.png"
    flipped = untrained.embed_query_image(photo)
    plain = untrained.embed_query_image(photo, test_time_flip=False)
    mirror = untrained.embed_query_image(Image.open(photo).transpose(Image.Transpose.FLIP_LEFT_RIGHT), test_time_flip=False)
    expected = (plain + mirror) / np.linalg.norm(plain + mirror)
    np.testing.assert_allclose(flipped, expected, atol=1e-5)
    assert abs(np.linalg.norm(flipped) - 1.0) < 1e-5


def test_photos_in_a_batch_are_scored_as_one_query(untrained, shop_folder):
    photos = [shop_folder / "photos" / "SKU0000001.png", shop_folder / "photos" / "SKU0000002.png"]
    batch = untrained.embed_images([photos[0], None, str(photos[1])], test_time_flip=True)
    assert batch.vectors.shape == (3, untrained.dim) and batch.ok.tolist() == [True, False, True]
    assert 1 in batch.errors and not batch.vectors[1].any()
    np.testing.assert_allclose(batch.vectors[0], untrained.embed_query_image(photos[0]), atol=1e-5)
    np.testing.assert_allclose(batch.vectors[2], untrained.embed_query_image(photos[1]), atol=1e-5)


def test_text_and_images_share_one_result_type_and_validate_their_input(untrained, shop_folder):
    text = untrained.embed_text(("red lamp", "blue mug"))  # any sequence of strings
    images = untrained.embed_images(np.array([str(shop_folder / "photos" / "SKU0000001.png")]))
    assert type(text) is type(images) and text.vectors.shape == (2, untrained.dim) and text.ok.all()
    with pytest.raises(TypeError, match="texts must be a list of strings, got a single str"):
        untrained.embed_text("red lamp")
    with pytest.raises(TypeError, match=r"images\[1\] is a int"):
        untrained.embed_images([None, 3])
    with pytest.raises(TypeError, match="images must be a list"):
        untrained.embed_images(shop_folder / "photos" / "SKU0000001.png")
