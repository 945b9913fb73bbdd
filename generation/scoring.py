"""Visual scores for poster variants, and the gate that keeps or refuses them.

Per variant (:class:`PosterScores`):

- **design**: ``contrast`` (the lowest WCAG ratio over its text layers, measured on the rendered
  pixels), ``occlusion`` (share of the product and source-text boxes that text covers),
  ``saliency_under_text`` (mean saliency under the text boxes over the mean elsewhere, on the
  poster with its text boxes filled; below 1 means text sits on quiet areas), ``ocr`` (RapidOCR
  read-back of every rendered line against the intended text, 0..1), ``colourfulness`` (Hasler and
  Suesstrunk 2003) and ``sharpness`` (variance of the Laplacian of the luminance).
- **style**: ``gram_distance`` (Gram matrices of MobileNetV2 stages 2, 4, 7 against the user's liked
  images; 0 same texture statistics, 1 unrelated) and ``style_cosine`` (the poster's Magenta style
  vector against the user's).
- **diversity**: mean (1 - cosine) of the variant's pooled MobileNetV2 features to the other
  variants of the same request.
- **fidelity** (optional, :class:`FidelityScorer`): the aligned model's poster-image vs item-text
  cosine, and the rank of the item among all catalogue images for the poster as an image query.

:class:`QualityGate` turns thresholds into a pass/fail with reasons, for ``scores.json``.
"""

from __future__ import annotations

import difflib
import unicodedata
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import Any, Generic, Sequence, TypeVar

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from generation.poster.base import PosterVariant
from generation.poster.text import worst_contrast
from generation.poster.vision import TextReader, default_text_reader, saliency_map
from generation.style import ImageInput, StyleModel, open_rgb
from generation.types import ControlSignals, CreativeItem

__all__ = [
    "CreativeScorer", "PosterScorer", "PosterScores", "FidelityScorer", "GateThresholds", "GateDecision",
    "QualityGate", "colourfulness", "sharpness", "text_match",
]

T = TypeVar("T")
S = TypeVar("S")
_GRAM_STAGES = (2, 4, 7)  # MobileNetV2 stage outputs used for texture statistics (24, 32, 64 channels)


def colourfulness(image: Image.Image) -> float:
    """Hasler and Suesstrunk's colourfulness M (0 grey; about 30 "moderately", 60+ "very")."""
    rgb = np.asarray(image.convert("RGB"), dtype=np.float64)
    rg = rgb[..., 0] - rgb[..., 1]
    yb = 0.5 * (rgb[..., 0] + rgb[..., 1]) - rgb[..., 2]
    return float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))


def sharpness(image: Image.Image) -> float:
    """Variance of the Laplacian of the luminance (higher is sharper)."""
    import cv2

    gray = np.asarray(image.convert("L"), dtype=np.float64)
    return float(cv2.Laplacian(gray, cv2.CV_64F).var())


def _normalise(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).casefold()
    return "".join(ch for ch in text if ch.isalnum())


def text_match(expected: str, read: str) -> float:
    """Similarity 0..1 of two texts ignoring case, spacing and punctuation."""
    a, b = _normalise(expected), _normalise(read)
    if not a:
        return 1.0
    return difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()


@dataclass(frozen=True)
class PosterScores:
    """Scores of one variant (see the module docstring); ``fidelity`` is empty without a
    :class:`FidelityScorer`; ``total`` is what variants are ranked by."""

    seed: int
    design: dict[str, float]
    style: dict[str, float]
    diversity: float
    fidelity: dict[str, float] = field(default_factory=dict)
    total: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class CreativeScorer(ABC, Generic[T, S]):
    """Scores a request's candidates (posters, copy, ...) for one (user, item)."""

    @abstractmethod
    def score(self, candidates: Sequence[T], item: CreativeItem, controls: ControlSignals, **context: Any) -> list[S]:
        """One score record per candidate, in order."""

    def rank(self, scores: Sequence[S]) -> list[int]:
        """Candidate indices, best first (by ``total``)."""
        return sorted(range(len(scores)), key=lambda i: -float(getattr(scores[i], "total")))


