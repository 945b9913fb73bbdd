"""Visual scores and the gate on real posters rendered by the layout generator."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter

from crossrec_core.paths import resolve_data_dir
from generation.poster import LayoutPosterGenerator, PosterCopy, TextLayer, TextLine
from generation.scoring import (
    FidelityScorer, GateThresholds, PosterScorer, QualityGate, colourfulness, sharpness, text_match,
)
from generation.style import StyleModel
from generation.types import ControlSignals, CreativeItem
from retrieval.align.embedder import Embeddings

POSTERS = resolve_data_dir() / "ml100k-posters" / "data" / "posters"
LIKED = [POSTERS / "50.jpg", POSTERS / "181.jpg"]


@pytest.fixture(scope="module")
def style_model():
    return StyleModel()


@pytest.fixture(scope="module")
def request_(style_model):
    item = CreativeItem("1", "Toy Story (1995)", "A cowboy doll is threatened by a new spaceman toy.", POSTERS / "1.jpg")
    vector = style_model.style_vector(LIKED).mean(axis=0)
    controls = ControlSignals("u1", style_vector=tuple(float(v) for v in vector), personalisation=0.7)
    generator = LayoutPosterGenerator(style_model=style_model)
    variants = generator.generate(item, PosterCopy("Toys come alive", "The original adventure", "1995"), controls,
                                  n_variants=4, seed=0)
    return item, controls, variants


@pytest.fixture(scope="module")
def scorer(style_model):
    return PosterScorer(style_model=style_model, ocr_top=2)


def test_scores_cover_design_style_and_diversity(scorer, request_):
    item, controls, variants = request_
    scores = scorer.score(variants, item, controls, style_references=LIKED)
    assert [s.seed for s in scores] == [v.seed for v in variants]
    read = [s for s in scores if s.design["ocr"] is not None]
    assert len(read) == 2 and all(s.design["ocr"] >= 0.9 for s in read)
    for s in scores:
        assert s.design["contrast"] >= 4.5 and s.design["occlusion"] <= 0.02
        assert 0 < s.style["gram_distance"] < 1 and -1 <= s.style["style_cosine"] <= 1
        assert s.diversity > 0
    # the checked variants rank first, and the gate passes at least one of them
    best, decisions = QualityGate(GateThresholds(max_self_rank=None)).select(scores)
    assert best is not None and scores[best].design["ocr"] is not None and decisions[best].passed
    assert all("not run" in " ".join(d.reasons) for s, d in zip(scores, decisions) if s.design["ocr"] is None)


@pytest.mark.parametrize("user_palette", [
    ((118, 118, 118), (128, 128, 128), (100, 140, 160)),  # mid-luminance: white and ink both reach only ~4.4:1
    ((250, 240, 210), (200, 230, 250), (255, 200, 220)),  # pastel accents for the panel, badge and strip
])
def test_every_text_layer_reaches_wcag_aa_on_every_template_and_shape(scorer, request_, user_palette):
    # the scorer's own measurement (the rendered pixels around each line) on every square
    # template and style family, the user's colours leading the accents (w = 1) or not (w = 0)
    item, controls, _ = request_
    generator = LayoutPosterGenerator(style_model=scorer.style_model, text_reader=scorer.text_reader)
    copy = PosterCopy("Toys come alive", "The original adventure", "1995")
    for weight in (0.0, 1.0):
        c = dataclasses.replace(controls, palette=user_palette, personalisation=weight)
        variants = generator.generate(item, copy, c, n_variants=6, seed=0)
        variants += generator.generate(item, copy, c, n_variants=2, shape="landscape", seed=0)
        variants += generator.generate(item, copy, c, n_variants=2, shape="story", seed=0)
        for v, s in zip(variants, scorer.score(variants, item, c)):
            assert s.design["contrast"] >= 4.5, (v.shape, v.seed, weight, [(t.role, t.colour) for t in v.text_layers])
            assert all(t.contrast >= 4.5 for t in v.text_layers)


def test_style_scores_follow_the_user(scorer, request_, style_model):
    item, controls, variants = request_
    near = scorer.score(variants[:1], item, controls, style_references=LIKED)[0]
    other = style_model.style_vector([POSTERS / "300.jpg"])[0]
    far_controls = dataclasses.replace(controls, style_vector=tuple(float(v) for v in -other))
    far = scorer.score(variants[:1], item, far_controls, style_references=LIKED)[0]
    assert near.style["style_cosine"] > far.style["style_cosine"]
    ref_self = scorer.reference_gram([variants[0].image])
    assert scorer.score(variants[:1], item, controls, reference_gram=ref_self)[0].style["gram_distance"] < 1e-4


def test_gate_names_every_failed_check(scorer, request_):
    item, controls, variants = request_
    bad = variants[0]
    # unreadable: the headline drawn in the background's own colour, and covering the product
    image = bad.image.copy()
    layer = bad.layer("headline")
    ImageDraw.Draw(image).rectangle(layer.box, fill=(128, 128, 128))
    box = bad.product_box
    covering = TextLayer("headline", layer.text, box, (TextLine(layer.text, box),), layer.font_size, (130, 130, 130), 1.0, False)
    broken = dataclasses.replace(bad, image=image.filter(ImageFilter.GaussianBlur(8)), text_layers=(covering,))
    [s] = PosterScorer(style_model=scorer.style_model, ocr_top=None).score([broken], item, controls)
    decision = QualityGate().check(s)
    text = " ".join(decision.reasons)
    assert not decision.passed
    for check in ("contrast", "ocr read-back", "occlusion", "sharpness"):
        assert check in text


class _ImageBranch:
    """The aligned model's image branch stood in by frozen MobileNetV2 features (training an
    aligned model is out of a unit test's budget): image -> image retrieval is what is scored."""

    def __init__(self):
        from retrieval.encoders import MobileNetV2Encoder

        self.encoder = MobileNetV2Encoder()

    def embed_images(self, images):
        return Embeddings(self.encoder.encode(list(images)), np.ones(len(images), bool), {})

    def embed_text(self, texts):
        return Embeddings(np.ones((len(texts), self.encoder.dim), np.float32), np.ones(len(texts), bool), {})


