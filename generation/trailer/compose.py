"""The offline frame source: item images composed with PIL/numpy, with camera motion.

- image shot: the item image at most 2x its own size (no upscaling claims) over a blurred,
  darkened cover of itself; the camera zooms from the whole frame toward the image's most salient
  point (spectral-residual saliency).
- styled shot: the same layout over the item restyled with the user's style vector mixed with the
  item's own (Magenta, when a :class:`~generation.style.StyleModel` is given) or, without one, a
  duotone of the item in the user's palette; the camera pans across it.
- title and end cards: a gradient in the user's palette with the card's text, slowly zooming.

Each shot's canvas is built once, ``zoom`` times the frame size, and frames are crops of it
sampled to the frame (sub-pixel positions, so the motion is smooth); only the current shot's canvas
is kept.
"""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageOps

from generation.poster.text import fit_text, load_font
from generation.poster.vision import saliency_map
from generation.style import StyleModel, mix_styles, open_rgb
from generation.trailer.base import FrameSource, Shot, TrailerConfig
from generation.types import ControlSignals

__all__ = ["ComposedFrames", "DEFAULT_PALETTE"]

DEFAULT_PALETTE = ((24, 28, 48), (196, 64, 72), (236, 200, 120))
_MAX_UPSCALE = 2.0


def _ease(t: np.ndarray | float):
    return 0.5 - 0.5 * np.cos(np.pi * np.clip(t, 0.0, 1.0))


