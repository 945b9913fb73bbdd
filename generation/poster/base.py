"""The poster role: one base, its text input and its result types.

A :class:`PosterGenerator` turns an item, its copy (:class:`PosterCopy`, the headline and tagline
the copywriter chose) and a user's :class:`~generation.types.ControlSignals` into several
:class:`PosterVariant` s of one shape. Every variant records where its layers went (text lines,
product box) so that scoring can check it without re-deriving the layout.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from generation.types import LANGUAGES, ControlSignals, CreativeItem

__all__ = ["SHAPES", "Box", "RGB", "PosterCopy", "TextLine", "TextLayer", "PosterVariant", "PosterGenerator", "check_shape"]

# Output sizes: what 92x138 posters and <=256 px grocery images support with the product layer
# upscaled at most 2x; text and flat shapes render at any size.
SHAPES: dict[str, tuple[int, int]] = {"square": (540, 540), "landscape": (600, 314), "story": (360, 640)}

Box = tuple[int, int, int, int]  # (x0, y0, x1, y1), pixels, x1/y1 exclusive
RGB = tuple[int, int, int]


def check_shape(shape: str) -> tuple[int, int]:
    """``(width, height)`` of a named shape; an unknown name raises ``ValueError``."""
    if shape not in SHAPES:
        raise ValueError(f"shape={shape!r}: allowed {tuple(SHAPES)}")
    return SHAPES[shape]


@dataclass(frozen=True)
class PosterCopy:
    """The words a poster shows. ``headline`` is required; ``tagline`` and ``badge`` (a short
    label such as "New" or a year) may be empty. ``language`` picks the font (a CJK font for
    "zh")."""

    headline: str
    tagline: str = ""
    badge: str = ""
    language: str = "en"

    def __post_init__(self) -> None:
        if not isinstance(self.headline, str) or not self.headline.strip():
            raise ValueError(f"headline={self.headline!r}: must be a non-empty string")
        if self.language not in LANGUAGES:
            raise ValueError(f"language={self.language!r}: allowed {LANGUAGES}")
        for name in ("headline", "tagline", "badge"):
            if len(getattr(self, name)) > 200:
                raise ValueError(f"{name}: {len(getattr(self, name))} characters, at most 200 allowed")


@dataclass(frozen=True)
class TextLine:
    text: str
    box: Box


@dataclass(frozen=True)
class TextLayer:
    """One text element as rendered: ``role`` is headline, tagline or badge; ``contrast`` is the
    WCAG ratio of ``colour`` against the worst background luminance under it (after any
    underlay), ``underlay`` whether a panel was drawn behind the text to reach it."""

    role: str
    text: str
    box: Box
    lines: tuple[TextLine, ...]
    font_size: int
    colour: RGB
    contrast: float
    underlay: bool


@dataclass(frozen=True)
class PosterVariant:
    """One rendered poster ``image`` (RGB, the shape's size) and how it was made.

    ``product_box`` is None when the item had no usable image; ``product_scale`` is the factor
    applied to the source image (never above 2); ``avoid`` lists the boxes text had to keep off
    (the product and text already printed on the source); ``notes`` holds documented fallbacks
    (for example "item image unreadable: layout without product")."""

    image: Image.Image
    item_id: str
    shape: str
    seed: int
    generator: str
    text_layers: tuple[TextLayer, ...]
    product_box: Box | None
    product_scale: float | None
    style_weight: float
    palette: tuple[RGB, ...]
    avoid: tuple[Box, ...] = ()
    notes: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    def layer(self, role: str) -> TextLayer | None:
        return next((t for t in self.text_layers if t.role == role), None)

    def to_dict(self) -> dict[str, Any]:
        """Everything but the pixels, JSON-ready (for scores.json and the asset metadata)."""
        return {
            "item_id": self.item_id, "shape": self.shape, "size": list(self.image.size), "seed": self.seed,
            "generator": self.generator, "style_weight": self.style_weight,
            "product_box": list(self.product_box) if self.product_box else None, "product_scale": self.product_scale,
            "palette": [list(c) for c in self.palette], "avoid": [list(b) for b in self.avoid], "notes": list(self.notes),
            "text_layers": [
                {"role": t.role, "text": t.text, "box": list(t.box), "font_size": t.font_size, "colour": list(t.colour),
                 "contrast": round(t.contrast, 3), "underlay": t.underlay, "lines": [l.text for l in t.lines]}
                for t in self.text_layers
            ],
            **self.extra,
        }


class PosterGenerator(ABC):
    """Makes posters for one (user, item) pair. Implementations: the compositional
    :class:`~generation.poster.layout.LayoutPosterGenerator` (offline default) and
    :class:`~generation.poster.diffusion.DiffusersPosterGenerator` (a local diffusers checkpoint)."""

    name: str = "poster"

    @abstractmethod
    def generate(
        self, item: CreativeItem, copy: PosterCopy, controls: ControlSignals, *,
        n_variants: int = 4, shape: str = "square", seed: int = 0,
    ) -> list[PosterVariant]:
        """``n_variants`` posters of ``shape`` (a key of :data:`SHAPES`), deterministic for a
        ``seed``; variant ``i`` uses seed ``seed + i``."""

    def shapes(self) -> dict[str, tuple[int, int]]:
        """The shapes this generator renders, name -> (width, height)."""
        return dict(SHAPES)

    @staticmethod
    def _check_request(n_variants: int, shape: str) -> tuple[int, int]:
        if not isinstance(n_variants, int) or not 1 <= n_variants <= 64:
            raise ValueError(f"n_variants={n_variants!r}: must be an int in 1..64")
        return check_shape(shape)
