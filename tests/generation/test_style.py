"""Palette and Magenta style transfer on real MovieLens posters and grocery images."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from crossrec_core.errors import ImageDecodeError, ModelLoadError
from crossrec_core.paths import resolve_data_dir
from generation.style import STYLE_DIM, StyleConfig, StyleModel, StyleReference, mix_styles, palette, steer_style


@pytest.fixture(scope="module")
def posters():
    folder = resolve_data_dir() / "ml100k-posters" / "data" / "posters"
    return [folder / f"{i}.jpg" for i in (1, 50, 100, 181)]


@pytest.fixture(scope="module")
def model():
    return StyleModel()


def test_palette_finds_the_colours_of_a_two_colour_image():
    arr = np.zeros((60, 60, 3), dtype=np.uint8)
    arr[:, :40] = (200, 30, 30)  # two thirds red
    arr[:, 40:] = (20, 40, 220)
    colours = palette([Image.fromarray(arr)], k=2)
    assert colours.shape == (2, 3) and colours.dtype == np.uint8
    assert colours[0].tolist() == [200, 30, 30] and colours[1].tolist() == [20, 40, 220]
    # fewer distinct colours than k: the most frequent repeat, the shape holds
    assert palette([Image.fromarray(arr)], k=4).shape == (4, 3)


def test_palette_of_real_posters_is_deterministic(posters):
    a = palette(posters, k=5, seed=3)
    assert a.shape == (5, 3)
    assert np.array_equal(a, palette(posters, k=5, seed=3))


def test_palette_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError, match="k="):
        palette([np.zeros((4, 4, 3), np.uint8)], k=0)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(ImageDecodeError, match="bad.jpg"):
        palette([bad])


def test_style_vectors_separate_posters_and_repeat(model, posters):
    v = model.style_vector(posters)
    assert v.shape == (len(posters), STYLE_DIM) and v.dtype == np.float32
    assert np.allclose(v[0], model.style_vector(posters[0])[0])
    assert not np.allclose(v[0], v[1])


def test_stylize_returns_the_asked_size_and_follows_the_style(model, posters):
    v = model.style_vector(posters)
    own = model.stylize(posters[0], v[0], (540, 540))
    other = model.stylize(posters[0], v[1], (600, 314))
    assert own.size == (540, 540) and other.size == (600, 314)
    # the poster restyled by another poster's style differs from it restyled by its own
    other_square = np.asarray(model.stylize(posters[0], v[1], (540, 540)), dtype=np.float32)
    assert np.abs(other_square - np.asarray(own, dtype=np.float32)).mean() > 5


def test_mix_styles_is_the_personalisation_knob(model, posters):
    user, item = model.style_vector(posters[:2])
    assert np.allclose(mix_styles(user, item, 0.0), item)
    assert np.allclose(mix_styles(user, item, 1.0), user)
    assert np.allclose(mix_styles(None, item, 0.7), item)
    assert np.allclose(mix_styles(user, item, 0.25), 0.25 * user + 0.75 * item)
    with pytest.raises(ValueError, match="weight="):
        mix_styles(user, item, 1.5)
    with pytest.raises(ValueError, match="user"):
        mix_styles(user[:10], item, 0.5)


def test_steer_style_moves_the_item_by_the_users_deviation_from_the_catalogue(model, posters):
    reference = StyleReference.of(posters, model)
    vectors = model.style_vector(posters)
    assert np.allclose(reference.style, vectors.mean(axis=0), atol=1e-5) and len(reference.colour) == 3
    user, item = vectors[:2]
    deviation = user - np.asarray(reference.style, np.float32)
    assert np.allclose(steer_style(user, item, 0.5, reference, 2.0), item + deviation, atol=1e-5)
    assert np.allclose(steer_style(user, item, 0.0, reference, 2.0), item)
    assert np.allclose(steer_style(None, item, 0.7, reference, 2.0), item)
    # a user whose taste is the catalogue's average look gets the item's own style at any weight
    assert np.allclose(steer_style(np.asarray(reference.style), item, 1.0, reference, 4.0), item, atol=1e-5)
    with pytest.raises(ValueError, match="weight="):
        steer_style(user, item, -0.1, reference, 2.0)
    with pytest.raises(ValueError, match="at least one image"):
        StyleReference.of([], model)


def test_wrong_model_dir_is_a_model_load_error(tmp_path, posters):
    with pytest.raises(ModelLoadError, match=str(tmp_path)):
        StyleModel(StyleConfig(model_dir=str(tmp_path))).style_vector(posters[0])
