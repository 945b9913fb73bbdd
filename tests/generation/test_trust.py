"""Label, watermark and C2PA manifest on real images, with keys in a temporary home."""

from __future__ import annotations

import io
import os
import stat

import numpy as np
import pytest
from PIL import Image

from crossrec_core.paths import CROSSREC_HOME_ENV, resolve_data_dir
from generation.trust import (
    Watermark, ensure_keys, payload_id_for, protect_image, save_labelled, sign_file, verify, watermark_benchmark,
)

POSTERS = resolve_data_dir() / "ml100k-posters" / "data" / "posters"
SHOP = resolve_data_dir() / "grocery-store" / "sample_images" / "natural"


@pytest.fixture()
def home(tmp_path, monkeypatch):
    monkeypatch.setenv(CROSSREC_HOME_ENV, str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture(scope="module")
def poster_like():
    """A 540x540 poster-sized image built from a real MovieLens poster (blurred background with
    the poster at 2x), the kind of picture the generators write."""
    source = Image.open(POSTERS / "1.jpg").convert("RGB")
    canvas = source.resize((540, 540), Image.BICUBIC)
    canvas.paste(source.resize((184, 276)), (60, 130))
    return canvas


def test_watermark_survives_jpeg_and_resize_and_is_absent_from_real_photos(poster_like):
    wm = Watermark()
    marked = wm.embed(poster_like, 0xC0FFEE)
    diff = np.asarray(marked, np.float64) - np.asarray(poster_like, np.float64)
    assert 10 * np.log10(255 ** 2 / np.mean(diff ** 2)) > 38  # invisible: PSNR above 38 dB
    assert wm.read(marked).payload_id == 0xC0FFEE
    for scale in (0.9, 1.1):
        small = marked.resize((round(540 * scale),) * 2, Image.LANCZOS)
        buf = io.BytesIO()
        small.save(buf, "JPEG", quality=85)
        assert wm.read(Image.open(buf)).payload_id == 0xC0FFEE
    for photo in [*sorted(POSTERS.glob("1?.jpg")), *sorted(SHOP.glob("*.jpg"))]:
        assert wm.read(photo).payload_id is None
    with pytest.raises(ValueError, match="payload_id="):
        wm.embed(poster_like, 2 ** 32)


def test_benchmark_reports_recovery_and_false_positives(poster_like):
    real = sorted(POSTERS.glob("2?.jpg"))
    bench = watermark_benchmark([poster_like, poster_like.rotate(90)], real, seed=1)
    assert bench.n_marked == 2 and bench.recovered == 2 and bench.recovered_rate == 1.0
    assert bench.n_real == len(real) and bench.false_positives == 0


def test_keys_are_a_local_ca_and_a_leaf_created_once(home):
    from cryptography import x509

    keys = ensure_keys()
    assert keys.folder == home / "keys"
    chain = x509.load_pem_x509_certificates(keys.signer_chain.read_bytes())
    ca = x509.load_pem_x509_certificate(keys.ca_cert.read_bytes())
    assert len(chain) == 2 and chain[0].issuer == ca.subject and chain[0].subject != ca.subject
    chain[0].verify_directly_issued_by(ca)
    assert stat.S_IMODE(os.stat(keys.signer_key).st_mode) == 0o600
    before = keys.signer_chain.read_bytes()
    assert ensure_keys().signer_chain.read_bytes() == before  # reused, not re-issued


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_protected_image_verifies_as_ours(home, poster_like, tmp_path, suffix):
    out = protect_image(poster_like, tmp_path / f"poster{suffix}", metadata={"item_id": "1"})
    result = verify(out.path)
    assert result.label and "xmp" in result.label_sources and "c2pa" in result.label_sources
    assert result.watermark_id == out.payload_id
    assert result.manifest == "valid" and result.trusted and result.ours
    assert "made by crossrec" in result.summary()


def test_tampered_file_has_an_invalid_manifest_and_a_copy_keeps_the_watermark(home, poster_like, tmp_path):
    out = protect_image(poster_like, tmp_path / "poster.png")
    # re-save the pixels after an edit, keeping the original manifest bytes: hashes no longer match
    data = bytearray(out.path.read_bytes())
    idat = data.find(b"IDAT")
    data[idat + 40] ^= 0xFF
    tampered = tmp_path / "tampered.png"
    tampered.write_bytes(bytes(data))
    assert verify(tampered).manifest == "invalid"
    # a screenshot-like copy loses the metadata and the manifest but keeps the watermark
    copy = tmp_path / "copy.jpg"
    Image.open(out.path).convert("RGB").resize((486, 486)).save(copy, quality=85)
    result = verify(copy)
    assert result.manifest == "absent" and not result.label
    assert result.watermark_id == out.payload_id and result.ours


def test_real_photo_is_not_ours(home, tmp_path):
    result = verify(POSTERS / "50.jpg")
    assert not result.label and result.watermark_id is None and result.manifest == "absent" and not result.ours
    assert "not ours" in result.summary()


def test_label_only_and_sign_file_on_other_types(home, poster_like, tmp_path):
    plain = save_labelled(poster_like, tmp_path / "label.png", payload_id=7)
    result = verify(plain)
    assert result.label and result.manifest == "absent" and result.watermark_id is None
    signed = sign_file(plain, dest=tmp_path / "signed.png", title="label.png")
    assert verify(signed).manifest == "valid"
    (tmp_path / "noext").write_bytes(b"x")
    with pytest.raises(ValueError, match="suffix"):
        sign_file(tmp_path / "noext")
    with pytest.raises(FileNotFoundError, match="missing.png"):
        verify(tmp_path / "missing.png")
    assert payload_id_for("asset") == payload_id_for(b"asset") < 2 ** 32
