"""Posters: the ``PosterGenerator`` role, the offline layout engine and the diffusers path.

Importing this package loads no model (style transfer, OCR and diffusers load on first use).
"""

from generation.poster.base import SHAPES, PosterCopy, PosterGenerator, PosterVariant, TextLayer, TextLine, check_shape
from generation.poster.diffusion import DiffusersPosterGenerator, DiffusionConfig, build_prompt
from generation.poster.layout import NEUTRAL_PALETTE, LayoutConfig, LayoutPosterGenerator
from generation.poster.text import WCAG_AA, contrast_ratio, fit_text, relative_luminance, worst_contrast
from generation.poster.vision import TextReader, default_text_reader, saliency_map

__all__ = [
    "SHAPES", "PosterCopy", "PosterGenerator", "PosterVariant", "TextLayer", "TextLine", "check_shape",
    "NEUTRAL_PALETTE", "LayoutConfig", "LayoutPosterGenerator", "DiffusersPosterGenerator", "DiffusionConfig",
    "build_prompt",
    "WCAG_AA", "contrast_ratio", "fit_text", "relative_luminance", "worst_contrast",
    "TextReader", "default_text_reader", "saliency_map",
]