def test_fidelity_finds_the_item_among_the_catalogue(request_):
    """The poster, as an image query, retrieves its own item among 12 real catalogue posters."""
    item, controls, variants = request_
    ids = ["1"] + [str(i) for i in range(200, 211)]
    fidelity = FidelityScorer.from_images(_ImageBranch(), ids, [POSTERS / f"{i}.jpg" for i in ids])
    results = fidelity.score([v.image for v in variants[:2]], item)
    assert all(r["self_rank"] == 1 and r["retrieves_item"] == 1.0 for r in results)
    assert all(-1 <= r["text_similarity"] <= 1 for r in results)
    missing = fidelity.score([variants[0].image], dataclasses.replace(item, item_id="not-in-catalogue"))[0]
    assert missing["self_rank"] == 0 and missing["retrieves_item"] == 0.0
    with pytest.raises(ValueError, match="catalogue_vectors"):
        FidelityScorer(fidelity.embedder, ids, np.zeros((2, 3)))


def test_measures_on_synthetic_images():
    grey = Image.new("RGB", (64, 64), (128, 128, 128))
    stripes = Image.fromarray((np.indices((64, 64)).sum(0) % 2 * 255).astype(np.uint8)).convert("RGB")
    assert colourfulness(grey) == 0 and colourfulness(Image.new("RGB", (8, 8), (255, 0, 0))) > 50
    assert sharpness(grey) == 0 and sharpness(stripes) > 1000
    assert text_match("Toys come alive!", "TOYS COME ALIVE") == 1.0 and text_match("abc", "xyz") == 0.0
