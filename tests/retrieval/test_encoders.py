"""One contract for every ``Encoder`` implementation, run on real inputs."""

from __future__ import annotations

import numpy as np
import pytest

from retrieval.encoders import E5Encoder, MobileNetV2Encoder, SentenceTransformerEncoder, load_encoder
from crossrec_core.errors import ImageDecodeError, ModelLoadError


class EncoderContract:
    """Subclasses provide ``encoder`` and ``inputs`` (a list of 3 valid inputs)."""

    def test_shape_dtype_norm(self, encoder, inputs):
        out = encoder.encode(inputs)
        assert out.shape == (len(inputs), encoder.dim)
        assert out.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-3)

    def test_empty_batch(self, encoder):
        assert encoder.encode([]).shape == (0, encoder.dim)

    def test_deterministic_and_distinct(self, encoder, inputs):
        a, b = encoder.encode(inputs), encoder.encode(inputs)
        np.testing.assert_allclose(a, b, atol=1e-5)
        assert not np.allclose(a[0], a[1], atol=1e-3)

    def test_fingerprint(self, encoder):
        assert isinstance(encoder.fingerprint, str) and str(encoder.dim) in encoder.fingerprint


class TextContract(EncoderContract):
    @pytest.fixture
    def inputs(self, grocery):
        return [p.description for p in grocery.products[:3]]

    def test_rejects_empty_and_bare_string(self, encoder):
        with pytest.raises(ValueError, match=r"texts\[1\] is empty"):
            encoder.encode(["apple", "  "])
        with pytest.raises(TypeError, match="single str"):
            encoder.encode("apple")


class TestMiniLM(TextContract):
    @pytest.fixture(scope="class")
    @classmethod
    def encoder(cls):
        return SentenceTransformerEncoder()


class TestE5(TextContract):
    @pytest.fixture(scope="class")
    @classmethod
    def encoder(cls):
        return E5Encoder()

    def test_chinese_query_finds_english_passage(self, encoder):
        passages = encoder.encode(["fresh red apples from the orchard", "a bottle of whole milk", "yellow bananas"])
        query = E5Encoder(as_query=True).encode(["新鲜的苹果"])
        assert int(np.argmax(passages @ query[0])) == 0


class TestMobileNetV2(EncoderContract):
    @pytest.fixture(scope="class")
    @classmethod
    def encoder(cls, image_encoder):
        return image_encoder

    @pytest.fixture
    def inputs(self, grocery):
        return [p.iconic_image for p in grocery.products[:3]]

    def test_corrupt_image_raises_named_error(self, encoder, inputs, tmp_path):
        bad = tmp_path / "bad.jpg"
        bad.write_bytes(b"\xff\xd8 not really a jpeg")
        with pytest.raises(ImageDecodeError, match=r"inputs\[1\].*bad.jpg"):
            encoder.encode([inputs[0], bad])

    def test_encode_skipping_keeps_the_good_images(self, encoder, inputs, tmp_path):
        bad = tmp_path / "bad.jpg"
        bad.write_bytes(b"\xff\xd8 not really a jpeg")
        out = encoder.encode_skipping([inputs[0], bad, None, inputs[1]], batch_size=2)
        assert out.ok.tolist() == [True, False, False, True]
        assert set(out.errors) == {1, 2} and "bad.jpg" in out.errors[1]
        assert not out.vectors[1:3].any()
        np.testing.assert_allclose(out.vectors[[0, 3]], encoder.encode([inputs[0], inputs[1]]), atol=1e-5)

    def test_bad_weights_file(self, tmp_path):
        bad = tmp_path / "w.pth"
        bad.write_bytes(b"garbage")
        with pytest.raises(ModelLoadError, match="w.pth"):
            _ = MobileNetV2Encoder(weights=bad).model  # weights load lazily, on first use


def test_load_encoder_names_and_errors(tmp_path):
    assert load_encoder("minilm").modality == "text"
    assert load_encoder("mobilenet_v2").modality == "image"
    with pytest.raises(ValueError, match="unknown"):
        load_encoder("resnet-9000")
    with pytest.raises(ValueError, match="unknown"):
        load_encoder(str(tmp_path))  # an empty directory is no model


def test_loading_minilm_draws_no_weight_loading_bar_and_keeps_transformers_bars_setting(capfd):
    from transformers.utils import logging as hf_logging

    assert hf_logging.is_progress_bar_enabled()
    encoder = SentenceTransformerEncoder()
    assert encoder.encode(["a green apple"]).shape == (1, encoder.dim)
    assert "Loading weights" not in capfd.readouterr().err
    assert hf_logging.is_progress_bar_enabled()