class FidelityScorer:
    """Item fidelity in the aligned space: poster image vs the item's text, and whether the poster,
    as an image query, retrieves its own item among ``catalogue_vectors`` (the catalogue's aligned
    image vectors, ``(N, D)``, one per id in ``catalogue_ids``)."""

    def __init__(self, embedder, catalogue_ids: Sequence[str], catalogue_vectors: np.ndarray):
        vectors = np.asarray(catalogue_vectors, dtype=np.float32)
        if vectors.ndim != 2 or len(vectors) != len(catalogue_ids):
            raise ValueError(f"catalogue_vectors: expected ({len(catalogue_ids)}, D), got {vectors.shape}")
        self.embedder = embedder
        self.ids = [str(i) for i in catalogue_ids]
        self._row = {item_id: i for i, item_id in enumerate(self.ids)}
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        self.vectors = vectors / np.maximum(norms, 1e-12)

    @classmethod
    def from_images(cls, embedder, catalogue_ids: Sequence[str], images: Sequence[ImageInput | None]) -> "FidelityScorer":
        """Embed the catalogue images (undecodable ones get zero rows and are never retrieved)."""
        return cls(embedder, catalogue_ids, embedder.embed_images(list(images)).vectors)

    def score(self, images: Sequence[Image.Image], item: CreativeItem) -> list[dict[str, float]]:
        """Per poster: ``text_similarity`` (cosine), ``self_rank`` (1 = its own item retrieved
        first; 0 when the item is not in the catalogue) and ``retrieves_item`` (1.0 or 0.0)."""
        posters = self.embedder.embed_images(list(images))
        z, ok = posters.vectors, posters.ok
        text = item.text or item.title
        zt = self.embedder.embed_text([text]).vectors[0] if text.strip() else None
        row = self._row.get(str(item.item_id))
        out = []
        for zi, good in zip(z, ok):
            zi = zi / max(float(np.linalg.norm(zi)), 1e-12)
            sims = self.vectors @ zi
            rank = int((sims > sims[row]).sum()) + 1 if (row is not None and good) else 0
            out.append({
                "text_similarity": round(float(zi @ zt) / max(float(np.linalg.norm(zt)), 1e-12), 4) if zt is not None else 0.0,
                "self_rank": float(rank),
                "retrieves_item": float(rank == 1),
            })
        return out


