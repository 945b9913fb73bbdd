"""What layout and scoring need to see in an image: a saliency map and text (RapidOCR).

- :func:`saliency_map`: spectral-residual saliency (Hou and Zhang, CVPR 2007), a training-free
  map in [0, 1] of what stands out; text is kept off high values.
- :class:`TextReader`: RapidOCR (PP-OCRv4 ONNX models, Apache-2.0) with one thread; ``find``
  locates text already printed on a source image, ``read`` recognises the text inside given
  boxes (the read-back check of rendered copy, recognition only, batched).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from PIL import Image
from scipy import ndimage

__all__ = ["saliency_map", "FoundText", "TextReader", "default_text_reader"]


def saliency_map(image: Image.Image, width: int = 64) -> np.ndarray:
    """``(H, W)`` float32 saliency in [0, 1] at ``image``'s size (computed at ``width`` px)."""
    w, h = image.size
    small_h = max(8, round(h * width / w))
    gray = np.asarray(image.convert("L").resize((width, small_h), Image.BILINEAR), dtype=np.float64) / 255.0
    spectrum = np.fft.fft2(gray)
    log_amp = np.log(np.abs(spectrum) + 1e-8)
    residual = log_amp - ndimage.uniform_filter(log_amp, size=3, mode="nearest")
    sal = np.abs(np.fft.ifft2(np.exp(residual + 1j * np.angle(spectrum)))) ** 2
    sal = ndimage.gaussian_filter(sal, sigma=max(1.0, width / 32))
    sal -= sal.min()
    if sal.max() > 0:
        sal /= sal.max()
    out = Image.fromarray(sal.astype(np.float32), mode="F").resize((w, h), Image.BILINEAR)
    return np.clip(np.asarray(out, dtype=np.float32), 0.0, 1.0)


@dataclass(frozen=True)
class FoundText:
    """Text found on an image: its axis-aligned ``box`` (x0, y0, x1, y1), string and confidence."""

    box: tuple[int, int, int, int]
    text: str
    score: float


class TextReader:
    """RapidOCR, loaded on first use, pinned to ``threads`` onnxruntime threads. Thread-safe."""

    def __init__(self, threads: int = 1):
        self.threads = int(threads)
        self._engine = None
        self._lock = threading.Lock()

    def _ocr(self):
        if self._engine is None:
            from rapidocr_onnxruntime import RapidOCR

            self._engine = RapidOCR(intra_op_num_threads=self.threads, inter_op_num_threads=1, print_verbose=False)
        return self._engine

    def find(self, image: Image.Image, min_score: float = 0.5) -> list[FoundText]:
        """Text lines printed on ``image`` (detection + recognition)."""
        bgr = np.ascontiguousarray(np.asarray(image.convert("RGB"))[:, :, ::-1])
        with self._lock:
            result, _ = self._ocr()(bgr)
        found = []
        for quad, text, score in result or []:
            pts = np.asarray(quad, dtype=np.float64)
            box = (int(pts[:, 0].min()), int(pts[:, 1].min()), int(np.ceil(pts[:, 0].max())), int(np.ceil(pts[:, 1].max())))
            if float(score) >= min_score:
                found.append(FoundText(box, str(text), float(score)))
        return found

    def read(self, image: Image.Image, boxes: Sequence[tuple[int, int, int, int]], pad: int = 3) -> list[tuple[str, float]]:
        """Recognised (text, confidence) inside each box of ``image``: one text line per box."""
        if not boxes:
            return []
        rgb = np.asarray(image.convert("RGB"))
        h, w = rgb.shape[:2]
        crops = []
        for x0, y0, x1, y1 in boxes:
            x0, y0, x1, y1 = max(0, x0 - pad), max(0, y0 - pad), min(w, x1 + pad), min(h, y1 + pad)
            crop = rgb[y0:max(y1, y0 + 1), x0:max(x1, x0 + 1)]
            crops.append(np.ascontiguousarray(crop[:, :, ::-1]))
        with self._lock:
            results, _ = self._ocr().text_rec(crops)
        return [(str(text), float(score)) for text, score in results]


_DEFAULT: TextReader | None = None


def default_text_reader() -> TextReader:
    """One process-wide reader (the OCR models take about a second to load)."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = TextReader()
    return _DEFAULT
