"""The offline poster generator: a layout engine over the item's own image.

Layers, bottom to top: a background made from the item image, with a mat around the product
(the template's product region) showing, in proportion to ``controls.personalisation``, the item
image restyled by the user's style vector (the item's own moved by the user's deviation);
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

# Per shape: (product region, text column, alignment) as fractions of (W, H, W, H); one template
# per entry. The square column is a narrow strip at the bottom (top) edge, over the item image
# with an underlay where the image is too busy for 4.5:1: text laid across the image, or an opaque
# band carrying it in the margin, hid enough of the image that the poster no longer found its own
# item among the catalogue posters (NOTES.md, posters, sessions 8 to 11).
_TEMPLATES: dict[str, tuple[tuple[tuple[float, ...], tuple[float, ...], str], ...]] = {
    "square": (
        ((0.04, 0.05, 0.40, 0.80), (0.04, 0.845, 0.80, 0.975), "left"),
        ((0.60, 0.05, 0.96, 0.80), (0.04, 0.845, 0.80, 0.975), "left"),
        ((0.04, 0.22, 0.40, 0.95), (0.04, 0.025, 0.80, 0.155), "left"),
    ),
    "landscape": (
        ((0.03, 0.06, 0.38, 0.94), (0.42, 0.08, 0.97, 0.92), "left"),
        ((0.62, 0.06, 0.97, 0.94), (0.03, 0.08, 0.58, 0.92), "left"),
    ),
    "story": (
        ((0.10, 0.04, 0.90, 0.56), (0.07, 0.60, 0.93, 0.95), "center"),
        ((0.10, 0.42, 0.90, 0.95), (0.07, 0.04, 0.93, 0.39), "center"),
    ),
}
# The most the product inset is enlarged per shape (below ``LayoutConfig.max_upscale``). In the
# square the background, the item image's own centre square, is what finds the item among the
# catalogue posters and a larger inset hides it; in landscape and story the background is a strip
# of the image and the inset carries the item, so it keeps the general limit.
_SHAPE_UPSCALE = {"square": 1.5}
# The square's text strips (its templates' columns, bottom and top edge): a template's own first,
# the other where the source's printed text or a busier image lies under the first.
_EDGE_COLUMNS = {"square": tuple(dict.fromkeys(column for _, column, _ in _TEMPLATES["square"]))}
_FULL_COLUMN = (0.08, 0.08, 0.92, 0.90)


@dataclass(frozen=True)
class LayoutConfig:
    """``max_upscale``: the most a source image is enlarged on the product layer.
    ``find_source_text``: run OCR on the item image to keep new text off text already there.
    ``threads``: onnxruntime threads for style transfer and OCR.
    Background: the item image itself (what keeps the poster recognisably the item's; session 6's
    fully restyled, blurred background lost its own item among the catalogue posters), blurred by
    ``background_blur`` px at 540 px and washed towards the accent colour (``tint`` x 8-22 %).
    The user's look goes on the *mat*: the product region of the template, around the item
    inset, where the item image is hidden by the inset anyway. There the item image restyled by
    the user's style vector covers ``style_strength`` x w of the background, unblurred. (A
    blurred restyle over the whole background, with every colour graded towards the user's
    palette, cost the poster its own item among the catalogue posters at high w.)
    ``steer_gain``: with a :class:`StyleReference` (the catalogue's average look) the style
    vector is the item's moved by ``w x steer_gain`` times the user's deviation from the average
    (``steer_style``); 0, or no reference, mixes towards the user's own mean (``mix_styles``)."""

    max_upscale: float = 2.0
    find_source_text: bool = True
    threads: int = 1
    style_strength: float = 1.0
    background_blur: float = 1.5
    tint: float = 0.5
    steer_gain: float = 2.0

    def __post_init__(self) -> None:
        if not 0.1 <= float(self.max_upscale) <= 2.0:
            raise ValueError(f"max_upscale={self.max_upscale!r}: must be in [0.1, 2.0] (no upscaling beyond 2x)")
        for name in ("style_strength", "tint"):
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
        else:
            image, found, item_palette = None, [], list(NEUTRAL_PALETTE)
            styled = plain = _gradient(size, list(controls.palette) or item_palette)
        user_palette = [tuple(int(v) for v in c) for c in controls.palette]
        # The personalisation knob also decides whose colours lead the accents.
        accents = (user_palette + item_palette) if (user_palette and weight >= 0.5) else (item_palette + user_palette)
        return _Request(item, controls, size, image, styled, plain, found, accents, weight, tuple(notes))

    def _background(self, request: "_Request", rng: np.random.Generator, accent: RGB,
                    product_box: Box | None, region: Box | None = None) -> Image.Image:
        """The background layer of one variant: the item image (blurred a little) tinted towards
        the accent colour, with the user's look on the mat: inside ``region`` (the product
        region, around the inset) the restyled image at share ``style_strength`` x w. Without an
        item image the styled gradient is the whole background."""
        size, cfg = request.size, self.config
        wash = float(rng.uniform(0.08, 0.22))
        canvas = Image.blend(request.plain, Image.new("RGB", size, accent), cfg.tint * wash)
        share = min(1.0, cfg.style_strength * request.weight)
        if request.image is not None and request.styled is not None and region is not None and share > 0:
            mat = Image.blend(canvas.crop(region), request.styled.crop(region), share)
            canvas.paste(mat, region[:2])
        return canvas

    # -- one variant ----------------------------------------------------------------------------
    def _render(self, request: "_Request", copy: PosterCopy, shape: str, seed: int) -> PosterVariant:
        (width, height), image, accents = request.size, request.image, request.accents
        notes = request.notes
        rng = np.random.default_rng(seed)
        templates = _TEMPLATES[shape]
        product_frac, column_frac, align = templates[seed % len(templates)]
        accent = accents[int(rng.integers(min(3, len(accents))))]

        avoid: list[Box] = []
        product_box, scale, region = None, None, None
        if image is not None:
            region = _scaled(product_frac, width, height)
            scale = min(self.config.max_upscale, _SHAPE_UPSCALE.get(shape, 2.0), (region[2] - region[0]) / image.width,
                        (region[3] - region[1]) / image.height)
            pw, ph = max(1, round(image.width * scale)), max(1, round(image.height * scale))
            x0 = region[0] + (region[2] - region[0] - pw) // 2
            y0 = region[1] + (region[3] - region[1] - ph) // 2
            product_box = (x0, y0, x0 + pw, y0 + ph)
        family = STYLE_FAMILIES[seed % len(STYLE_FAMILIES)]  # variants of one request span the families
        canvas = _family_look(self._background(request, rng, accent, product_box, region), family)
        if image is not None:
            _paste_product(canvas, image.resize((pw, ph), Image.LANCZOS), product_box)
            avoid.append(product_box)
            # text printed on the source, where it lands on the (cropped, scaled) background
            avoid += [_map_fit_box(t.box, image.size, (width, height)) for t in request.found]
            column = _scaled(column_frac, width, height)
        else:
            column = _scaled(_FULL_COLUMN, width, height)

        cost = saliency_map(canvas)
        for box in avoid:
            cost[box[1]:box[3], box[0]:box[2]] = 1.0
        if image is not None and shape in _EDGE_COLUMNS:
            # the narrow edge strip goes where it covers the fewest boxes to avoid (the source's own
            # printed text), then the least salient image: the template's own edge on a tie
            options = list(dict.fromkeys([column, *(_scaled(c, width, height) for c in _EDGE_COLUMNS[shape])]))
            column = min((c for c in options if not _overlaps(c, product_box)),
                         key=lambda c: (sum(_overlaps(c, a) for a in avoid), float(cost[c[1]:c[3], c[0]:c[2]].mean())),
                         default=column)

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
                                     accent if role == "headline" else None, accents))
            draw_y += fitted.height + gap
        if copy.badge.strip():
            badge = _draw_badge(canvas, copy.badge, accents[(1 + seed) % len(accents)], cost,
                                avoid + [layer.box for layer in layers])
            if badge is not None:
                layers.append(badge)
        _palette_strip(canvas, accents[:5])
        return PosterVariant(
            image=canvas, item_id=request.item.item_id, shape=shape, seed=seed, generator=self.name,
            text_layers=tuple(layers), product_box=product_box,
            product_scale=None if scale is None else round(float(scale), 4), style_weight=request.weight,
            palette=tuple(accents[:5]), avoid=tuple(avoid), notes=notes,
            extra={"family": family, **self._extra(request)},
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
               preferred: RGB | None, accents: list[RGB]) -> TextLayer:
    """Text in the measured best colour, over an underlay where no colour reaches WCAG AA."""
    font = load_font(fitted.size, fitted.bold, fitted.cjk)
    x0 = column[0] if align == "left" else column[0] + (column[2] - column[0] - fitted.width) // 2
    block = (x0, top, x0 + fitted.width, top + fitted.height)
    pad = max(4, fitted.size // 3)
    padded = (max(0, block[0] - pad), max(0, block[1] - pad), min(canvas.width, block[2] + pad),
              min(canvas.height, block[3] + pad))
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


def _palette_strip(canvas: Image.Image, colours: list[RGB]) -> None:
    """The palette layer: swatches along the bottom edge."""
    if not colours:
        return
    draw = ImageDraw.Draw(canvas)
    w, h = canvas.size
    step = w / len(colours)
    for i, colour in enumerate(colours):
        draw.rectangle((round(i * step), h - 6, round((i + 1) * step), h), fill=tuple(colour))


def _truncate(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"
