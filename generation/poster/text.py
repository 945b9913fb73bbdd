"""Typesetting: fonts, fitting text to a box, and WCAG contrast.

Fonts: DejaVu Sans (shipped with matplotlib) for Latin text; Noto Sans CJK (Debian
``fonts-noto-cjk``) for Chinese when installed, found by :func:`font_path`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import ImageFont

__all__ = [
    "has_cjk", "cjk_font_installed", "font_path", "load_font", "FittedText", "fit_text", "relative_luminance", "contrast_ratio",
    "WCAG_AA", "worst_contrast", "luminance_range",
]

WCAG_AA = 4.5  # minimum contrast for normal-size text (WCAG 2.x, level AA)

_CJK_CANDIDATES = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-{w}.ttc",
    "/usr/share/fonts/opentype/noto-cjk/NotoSansCJK-{w}.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
)


def has_cjk(text: str) -> bool:
    """Whether ``text`` holds CJK ideographs, kana or hangul (needs the CJK font)."""
    return any("\u3040" <= ch <= "\u30ff" or "\u3400" <= ch <= "\u9fff" or "\uac00" <= ch <= "\ud7af"
               or "\uf900" <= ch <= "\ufaff" or "\uff00" <= ch <= "\uffef" for ch in text)


def cjk_font_installed() -> bool:
    """Whether a CJK font is installed (``scripts/setup.sh`` installs ``fonts-noto-cjk`` when
    this says no); without one, CJK text renders in DejaVu as boxes."""
    return font_path(cjk=True) != font_path()


@lru_cache(maxsize=None)
def font_path(bold: bool = False, cjk: bool = False) -> Path:
    """The font file for text of this kind; for CJK, DejaVu when no CJK font is installed (the
    characters then render as boxes, which OCR read-back reports)."""
    if cjk:
        for pattern in _CJK_CANDIDATES:
            path = Path(pattern.format(w="Bold" if bold else "Regular"))
            if path.is_file():
                return path
    import matplotlib

    folder = Path(matplotlib.__file__).parent / "mpl-data" / "fonts" / "ttf"
    return folder / ("DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf")


@lru_cache(maxsize=256)
def load_font(size: int, bold: bool = False, cjk: bool = False) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(os.fspath(font_path(bold, cjk)), size=int(size))


@dataclass(frozen=True)
class FittedText:
    """``lines`` set at ``size`` px; ``line_height`` px apart; ``width``/``height`` of the block."""

    lines: tuple[str, ...]
    size: int
    line_height: int
    width: int
    height: int
    cjk: bool
    bold: bool


def _wrap(text: str, font: ImageFont.FreeTypeFont, width: int, cjk: bool) -> list[str] | None:
    """Greedy wrap to ``width`` px (by characters for CJK, by words otherwise); None when a single
    unit does not fit."""
    units = list(text) if cjk else text.split()
    joiner = "" if cjk else " "
    lines: list[str] = []
    current = ""
    for unit in units:
        trial = unit if not current else current + joiner + unit
        if font.getlength(trial) <= width:
            current = trial
            continue
        if not current or font.getlength(unit) > width:
            return None
        lines.append(current)
        current = unit
    if current:
        lines.append(current)
    return lines


def fit_text(text: str, width: int, height: int, *, bold: bool = False, max_size: int = 96, min_size: int = 9,
             max_lines: int = 3) -> FittedText | None:
    """The largest font size (``min_size``..``max_size``) at which ``text`` wraps into at most
    ``max_lines`` lines inside ``width`` x ``height``; None when even ``min_size`` does not fit."""
    text = " ".join(text.split())
    if not text:
        return None
    cjk = has_cjk(text)
    lo, hi, best = int(min_size), int(max_size), None
    while lo <= hi:  # fitting is monotone in the size: binary search
        size = (lo + hi) // 2
        font = load_font(size, bold, cjk)
        lines = _wrap(text, font, width, cjk)
        line_height = int(round(size * 1.22))
        if lines is not None and len(lines) <= max_lines and line_height * len(lines) <= height:
            widths = [int(np.ceil(font.getlength(line))) for line in lines]
            best = FittedText(tuple(lines), size, line_height, max(widths), line_height * len(lines), cjk, bold)
            lo = size + 1
        else:
            hi = size - 1
    return best


def relative_luminance(rgb) -> np.ndarray:
    """WCAG relative luminance of sRGB colours ``(..., 3)`` in 0..255."""
    c = np.asarray(rgb, dtype=np.float64) / 255.0
    lin = np.where(c <= 0.03928, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    return lin @ np.array([0.2126, 0.7152, 0.0722])


def contrast_ratio(a, b) -> float:
    """WCAG contrast ratio (1..21) of two colours, or of a colour and a luminance in [0, 1]."""
    la = float(relative_luminance(a)) if np.size(a) == 3 else float(a)
    lb = float(relative_luminance(b)) if np.size(b) == 3 else float(b)
    hi, lo = max(la, lb), min(la, lb)
    return (hi + 0.05) / (lo + 0.05)


def luminance_range(pixels: np.ndarray) -> tuple[float, float]:
    """The 5th and 95th percentiles of the WCAG luminance of ``pixels`` ``(..., 3)``."""
    lum = relative_luminance(np.asarray(pixels).reshape(-1, 3))
    lo, hi = np.percentile(lum, [5, 95])
    return float(lo), float(hi)


def worst_contrast(colour, pixels: np.ndarray | tuple[float, float]) -> float:
    """Contrast of ``colour`` against the 5th and 95th luminance percentiles of ``pixels``
    ``(..., 3)`` (or a precomputed :func:`luminance_range`): the ratio most of the background
    reaches, robust to a few stray pixels."""
    lo, hi = pixels if isinstance(pixels, tuple) else luminance_range(pixels)
    return min(contrast_ratio(colour, lo), contrast_ratio(colour, hi))