class PosterScorer(CreativeScorer[PosterVariant, PosterScores]):
    """Design, style and diversity scores for a request's variants (and fidelity when given a
    :class:`FidelityScorer`). Models load on first use; share them with the generator.

    OCR read-back is the costliest check (about 0.1 s per line on one core), so it runs on the
    ``ocr_top`` variants ranked best by every other score (None: all); the others get
    ``design["ocr"] = None`` and cannot pass the gate. MobileNetV2 features (Gram matrices,
    diversity) are computed at ``feature_size`` px square."""

    def __init__(self, *, style_model: StyleModel | None = None, text_reader: TextReader | None = None,
                 image_encoder=None, fidelity: FidelityScorer | None = None, ocr_top: int | None = 3,
                 feature_size: int = 128):
        if ocr_top is not None and ocr_top < 1:
            raise ValueError(f"ocr_top={ocr_top!r}: must be None (read back every variant) or >= 1")
        self.ocr_top = ocr_top
        self.feature_size = int(feature_size)
        self.style_model = style_model or StyleModel()
        self.text_reader = text_reader or default_text_reader()
        self._image_encoder = image_encoder
        self.fidelity = fidelity

    @property
    def image_encoder(self):
        if self._image_encoder is None:
            from retrieval.encoders import MobileNetV2Encoder

            self._image_encoder = MobileNetV2Encoder()
        return self._image_encoder

    # -- MobileNetV2 features: pooled vectors and Gram matrices -----------------------------------
    def _features(self, images: Sequence[Image.Image]) -> tuple[np.ndarray, list[np.ndarray]]:
        """Pooled ``(N, 1280)`` L2-normalised features and, per image, the Gram matrices of
        :data:`_GRAM_STAGES` flattened and concatenated."""
        import torch

        from retrieval.images import preprocess

        size = self.feature_size
        # the whole poster squashed to a square (no centre crop): text and layout count too
        batch = torch.stack([preprocess(img.convert("RGB").resize((size, size), Image.BICUBIC), size) for img in images])
        model = self.image_encoder.model
        grams: list[list[np.ndarray]] = [[] for _ in images]
        with torch.inference_mode():
            x = batch
            for i, stage in enumerate(model.features):
                x = stage(x)
                if i in _GRAM_STAGES:
                    b, c, h, w = x.shape
                    f = x.reshape(b, c, h * w)
                    g = (f @ f.transpose(1, 2)) / (c * h * w)
                    for j in range(b):
                        grams[j].append(g[j].flatten().numpy())
            pooled = torch.nn.functional.normalize(x.mean(dim=(2, 3)), dim=-1).numpy()
        return pooled, [np.concatenate(g) for g in grams]

    def reference_gram(self, images: Sequence[ImageInput]) -> np.ndarray | None:
        """The mean Gram statistics of ``images`` (a user's liked items), or None if none decode."""
        decoded = []
        for image in images:
            try:
                decoded.append(open_rgb(image))
            except Exception:  # a liked item with a broken image is skipped, not fatal
                continue
        if not decoded:
            return None
        return np.mean(self._features(decoded)[1], axis=0)

    def score(self, candidates: Sequence[PosterVariant], item: CreativeItem, controls: ControlSignals, *,
              style_references: Sequence[ImageInput] = (), reference_gram: np.ndarray | None = None,
              **context: Any) -> list[PosterScores]:
        """Scores for ``candidates`` (the variants of one request). ``style_references`` (the
        user's liked images) or a precomputed ``reference_gram`` enable ``gram_distance``."""
        if not candidates:
            return []
        images = [v.image for v in candidates]
        pooled, grams = self._features(images)
        if reference_gram is None and style_references:
            reference_gram = self.reference_gram(style_references)
        user_style = np.asarray(controls.style_vector, np.float32) if controls.style_vector is not None else None
        styles = self.style_model.style_vector(images) if user_style is not None else None
        fidelity = self.fidelity.score(images, item) if self.fidelity is not None else [{} for _ in candidates]
        n = len(candidates)
        sims = pooled @ pooled.T
        provisional = []
        for i, variant in enumerate(candidates):
            design = self._design(variant)
            style: dict[str, float] = {}
            if reference_gram is not None:
                style["gram_distance"] = round(_gram_distance(grams[i], reference_gram), 4)
            if styles is not None:
                a, b = styles[i], user_style
                style["style_cosine"] = round(float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12)), 4)
            diversity = float((1.0 - sims[i][np.arange(n) != i]).mean()) if n > 1 else 0.0
            provisional.append(PosterScores(variant.seed, design, style, round(diversity, 4), fidelity[i]))
        order = sorted(range(n), key=lambda i: -_total(provisional[i]))
        checked = order if self.ocr_top is None else order[: self.ocr_top]
        reads = self._read_back([candidates[i] for i in checked])
        out = []
        for i, scores in enumerate(provisional):
            design = dict(scores.design)
            if i in checked:
                read = reads[checked.index(i)]
                design["ocr"] = round(min(text_match(layer.text, read.get(layer.role, ""))
                                          for layer in candidates[i].text_layers), 4) if candidates[i].text_layers else 0.0
            scores = PosterScores(**{**asdict(scores), "design": design})
            out.append(PosterScores(**{**asdict(scores), "total": round(_total(scores), 4)}))
        return out

    def _read_back(self, variants: Sequence[PosterVariant]) -> list[dict[str, str]]:
        """OCR of every rendered line; per variant, role -> the text read."""
        jobs = [(i, layer.role, line.box) for i, v in enumerate(variants) for layer in v.text_layers for line in layer.lines]
        reads: list[dict[str, list[str]]] = [{} for _ in variants]
        by_variant: dict[int, list[tuple[str, tuple]]] = {}
        for i, role, box in jobs:
            by_variant.setdefault(i, []).append((role, box))
        for i, items in by_variant.items():
            texts = self.text_reader.read(variants[i].image, [box for _, box in items])
            for (role, _), (text, _) in zip(items, texts):
                reads[i].setdefault(role, []).append(text)
        return [{role: " ".join(parts) for role, parts in r.items()} for r in reads]

    def _design(self, variant: PosterVariant) -> dict[str, float | None]:
        image = variant.image
        rgb = np.asarray(image)
        contrasts = []
        h, w = rgb.shape[:2]
        for layer in variant.text_layers:
            backgrounds = []
            for line in layer.lines:
                x0, y0, x1, y1 = line.box
                region = rgb[max(0, y0 - 3):min(h, y1 + 3), max(0, x0 - 3):min(w, x1 + 3)].astype(np.float64)
                # the background: pixels away from the glyphs (text colour, dilated over anti-aliasing)
                glyphs = np.abs(region - np.asarray(layer.colour)).sum(axis=2) < 90
                backgrounds.append(region[~ndimage.binary_dilation(glyphs, iterations=2)])
            background = np.concatenate(backgrounds) if backgrounds else np.zeros((0, 3))
            contrasts.append(worst_contrast(layer.colour, background) if len(background) else 1.0)
        text_boxes = [layer.box for layer in variant.text_layers if layer.role != "badge"]
        return {
            "contrast": round(float(min(contrasts)) if contrasts else 0.0, 3),
            "ocr": None,  # filled by score() for the variants it reads back
            "occlusion": round(_covered_share(variant.avoid, text_boxes, image.size), 4),
            "saliency_under_text": round(_saliency_under(image, [layer.box for layer in variant.text_layers]), 4),
            "colourfulness": round(colourfulness(image), 2),
            "sharpness": round(sharpness(image), 1),
        }


