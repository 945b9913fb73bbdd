"""Image loading, preprocessing and augmentation in PIL + torch (no torchvision on CPU torch)."""

from __future__ import annotations

import math
import os
import random
from pathlib import Path
from typing import Union

import numpy as np
import torch
from PIL import Image, ImageEnhance, UnidentifiedImageError

from crossrec_core.errors import ImageDecodeError

__all__ = ["ImageInput", "load_image", "preprocess", "augment", "IMAGE_SIZE"]

ImageInput = Union[str, os.PathLike, Image.Image]
IMAGE_SIZE = 224
_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
_STD = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)


def load_image(image: ImageInput) -> Image.Image:
    """Open ``image`` as RGB; raise ``ImageDecodeError`` naming the file if it cannot be decoded."""
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    path = Path(image)
    try:
        with Image.open(path) as img:
            img.load()
            return img.convert("RGB")
    except FileNotFoundError as exc:
        raise ImageDecodeError(f"image {str(path)!r}: no such file") from exc
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise ImageDecodeError(f"image {str(path)!r} does not decode: {exc}") from exc


def _to_tensor(img: Image.Image) -> torch.Tensor:
    arr = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1).float() / 255.0
    return (arr - _MEAN) / _STD


def preprocess(img: Image.Image, size: int = IMAGE_SIZE) -> torch.Tensor:
    """Resize the short side to ``size`` and centre-crop: ``(3, size, size)`` normalised."""
    w, h = img.size
    scale = size / min(w, h)
    img = img.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BICUBIC)
    w, h = img.size
    left, top = (w - size) // 2, (h - size) // 2
    return _to_tensor(img.crop((left, top, left + size, top + size)))


def augment(img: Image.Image, rng: random.Random, size: int = IMAGE_SIZE) -> torch.Tensor:
    """One random view: resized crop (scale 0.5-1), rotation +-15 deg, flip, colour jitter."""
    img = img.rotate(rng.uniform(-15, 15), resample=Image.BILINEAR, expand=False)
    w, h = img.size
    area = w * h * rng.uniform(0.5, 1.0)
    ratio = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
    cw = min(w, int(round(math.sqrt(area * ratio))))
    ch = min(h, int(round(math.sqrt(area / ratio))))
    left, top = rng.randint(0, w - cw), rng.randint(0, h - ch)
    img = img.crop((left, top, left + cw, top + ch)).resize((size, size), Image.BICUBIC)
    if rng.random() < 0.5:
        img = img.transpose(Image.FLIP_LEFT_RIGHT)
    for enhancer in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
        img = enhancer(img).enhance(rng.uniform(0.7, 1.3))
    return _to_tensor(img)