class ComposedFrames(FrameSource):
    """Frames composed from item images; ``style`` (optional) restyles the styled shots."""

    def __init__(self, config: TrailerConfig, controls: ControlSignals, *, style: StyleModel | None = None) -> None:
        self.config, self.controls, self.style = config, controls, style
        self.palette = tuple(controls.palette) or DEFAULT_PALETTE
        self._canvas: tuple[int, Image.Image, tuple[float, float], tuple[float, float]] | None = None

    # -- shot canvases -----------------------------------------------------------------------------
    def _canvas_size(self) -> tuple[int, int]:
        w, h = self.config.size
        return round(w * self.config.zoom), round(h * self.config.zoom)

    def _gradient(self, size: tuple[int, int]) -> Image.Image:
        w, h = size
        a, b = np.array(self.palette[0], float), np.array(self.palette[min(1, len(self.palette) - 1)], float)
        t = np.linspace(0, 1, h)[:, None, None]
        rows = (a * (1 - t) + b * t * 0.6).astype(np.uint8)  # darkened toward the bottom for text contrast
        return Image.fromarray(np.broadcast_to(rows, (h, w, 3)).copy())

    def _card(self, shot: Shot) -> Image.Image:
        cw, ch = self._canvas_size()
        canvas = self._gradient((cw, ch))
        draw = ImageDraw.Draw(canvas)
        fitted = fit_text(shot.caption, int(cw * 0.7), int(ch * 0.3), bold=True, max_size=int(ch * 0.06), max_lines=4)
        if fitted is not None:
            font = load_font(fitted.size, True, fitted.cjk)
            y = (ch - fitted.height) // 2
            for line in fitted.lines:
                x = (cw - font.getlength(line)) / 2
                draw.text((x, y), line, font=font, fill=(255, 255, 255))
                y += fitted.line_height
        if shot.kind == "end":
            small = load_font(max(10, int(ch * 0.022)))
            label = "AI-generated"
            draw.text(((cw - small.getlength(label)) / 2, ch * 0.88), label, font=small, fill=(230, 230, 230))
        return canvas

    def _duotone(self, img: Image.Image) -> Image.Image:
        gray = np.asarray(img.convert("L"), dtype=np.float32)[..., None] / 255.0
        dark, light = np.array(self.palette[0], float), np.array(self.palette[-1], float)
        return Image.fromarray((dark * (1 - gray) + light * gray).astype(np.uint8))

    def _styled_background(self, img: Image.Image, size: tuple[int, int]) -> Image.Image:
        if self.style is not None and self.controls.style_vector is not None:
            own = self.style.style_vector(img)[0]
            vector = mix_styles(np.asarray(self.controls.style_vector, np.float32), own, self.controls.personalisation)
            return self.style.stylize(img, vector, size)
        return self._duotone(ImageOps.fit(img, size, Image.BILINEAR))

    def _image_canvas(self, shot: Shot) -> tuple[Image.Image, tuple[float, float]]:
        cw, ch = self._canvas_size()
        img = open_rgb(shot.item.image, f"item {shot.item.item_id} image")
        if shot.kind == "styled":
            bg = self._styled_background(img, (cw, ch))
        else:
            bg = ImageOps.fit(img, (cw // 4, ch // 4), Image.BILINEAR).filter(ImageFilter.GaussianBlur(3))
            bg = Image.eval(bg.resize((cw, ch), Image.BILINEAR), lambda v: int(v * 0.55))
        scale = min(_MAX_UPSCALE, 0.8 * cw / img.width, 0.62 * ch / img.height)
        fw, fh = max(1, round(img.width * scale)), max(1, round(img.height * scale))
        fg = img.resize((fw, fh), Image.LANCZOS)
        x0, y0 = (cw - fw) // 2, int(ch * 0.42 - fh / 2)
        shadow = Image.new("L", (cw, ch), 0)
        ImageDraw.Draw(shadow).rectangle((x0 + 6, y0 + 8, x0 + fw + 6, y0 + fh + 8), fill=140)
        bg.paste((0, 0, 0), mask=shadow.filter(ImageFilter.GaussianBlur(8)))
        bg.paste(fg, (x0, y0))
        sal = saliency_map(fg)
        ys, xs = np.unravel_index(int(np.argmax(sal)), sal.shape)
        focus = ((x0 + xs) / cw, (y0 + ys) / ch)
        return bg, focus

    def _prepare(self, shot: Shot, shot_index: int):
        if self._canvas is None or self._canvas[0] != shot_index:
            if shot.kind in ("title", "end"):
                canvas, focus = self._card(shot), (0.5, 0.5)
            else:
                canvas, focus = self._image_canvas(shot)
            rng = np.random.default_rng(self.config.seed + shot_index)
            # styled shots pan from one side to the other; the others zoom toward the focus
            pan = (float(rng.choice([-1.0, 1.0])), 0.0) if shot.kind == "styled" else (0.0, 0.0)
            self._canvas = (shot_index, np.ascontiguousarray(np.asarray(canvas)), focus, pan)
        return self._canvas[1:]

    # -- frames ------------------------------------------------------------------------------------
    def render_chunk(self, shot: Shot, shot_index: int, start: int, n: int, seed: np.ndarray | None) -> np.ndarray:
        canvas, focus, pan = self._prepare(shot, shot_index)
        w, h = self.config.size
        ch, cw = canvas.shape[:2]
        total = shot.chunks * self.config.chunk_frames
        out = np.empty((n, h, w, 3), dtype=np.uint8)
        for k in range(n):
            t = float(_ease((start + k) / max(1, total - 1)))
            if pan != (0.0, 0.0):  # a full-canvas-height window sliding sideways
                bw, bh = cw / self.config.zoom, ch / self.config.zoom
                x0 = (cw - bw) * (t if pan[0] > 0 else 1 - t)
                y0 = (ch - bh) / 2
            else:  # from the whole canvas to 1/zoom of it, centred on the focus
                scale = 1.0 - (1.0 - 1.0 / self.config.zoom) * t
                bw, bh = cw * scale, ch * scale
                x0 = min(max(focus[0] * cw - bw / 2, 0.0), cw - bw) * t + (cw - bw) / 2 * (1 - t)
                y0 = min(max(focus[1] * ch - bh / 2, 0.0), ch - bh) * t + (ch - bh) / 2 * (1 - t)
            # a bilinear affine sample (OpenCV, a dependency of rapidocr and invisible-watermark):
            # the scale stays within 1..zoom, so PIL resize()'s antialiasing buys nothing and costs 2-3x
            cv2.warpAffine(canvas, np.array([[bw / w, 0.0, x0], [0.0, bh / h, y0]]), (w, h), dst=out[k],
                           flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)
        return out

    def close(self) -> None:
        self._canvas = None