def _gram_distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(a) + np.linalg.norm(b), 1e-12))


def _covered_share(protected: Sequence[tuple], covering: Sequence[tuple], size: tuple[int, int]) -> float:
    """Share of the union of ``protected`` boxes that ``covering`` boxes overlap."""
    if not protected:
        return 0.0
    w, h = size
    mask_p = np.zeros((h, w), bool)
    mask_c = np.zeros((h, w), bool)
    for x0, y0, x1, y1 in protected:
        mask_p[y0:y1, x0:x1] = True
    for x0, y0, x1, y1 in covering:
        mask_c[y0:y1, x0:x1] = True
    return float((mask_p & mask_c).sum() / max(mask_p.sum(), 1))


def _saliency_under(image: Image.Image, boxes: Sequence[tuple]) -> float:
    """Mean saliency inside ``boxes`` over the mean outside, on ``image`` with the boxes filled
    by their border's median colour (so the text itself does not count)."""
    if not boxes:
        return 0.0
    filled = image.copy()
    draw = ImageDraw.Draw(filled)
    rgb = np.asarray(image)
    mask = np.zeros(rgb.shape[:2], bool)
    for x0, y0, x1, y1 in boxes:
        border = np.concatenate([rgb[y0, x0:x1], rgb[max(y1 - 1, y0), x0:x1], rgb[y0:y1, x0], rgb[y0:y1, max(x1 - 1, x0)]])
        draw.rectangle((x0, y0, x1 - 1, y1 - 1), fill=tuple(int(v) for v in np.median(border, axis=0)))
        mask[y0:y1, x0:x1] = True
    sal = saliency_map(filled)
    inside, outside = sal[mask], sal[~mask]
    return float(inside.mean() / max(outside.mean(), 1e-6)) if len(outside) else 0.0


