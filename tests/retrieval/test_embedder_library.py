"""The item embedder as a library user meets it: loud when untrained, photos scored as the eval does."""

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
        embedder = load_item_embedder(dataset="grocery")
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
