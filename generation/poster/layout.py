"""The offline poster generator: a layout engine over the item's own image.

Layers, bottom to top: a background made from the item image, overlaid in proportion to
``controls.personalisation`` with the item image restyled by the mixed style vector (the user's
style weighted against the item's own) and colour-graded towards the user's palette;
the product or poster image (never upscaled more than ``max_upscale``); the headline and tagline,
fitted to a text column, placed where the background is least salient and away from text already
printed on the source, in a colour that reaches WCAG 4.5:1 or over an underlay panel; a badge; a
strip of the palette. Variant ``i`` changes the layout template, the background blend and the
accent colour, deterministically from ``seed + i``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageOps

from crossrec_core.errors import ImageDecodeError
from generation.bandit import STYLE_FAMILIES
from generation.poster.base import RGB, Box, PosterCopy, PosterGenerator, PosterVariant, TextLayer, TextLine
from generation.poster.text import (
    WCAG_AA, FittedText, contrast_ratio, fit_text, load_font, luminance_range, relative_luminance, worst_contrast,
)
from generation.poster.vision import FoundText, TextReader, default_text_reader, saliency_map
from generation.style import StyleConfig, StyleModel, StyleReference, mix_styles, open_rgb, palette, steer_style
from generation.types import ControlSignals, CreativeItem

__all__ = ["LayoutConfig", "LayoutPosterGenerator", "NEUTRAL_PALETTE"]

# The documented default for users without history and items without an image: slate, sand, teal.
NEUTRAL_PALETTE: tuple[RGB, ...] = ((38, 50, 72), (232, 221, 203), (42, 157, 143), (244, 162, 97), (231, 111, 81))
_WHITE, _INK = (255, 255, 255), (17, 17, 17)

# Per shape: (product region, text column, alignment, text panel) as fractions of (W, H, W, H);
# one template per entry. The panel is an opaque band in the user's accent colour that carries
# the text in the poster's margin: text laid over the item image took most of the poster's
# recognisability (session 8: Acc@1 1.00 -> 0.64 among catalogue posters), a band at the edge
# keeps the image whole: a 22 % band gave 0.75, this 17 % band with a narrower column 0.90
# (session 9 scratch sample, 20 pairs, w = 0); the badge sits in the band's free right end. Templates without a panel put the text on the image (underlay when needed).
_TEMPLATES: dict[str, tuple[tuple[tuple[float, ...], tuple[float, ...], str, tuple[float, ...] | None], ...]] = {
    "square": (
        ((0.04, 0.05, 0.40, 0.80), (0.04, 0.845, 0.80, 0.975), "left", (0.0, 0.83, 1.0, 1.0)),
        ((0.60, 0.05, 0.96, 0.80), (0.04, 0.845, 0.80, 0.975), "left", (0.0, 0.83, 1.0, 1.0)),
        ((0.04, 0.22, 0.40, 0.95), (0.04, 0.025, 0.80, 0.155), "left", (0.0, 0.0, 1.0, 0.17)),
    ),
    "landscape": (
        ((0.03, 0.06, 0.38, 0.94), (0.42, 0.08, 0.97, 0.92), "left", None),
        ((0.62, 0.06, 0.97, 0.94), (0.03, 0.08, 0.58, 0.92), "left", None),
    ),
    "story": (
        ((0.10, 0.04, 0.90, 0.56), (0.07, 0.60, 0.93, 0.95), "center", None),
        ((0.10, 0.42, 0.90, 0.95), (0.07, 0.04, 0.93, 0.39), "center", None),
    ),
}
_FULL_COLUMN = (0.08, 0.08, 0.92, 0.90)


@dataclass(frozen=True)
class LayoutConfig:
    """``max_upscale``: the most a source image is enlarged on the product layer.
    ``find_source_text``: run OCR on the item image to keep new text off text already there.
    ``threads``: onnxruntime threads for style transfer and OCR.
    Background: the item image itself (what keeps the poster recognisably the item's; session 6's
    fully restyled, blurred background lost its own item among the catalogue posters), with the
    user's look laid over it in proportion to the personalisation weight w:
    ``style_strength`` x w is the styled image's share (times 0.6-1 per variant),
    ``colour_grade`` x w how far the item image's mean colour moves to the user's palette,
    ``background_blur`` the item image's blur radius in px at 540 px, ``tint`` scales the
    accent-colour wash (8-22 %).
    ``steer_gain``: with a :class:`StyleReference` (the catalogue's average look) the style
    vector is the item's moved by ``w x steer_gain`` times the user's deviation from the average
    (``steer_style``) and the colour grade moves the item's colours by the user's palette's
    deviation from the average colour; 0, or no reference, mixes towards the user's own mean as
    before (``mix_styles``)."""

    max_upscale: float = 2.0
    find_source_text: bool = True
    threads: int = 1
    style_strength: float = 0.7
    background_blur: float = 1.5
    colour_grade: float = 0.5
    tint: float = 0.5
    steer_gain: float = 2.0

    def __post_init__(self) -> None:
        if not 0.1 <= float(self.max_upscale) <= 2.0:
            raise ValueError(f"max_upscale={self.max_upscale!r}: must be in [0.1, 2.0] (no upscaling beyond 2x)")
        for name in ("style_strength", "colour_grade", "tint"):
            if not 0.0 <= float(getattr(self, name)) <= 1.0:
                raise ValueError(f"{name}={getattr(self, name)!r}: must be in [0, 1]")
        if not 0.0 <= float(self.steer_gain) <= 8.0:
            raise ValueError(f"steer_gain={self.steer_gain!r}: must be in [0, 8]")
        if not 0.0 <= float(self.background_blur) <= 32.0:
            raise ValueError(f"background_blur={self.background_blur!r}: must be in [0, 32] px")


def _scaled(frac: tuple[float, ...], w: int, h: int) -> Box:
    return (round(frac[0] * w), round(frac[1] * h), round(frac[2] * w), round(frac[3] * h))


def _overlaps(a: Box, b: Box) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


class LayoutPosterGenerator(PosterGenerator):
    """Compositional posters; the offline default. Models (style transfer, OCR) load on first use;
    pass ``style_model``/``text_reader`` to share them with scoring; ``reference`` (the catalogue's
    average look) turns on steering by the user's deviation (``LayoutConfig.steer_gain``)."""

    name = "layout"

    def __init__(self, config: LayoutConfig = LayoutConfig(), *, style_model: StyleModel | None = None,
                 text_reader: TextReader | None = None, reference: StyleReference | None = None):
        self.config = config
        self.reference = reference
        self.style_model = style_model or StyleModel(StyleConfig(threads=config.threads))
        self.text_reader = text_reader or default_text_reader()
        self._source_cache: dict[tuple[str, float], tuple[Image.Image, np.ndarray, list[FoundText]]] = {}
        self._lock = threading.Lock()

    # -- the item's image, its style and its text, once per file --------------------------------
    def _source(self, item: CreativeItem) -> tuple[Image.Image, np.ndarray, list[FoundText]]:
        path = Path(item.image)
        key = (str(path.resolve()), path.stat().st_mtime if path.exists() else 0.0)
        with self._lock:
            if key in self._source_cache:
                return self._source_cache[key]
        image = open_rgb(path, "item.image")
        style = self.style_model.style_vector(image)[0]
        found = self.text_reader.find(image) if self.config.find_source_text and min(image.size) >= 24 else []
        with self._lock:
            if len(self._source_cache) > 512:
                self._source_cache.clear()
            self._source_cache[key] = (image, style, found)
        return image, style, found

    def generate(self, item: CreativeItem, copy: PosterCopy, controls: ControlSignals, *,
                 n_variants: int = 4, shape: str = "square", seed: int = 0) -> list[PosterVariant]:
        """See :meth:`PosterGenerator.generate`. An item without an image, or with an unreadable
        one, gets a layout without product over a palette gradient (said in ``notes``)."""
        size = self._check_request(n_variants, shape)
        request = self._prepare(item, controls, size, seed)
        return [self._render(request, copy, shape, seed + i) for i in range(n_variants)]

    def _prepare(self, item: CreativeItem, controls: ControlSignals, size: tuple[int, int], seed: int) -> "_Request":
        """What every variant of one request shares: the source, its style and palette, the
        styled and plain backgrounds."""
        notes: list[str] = []
        source = None
        if item.image is None:
            notes.append("item has no image: layout without product")
        else:
            try:
                source = self._source(item)
            except ImageDecodeError as exc:
                notes.append(f"item image unreadable ({exc}): layout without product")
        weight = float(controls.personalisation)
        if source is not None:
            image, item_style, found = source
            item_palette = [tuple(int(v) for v in c) for c in palette([image], k=5, seed=seed)]
            steer = self.reference is not None and self.config.steer_gain > 0
            vector = (steer_style(controls.style_vector, item_style, weight, self.reference, self.config.steer_gain)
                      if steer else mix_styles(controls.style_vector, item_style, weight))
            styled = self.style_model.stylize(image, vector, size) if self.config.style_strength * weight > 0 else None
            plain = ImageOps.fit(image, size, Image.LANCZOS)
            if self.config.background_blur > 0:
                plain = plain.filter(ImageFilter.GaussianBlur(self.config.background_blur * size[0] / 540))
            if controls.palette and self.config.colour_grade > 0 and weight > 0:
                target = np.asarray(controls.palette, np.float32).mean(axis=0)
                if steer:  # the user's deviation from the average colour, from the item's own mean
                    target = np.asarray(plain, np.float32).reshape(-1, 3).mean(axis=0) + self.config.steer_gain * (
                        target - np.asarray(self.reference.colour, np.float32))
                plain = _grade(plain, target, self.config.colour_grade * weight)
        else:
            image, found, item_palette = None, [], list(NEUTRAL_PALETTE)
            styled = plain = _gradient(size, list(controls.palette) or item_palette)
        user_palette = [tuple(int(v) for v in c) for c in controls.palette]
        # The personalisation knob also decides whose colours lead the accents.
        accents = (user_palette + item_palette) if (user_palette and weight >= 0.5) else (item_palette + user_palette)
        return _Request(item, controls, size, image, styled, plain, found, accents, weight, tuple(notes))

    def _background(self, request: "_Request", rng: np.random.Generator, accent: RGB,
                    product_box: Box | None) -> Image.Image:
        """The background layer of one variant: the styled image over the blurred plain one,
        tinted towards the accent colour."""
        size, cfg = request.size, self.config
        alpha, blur, wash = (float(v) for v in (rng.uniform(0.6, 1.0), rng.uniform(1.5, 4.0), rng.uniform(0.08, 0.22)))
        canvas = request.plain
        if request.styled is not None:
            styled = request.styled.filter(ImageFilter.GaussianBlur(blur * size[0] / 540))
            share = cfg.style_strength * request.weight * alpha
            canvas = Image.blend(canvas, styled, share) if request.image is not None else styled
        return Image.blend(canvas, Image.new("RGB", size, accent), cfg.tint * wash)

    # -- one variant ----------------------------------------------------------------------------
    def _render(self, request: "_Request", copy: PosterCopy, shape: str, seed: int) -> PosterVariant:
        (width, height), image, accents = request.size, request.image, request.accents
        notes = request.notes
        rng = np.random.default_rng(seed)
        templates = _TEMPLATES[shape]
        product_frac, column_frac, align, panel_frac = templates[seed % len(templates)]
        accent = accents[int(rng.integers(min(3, len(accents))))]

        avoid: list[Box] = []
        product_box, scale = None, None
        if image is not None:
            region = _scaled(product_frac, width, height)
            scale = min(self.config.max_upscale, (region[2] - region[0]) / image.width, (region[3] - region[1]) / image.height)
            pw, ph = max(1, round(image.width * scale)), max(1, round(image.height * scale))
            x0 = region[0] + (region[2] - region[0] - pw) // 2
            y0 = region[1] + (region[3] - region[1] - ph) // 2
            product_box = (x0, y0, x0 + pw, y0 + ph)
        family = STYLE_FAMILIES[seed % len(STYLE_FAMILIES)]  # variants of one request span the families
        canvas = _family_look(self._background(request, rng, accent, product_box), family)
        if image is not None:
            _paste_product(canvas, image.resize((pw, ph), Image.LANCZOS), product_box)
            avoid.append(product_box)
            # text printed on the source, where it lands on the (cropped, scaled) background
            avoid += [_map_fit_box(t.box, image.size, (width, height)) for t in request.found]
            column = _scaled(column_frac, width, height)
        else:
            column = _scaled(_FULL_COLUMN, width, height)

        panel = None
        if panel_frac is not None and image is not None:  # without an image the text takes the whole canvas
            panel = _scaled(panel_frac, width, height)
            _draw_panel(canvas, panel, accents)
            # the opaque panel hides the source's own text under it: only what shows stays to avoid
            avoid = [b for b in (_off_panel(box, panel) for box in avoid) if b is not None]
        cost = saliency_map(canvas)
        for box in avoid:
            cost[box[1]:box[3], box[0]:box[2]] = 1.0

        layers: list[TextLayer] = []
        head_size = fit_text(copy.headline, column[2] - column[0], int((column[3] - column[1]) * 0.55), bold=True,
                             max_size=max(14, height // 9), max_lines=3)
        tag_size = None
        if copy.tagline.strip():
            cap = max(10, int((head_size.size if head_size else 24) * 0.55))
            tag_size = fit_text(copy.tagline, column[2] - column[0], int((column[3] - column[1]) * 0.30), max_size=cap,
                                max_lines=3)
        if head_size is None:
            notes = notes + ("headline does not fit its column at the minimum size: truncated",)
            head_size = fit_text(_truncate(copy.headline, 40), column[2] - column[0], column[3] - column[1], bold=True,
                                 max_lines=4)
        gap = int(head_size.line_height * 0.4) if head_size else 0
        block_h = (head_size.height if head_size else 0) + (gap + tag_size.height if tag_size else 0)
        top = _least_salient_top(cost, column, block_h, avoid)
        draw_y = top
        for role, fitted in (("headline", head_size), ("tagline", tag_size)):
            if fitted is None:
                continue
            layers.append(_draw_text(canvas, role, fitted, column, draw_y, align,
                                     accent if role == "headline" else None, accents, panel))
            draw_y += fitted.height + gap
        if copy.badge.strip():
            badge = _draw_badge(canvas, copy.badge, accents[(1 + seed) % len(accents)], cost,
                                avoid + [layer.box for layer in layers])
            if badge is not None:
                layers.append(badge)
        _palette_strip(canvas, accents[:5], panel)
        return PosterVariant(
            image=canvas, item_id=request.item.item_id, shape=shape, seed=seed, generator=self.name,
            text_layers=tuple(layers), product_box=product_box,
            product_scale=None if scale is None else round(float(scale), 4), style_weight=request.weight,
            palette=tuple(accents[:5]), avoid=tuple(avoid), notes=notes, extra={"family": family, **self._extra(request)},
        )

    def _extra(self, request: "_Request") -> dict:
        """Generator-specific fields for :meth:`PosterVariant.to_dict`."""
        return {}


def _family_look(canvas: Image.Image, family: str) -> Image.Image:
    """The background in the look of a style family (the bandit's arms: ``STYLE_FAMILIES``); text
    is placed afterwards, so its contrast is checked against this look."""
    if family == "minimal":
        return Image.blend(canvas, Image.new("RGB", canvas.size, (246, 245, 240)), 0.55)
    if family == "bold":
        return ImageEnhance.Contrast(ImageEnhance.Color(canvas).enhance(1.8)).enhance(1.25)
    if family == "vintage":
        sepia = ImageOps.colorize(ImageOps.grayscale(canvas), (52, 34, 18), (250, 232, 196))
        return Image.blend(canvas, sepia, 0.75)
    if family == "noir":
        return ImageEnhance.Contrast(ImageOps.grayscale(canvas).convert("RGB")).enhance(1.3)
    if family == "pastel":
        return Image.blend(ImageEnhance.Color(canvas).enhance(0.55), Image.new("RGB", canvas.size, (255, 255, 255)), 0.35)
    return canvas  # photo: the styled photograph as it is


@dataclass(frozen=True)
class _Request:
    item: CreativeItem
    controls: ControlSignals
    size: tuple[int, int]
    image: Image.Image | None
    styled: Image.Image | None
    plain: Image.Image
    found: list[FoundText]
    accents: list[RGB]
    weight: float
    notes: tuple[str, ...]


# -- drawing helpers ----------------------------------------------------------------------------

def _gradient(size: tuple[int, int], colours: list[RGB]) -> Image.Image:
    """A vertical gradient between the first two colours (the no-image background)."""
    a, b = np.asarray(colours[0], np.float32), np.asarray(colours[1 % len(colours)], np.float32)
    t = np.linspace(0.0, 1.0, size[1], dtype=np.float32)[:, None, None]
    rows = (a * (1 - t) + b * t).repeat(size[0], axis=1)
    return Image.fromarray(np.clip(rows + 0.5, 0, 255).astype(np.uint8))


def _grade(image: Image.Image, target: np.ndarray, strength: float) -> Image.Image:
    """``image`` with its mean colour moved ``strength`` of the way to ``target`` ``(3,)`` (a
    colour cast: edges and layout, which identify the item, stay)."""
    pixels = np.asarray(image, np.float32)
    shift = np.asarray(target, np.float32) - pixels.reshape(-1, 3).mean(axis=0)
    return Image.fromarray(np.clip(pixels + strength * shift + 0.5, 0, 255).astype(np.uint8))


def _map_fit_box(box: Box, src: tuple[int, int], dst: tuple[int, int]) -> Box:
    """Where ``box`` of a ``src``-sized image lands after ``ImageOps.fit`` to ``dst``."""
    scale = max(dst[0] / src[0], dst[1] / src[1])
    ox, oy = (src[0] * scale - dst[0]) / 2, (src[1] * scale - dst[1]) / 2
    x0, y0 = max(0, int(box[0] * scale - ox)), max(0, int(box[1] * scale - oy))
    x1, y1 = min(dst[0], int(np.ceil(box[2] * scale - ox))), min(dst[1], int(np.ceil(box[3] * scale - oy)))
    return (x0, y0, max(x0, x1), max(y0, y1))


def _paste_product(canvas: Image.Image, product: Image.Image, box: Box) -> None:
    shadow = Image.new("L", canvas.size, 0)
    ImageDraw.Draw(shadow).rectangle((box[0] + 4, box[1] + 6, box[2] + 4, box[3] + 6), fill=110)
    shadow = shadow.filter(ImageFilter.GaussianBlur(6))
    canvas.paste(Image.new("RGB", canvas.size, (0, 0, 0)), (0, 0), shadow)
    ImageDraw.Draw(canvas).rectangle((box[0] - 3, box[1] - 3, box[2] + 2, box[3] + 2), fill=_WHITE)
    canvas.paste(product, box[:2])


def _off_panel(box: Box, panel: Box) -> Box | None:
    """The part of ``box`` outside a full-width edge ``panel`` (None when the panel covers it)."""
    x0, y0, x1, y1 = box
    if panel[1] == 0:
        y0 = max(y0, panel[3])
    else:
        y1 = min(y1, panel[1])
    return (x0, y0, x1, y1) if y1 > y0 else None


def _least_salient_top(cost: np.ndarray, column: Box, block_h: int, avoid: list[Box]) -> int:
    """The top y of a ``block_h`` block in ``column`` with the least mean cost (saliency, or 1
    inside boxes to avoid), over positions every 4 px."""
    x0, y0, x1, y1 = column
    last = max(y0, y1 - block_h)
    best, best_cost = y0, np.inf
    for y in range(y0, last + 1, 4):
        box = (x0, y, x1, y + block_h)
        c = float(cost[y:y + block_h, x0:x1].mean()) if block_h > 0 else 0.0
        c += sum(1.0 for a in avoid if _overlaps(box, a))
        if c < best_cost - 1e-6:
            best, best_cost = y, c
    return best


def _draw_text(canvas: Image.Image, role: str, fitted: FittedText, column: Box, top: int, align: str,
               preferred: RGB | None, accents: list[RGB], panel: Box | None = None) -> TextLayer:
    """Text in the measured best colour; ``panel`` (the text panel's box) bounds the area whose
    contrast is measured, so the item image beside the panel does not count."""
    font = load_font(fitted.size, fitted.bold, fitted.cjk)
    x0 = column[0] if align == "left" else column[0] + (column[2] - column[0] - fitted.width) // 2
    block = (x0, top, x0 + fitted.width, top + fitted.height)
    pad = max(4, fitted.size // 3)
    bounds = panel or (0, 0, canvas.width, canvas.height)
    padded = (max(bounds[0], block[0] - pad), max(bounds[1], block[1] - pad), min(bounds[2], block[2] + pad),
              min(bounds[3], block[3] + pad))
    region = np.asarray(canvas.crop(padded))
    lum = luminance_range(region)
    candidates = ([preferred] if preferred else []) + [_WHITE, _INK] + list(accents)
    colour = max(candidates, key=lambda c: worst_contrast(c, lum))
    if preferred and worst_contrast(preferred, lum) >= WCAG_AA:
        colour = preferred
    underlay = worst_contrast(colour, lum) < WCAG_AA
    if underlay:
        # a panel dark or light enough that white or ink reaches the ratio; opaque as needed
        dark = relative_luminance(region.reshape(-1, 3)).mean() < 0.4
        panel = _INK if dark else (248, 246, 240)
        for alpha in (200, 235, 255):
            patch = canvas.crop(padded)
            overlay = patch.copy()
            ImageDraw.Draw(overlay).rounded_rectangle((0, 0, patch.width - 1, patch.height - 1), radius=pad, fill=panel)
            trial = Image.blend(patch, overlay, alpha / 255)
            # the rounded corners stay background: measure inside the straight part only
            lum = luminance_range(np.asarray(trial)[pad: max(pad + 1, trial.height - pad)])
            colour = max([_WHITE, _INK] + list(accents), key=lambda c: worst_contrast(c, lum))
            if worst_contrast(colour, lum) >= WCAG_AA:
                break
        canvas.paste(trial, padded[:2])
    contrast = worst_contrast(colour, lum)
    draw = ImageDraw.Draw(canvas)
    lines = []
    for n, line in enumerate(fitted.lines):
        lx = x0 if align == "left" else column[0] + (column[2] - column[0] - int(np.ceil(font.getlength(line)))) // 2
        ly = top + n * fitted.line_height
        draw.text((lx, ly), line, font=font, fill=colour)
        bx = draw.textbbox((lx, ly), line, font=font)
        lines.append(TextLine(line, (int(bx[0]), int(bx[1]), int(bx[2]), int(bx[3]))))
    text = (" " if not fitted.cjk else "").join(fitted.lines)
    return TextLayer(role, text, padded, tuple(lines), fitted.size, tuple(int(v) for v in colour), float(contrast), underlay)


def _draw_badge(canvas: Image.Image, text: str, fill: RGB, cost: np.ndarray, taken: list[Box]) -> TextLayer | None:
    width, height = canvas.size
    fitted = fit_text(text, int(width * 0.3), int(height * 0.07), bold=True, max_size=max(12, height // 22), max_lines=1)
    if fitted is None:
        return None
    pad = max(4, fitted.size // 2)
    bw, bh = fitted.width + 2 * pad, fitted.height + pad
    margin = int(min(width, height) * 0.03)
    corners = [(margin, margin), (width - margin - bw, margin), (margin, height - margin - bh - 8),
               (width - margin - bw, height - margin - bh - 8)]
    boxes = [(x, y, x + bw, y + bh) for x, y in corners]
    free = [b for b in boxes if not any(_overlaps(b, t) for t in taken)]
    if not free:
        return None
    box = min(free, key=lambda b: float(cost[b[1]:b[3], b[0]:b[2]].mean()))
    draw = ImageDraw.Draw(canvas)
    # a mid-luminance accent gives white or ink text only about 4.35:1: move the fill until it reads
    fill, colour = _readable_fill(fill, WCAG_AA + 0.5)
    draw.rounded_rectangle(box, radius=bh // 2, fill=fill)
    font = load_font(fitted.size, True, fitted.cjk)
    draw.text((box[0] + pad, box[1] + pad // 2), fitted.lines[0], font=font, fill=colour)
    bx = draw.textbbox((box[0] + pad, box[1] + pad // 2), fitted.lines[0], font=font)
    line = TextLine(fitted.lines[0], (int(bx[0]), int(bx[1]), int(bx[2]), int(bx[3])))
    return TextLayer("badge", fitted.lines[0], box, (line,), fitted.size, colour, contrast_ratio(colour, fill), True)


def _readable_fill(fill: RGB, target: float) -> tuple[RGB, RGB]:
    """``(fill, text colour)``: white or ink, whichever reads better on ``fill``, and ``fill``
    moved towards black (under white) or white (under ink) in tenths until the pair reaches
    ``target``:1 (black under white is 21:1, so the loop always ends there at worst)."""
    text = max((_WHITE, _INK), key=lambda c: contrast_ratio(c, fill))
    base = np.asarray(fill, np.float32)
    end = np.zeros(3, np.float32) if text == _WHITE else np.full(3, 255.0, np.float32)
    for k in range(11):
        colour = tuple(int(round(v)) for v in base + (end - base) * (0.1 * k))
        if contrast_ratio(text, colour) >= target:
            break
    return colour, text


def _draw_panel(canvas: Image.Image, box: Box, accents: list[RGB]) -> None:
    """The text panel: an opaque band in the darkest accent, moved until white or ink text on it
    reaches WCAG AA with a margin (the text colour is still chosen by measured contrast)."""
    colour, _ = _readable_fill(min(accents, key=lambda c: float(relative_luminance(c))), WCAG_AA + 1.0)
    ImageDraw.Draw(canvas).rectangle((box[0], box[1], box[2] - 1, box[3] - 1), fill=colour)


def _palette_strip(canvas: Image.Image, colours: list[RGB], panel: Box | None = None) -> None:
    """The palette layer: swatches along the bottom edge, or along the text panel's outer edge
    (the canvas border it touches): at the inner edge the swatches ran under the text's last
    line, and a light swatch there took the text below 4.5:1."""
    if not colours:
        return
    draw = ImageDraw.Draw(canvas)
    w, h = canvas.size
    x0, x1, y0, y1 = (0, w, h - 6, h) if panel is None else (
        (panel[0], panel[2], panel[1], panel[1] + 6) if panel[1] == 0 else (panel[0], panel[2], panel[3] - 6, panel[3]))
    step = (x1 - x0) / len(colours)
    for i, colour in enumerate(colours):
        draw.rectangle((round(x0 + i * step), y0, round(x0 + (i + 1) * step), y1), fill=tuple(colour))


def _truncate(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"