def _total(s: PosterScores) -> float:
    """One ranking number: readable and faithful first, then style, diversity and looks."""
    d = s.design
    total = 1.0 * (d["ocr"] or 0.0) + 0.5 * min(d["contrast"], 7.0) / 7.0 - 1.0 * d["occlusion"]
    total += 0.2 * min(d["colourfulness"], 80.0) / 80.0 - 0.2 * min(d["saliency_under_text"], 2.0) / 2.0
    if "style_cosine" in s.style:
        total += 0.5 * s.style["style_cosine"]
    if "gram_distance" in s.style:
        total += 0.5 * (1.0 - s.style["gram_distance"])
    total += 0.3 * s.diversity
    if s.fidelity:
        total += 0.5 * s.fidelity.get("retrieves_item", 0.0) + 0.5 * s.fidelity.get("text_similarity", 0.0)
    return total


@dataclass(frozen=True)
class GateThresholds:
    """A variant passes when every measured score is on the right side of its threshold.
    ``max_self_rank`` 1 asks the poster to retrieve its own item first (only with fidelity)."""

    min_contrast: float = 4.5
    min_ocr: float = 0.8
    max_occlusion: float = 0.02
    min_colourfulness: float = 8.0
    min_sharpness: float = 20.0
    min_style_cosine: float | None = None
    max_gram_distance: float | None = None
    max_self_rank: int | None = 1
    min_text_similarity: float | None = None


@dataclass(frozen=True)
class GateDecision:
    """``passed`` and, when not, one reason per failed check (for ``scores.json``)."""

    passed: bool
    reasons: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "reasons": list(self.reasons)}


class QualityGate:
    """Thresholds -> pass/fail with reasons; :meth:`select` picks the best passing variant."""

    def __init__(self, thresholds: GateThresholds = GateThresholds()):
        self.thresholds = thresholds

    def check(self, scores: PosterScores) -> GateDecision:
        t, d, reasons = self.thresholds, scores.design, []

        def low(name: str, value: float | None, minimum: float | None) -> None:
            if minimum is not None and value is not None and value < minimum:
                reasons.append(f"{name} {value:g} < {minimum:g}")

        def high(name: str, value: float | None, maximum: float | None) -> None:
            if maximum is not None and value is not None and value > maximum:
                reasons.append(f"{name} {value:g} > {maximum:g}")

        low("contrast", d.get("contrast"), t.min_contrast)
        if d.get("ocr") is None:
            reasons.append("ocr read-back not run (outside the top variants)")
        low("ocr read-back", d.get("ocr"), t.min_ocr)
        high("occlusion", d.get("occlusion"), t.max_occlusion)
        low("colourfulness", d.get("colourfulness"), t.min_colourfulness)
        low("sharpness", d.get("sharpness"), t.min_sharpness)
        low("style cosine", scores.style.get("style_cosine"), t.min_style_cosine)
        high("gram distance", scores.style.get("gram_distance"), t.max_gram_distance)
        if scores.fidelity:
            high("self rank", scores.fidelity.get("self_rank") or None, t.max_self_rank)
            low("text similarity", scores.fidelity.get("text_similarity"), t.min_text_similarity)
        return GateDecision(not reasons, tuple(reasons))

    def select(self, scores: Sequence[PosterScores]) -> tuple[int | None, list[GateDecision]]:
        """The index of the best-ranked passing variant (None when none passes: regenerate or
        fall back) and every variant's decision."""
        decisions = [self.check(s) for s in scores]
        passing = [i for i, dec in enumerate(decisions) if dec.passed]
        best = max(passing, key=lambda i: scores[i].total) if passing else None
        return best, decisions
