"""Feature caches for alignment training: the frozen parts of the encoders run once.

Images are cached at the input of MobileNetV2 stage ``CACHE_STAGE`` (``(96, 14, 14)`` fp16), for the
clean view, ``views`` augmented views and, on request, the mirrored clean view (a training view and a
test-time flip); a model that fine-tunes fewer stages derives its inputs
from this cache with the frozen stages in between. Texts are cached as sentence embeddings of the
clean text and of ``views`` augmented variants (field and word dropout).
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from retrieval.encoders import Encoder, MobileNetV2Encoder, load_encoder
from retrieval.encoders.text import text_digest
from crossrec_core.errors import ImageDecodeError
from retrieval.images import ImageInput, augment, load_image, preprocess

__all__ = [
    "CACHE_STAGE", "ImageFeatures", "TextFeatures", "extract_image_features", "extract_text_features",
    "augment_text", "frozen_stages", "lift_features", "lift_to_stages", "image_digest",
]

CACHE_STAGE = 14


@dataclass(frozen=True)
class ImageFeatures:
    """``clean (N, C, H, W)``, ``views (N, V, C, H, W)`` and ``mirrored (N, C, H, W)`` (the clean
    view flipped left-right) fp16 at a MobileNetV2 stage input; ``ok (N,)`` is False where the image
    was missing or did not decode (its rows are zero)."""

    clean: torch.Tensor
    views: torch.Tensor | None
    ok: np.ndarray
    errors: dict[int, str]
    stage: int
    mirrored: torch.Tensor | None = None

    def subset(self, idx: np.ndarray) -> "ImageFeatures":
        idx_t = torch.as_tensor(idx, dtype=torch.long)
        pick = lambda t: None if t is None else t[idx_t]  # noqa: E731
        return ImageFeatures(pick(self.clean), pick(self.views), self.ok[idx], {}, self.stage, pick(self.mirrored))


@dataclass(frozen=True)
class TextFeatures:
    """``clean (N, Dt)`` and ``views (N, V, Dt)`` float32 sentence embeddings."""

    clean: torch.Tensor
    views: torch.Tensor | None

    @staticmethod
    def concat(*parts: "TextFeatures") -> "TextFeatures":
        """Texts of several extractions in order (descriptions, then paraphrases or generated
        queries): a part without views repeats its clean vector as each view, so every text has
        the widest part's ``V`` views."""
        width = max((p.views.shape[1] for p in parts if p.views is not None), default=0)
        clean = torch.cat([p.clean for p in parts])
        if not width:
            return TextFeatures(clean, None)
        views = [p.views[:, :width] if p.views is not None and p.views.shape[1] >= width
                 else p.clean.unsqueeze(1).expand(-1, width, -1) for p in parts]
        return TextFeatures(clean, torch.cat(views))


_SPLIT = re.compile(r"(?<=[.!?;])\s+")


def augment_text(text: str, rng: random.Random, word_dropout: float = 0.1) -> str:
    """Field dropout (drop sentences, keep the first) and 10% word dropout."""
    parts = [p for p in _SPLIT.split(text) if p.strip()]
    kept = parts[:1] + [p for p in parts[1:] if rng.random() > 0.3]
    words = " ".join(kept).split()
    words = [w for i, w in enumerate(words) if i < 2 or rng.random() > word_dropout]
    return " ".join(words) or text


def _key(*parts: object) -> str:
    return hashlib.sha1("|".join(map(str, parts)).encode()).hexdigest()[:20]


def image_digest(images: Sequence[ImageInput | None]) -> str:
    """Content hash of a list of images (the feature-cache key): a file's bytes, an in-memory
    image's pixels; a missing file hashes as missing, so it is recomputed once it exists. A photo
    replaced at the same path gets new features."""
    h = hashlib.sha1()
    for image in images:
        if image is None:
            h.update(b"none")
        elif isinstance(image, Image.Image):
            h.update(f"pil:{image.mode}:{image.size}".encode())
            h.update(image.tobytes())
        else:
            try:
                h.update(hashlib.sha1(Path(image).read_bytes()).digest())
            except OSError:
                h.update(f"missing:{image}".encode())
        h.update(b"\0")
    return h.hexdigest()[:20]


def _legacy_valid(images: Sequence[ImageInput | None], cached: Path) -> bool:
    """A path-keyed cache file (written before keys were content hashes) is still right when every
    image is a file older than it: nothing was replaced since."""
    try:
        built = cached.stat().st_mtime
        return all(not isinstance(i, Image.Image) and Path(i).stat().st_mtime < built for i in images if i is not None)
    except OSError:
        return False


def _cached(cache_dir: str | Path | None, key: str, build, legacy: tuple[str, Callable[[Path], bool]] | None = None):
    """Load ``key`` from ``cache_dir`` or build and save it atomically; ``legacy``: (an older key,
    a check that its file still holds the right value), adopted under ``key`` when it passes."""
    if cache_dir is None:
        return build()
    path = Path(cache_dir) / f"{key}.pt"
    if not path.is_file() and legacy is not None:
        old = Path(cache_dir) / f"{legacy[0]}.pt"
        if old.is_file() and legacy[1](old):
            old.replace(path)
    if path.is_file():
        return torch.load(path, weights_only=False)
    value = build()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(value, tmp)
    tmp.replace(path)
    return value


def _cpu_has_bf16() -> bool:
    """Whether the CPU computes bf16 natively; elsewhere (AVX2 only) torch emulates it about 12x
    slower than fp32 (measured: MobileNetV2, 8 images, 37.9 s bf16 vs 3.1 s fp32)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


_BF16 = _cpu_has_bf16()


def cpu_autocast() -> torch.autocast:
    """bf16 autocast where the CPU has native bf16, a no-op elsewhere (see ``_cpu_has_bf16``)."""
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=_BF16)


def frozen_stages(encoder: MobileNetV2Encoder, x: torch.Tensor, start: int, stop: int, batch: int = 256) -> torch.Tensor:
    """Run frozen stages ``start..stop-1`` in bf16 where the CPU has it natively (AMX, AVX512-BF16),
    fp32 elsewhere; spatial maps stay unpooled (``stop`` 19 gives the ``(B, 1280, 7, 7)`` tokens
    the fusion layer attends over). Without native bf16 they run in float32 through ONNX Runtime
    (``MobileNetV2Encoder.frozen``), which needs far less CPU than torch for these blocks."""
    if not _BF16 and len(x):
        first = encoder.frozen(x[:batch], start, stop)  # None: ONNX Runtime is not used here
        if first is not None:  # the session is open now, so later batches take the same path
            rest = (encoder.frozen(x[i : i + batch], start, stop) for i in range(batch, len(x), batch))
            return torch.cat([y.to(torch.float16).contiguous() for y in itertools.chain([first], rest)])
    out = []
    model = encoder.model.to(memory_format=torch.channels_last)
    with torch.inference_mode(), cpu_autocast():
        for i in range(0, len(x), batch):
            y = model.features[start:stop](x[i : i + batch].float().contiguous(memory_format=torch.channels_last))
            out.append(y.to(torch.float16).contiguous())
    return torch.cat(out) if out else x.new_zeros((0,))


def _extract(images: Sequence[ImageInput | None], views: int, seed: int, mirror: bool,
             encoder: MobileNetV2Encoder, progress: bool, batch_size: int) -> ImageFeatures:
    """Stage-``CACHE_STAGE`` features of the clean (or, with ``mirror``, mirrored) view and
    ``views`` augmented views."""
    rng = random.Random(seed)
    n_views = 1 + views
    clean, aug = [], []
    ok = np.zeros(len(images), dtype=bool)
    errors: dict[int, str] = {}
    zero = None
    desc = f"image features ({n_views} view(s){', mirrored' if mirror else ''})"
    bar = tqdm(total=len(images), desc=desc, disable=not progress)
    for start in range(0, len(images), batch_size):
        batch = []
        for i in range(start, min(start + batch_size, len(images))):
            try:
                if images[i] is None:
                    raise ImageDecodeError("no image")
                img = load_image(images[i])
                first = img.transpose(Image.FLIP_LEFT_RIGHT) if mirror else img
                batch.append([preprocess(first)] + [augment(img, rng) for _ in range(views)])
                ok[i] = True
            except ImageDecodeError as exc:
                errors[i] = str(exc)
                batch.append(None)
        good = [b for b in batch if b is not None]
        feats = None
        if good:
            x = torch.stack([t for b in good for t in b])
            feats = frozen_stages(encoder, x, 0, CACHE_STAGE)
            feats = feats.view(len(good), n_views, *feats.shape[1:])
        j = 0
        for b in batch:
            if b is None:  # zero rows keep positions aligned; ``ok`` marks them
                zero = torch.zeros((n_views, 96, 14, 14), dtype=torch.float16) if zero is None else zero
                clean.append(zero[0])
                aug.append(zero[1:])
            else:
                clean.append(feats[j, 0])
                aug.append(feats[j, 1:])
                j += 1
        bar.update(len(batch))
    bar.close()
    clean_t = torch.stack(clean) if clean else torch.zeros((0, 96, 14, 14), dtype=torch.float16)
    views_t = torch.stack(aug) if views and aug else None
    return ImageFeatures(clean_t, views_t, ok, errors, CACHE_STAGE)


def extract_image_features(
    images: Sequence[ImageInput | None],
    *,
    views: int = 0,
    mirror: bool = False,
    seed: int = 0,
    encoder: MobileNetV2Encoder | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = True,
    batch_size: int = 64,
) -> ImageFeatures:
    """Cache stage-``CACHE_STAGE`` features of the clean view, ``views`` augmented views and, with
    ``mirror``, the mirrored clean view (cached apart, so earlier caches stay valid). The cache is
    keyed by the images' content (``image_digest``), not their paths."""
    encoder = encoder or MobileNetV2Encoder()
    digest = image_digest(images) if cache_dir is not None else ""
    paths = [str(i) for i in images]
    valid = lambda old: _legacy_valid(images, old)  # noqa: E731
    feats = _cached(cache_dir, _key("img-content", CACHE_STAGE, views, seed, encoder.fingerprint, digest),
                    lambda: _extract(images, views, seed, False, encoder, progress, batch_size),
                    legacy=(_key("img", CACHE_STAGE, views, seed, encoder.fingerprint, paths), valid))
    if not mirror:
        return feats
    flipped = _cached(cache_dir, _key("img-content-mirror", CACHE_STAGE, encoder.fingerprint, digest),
                      lambda: _extract(images, 0, seed, True, encoder, progress, batch_size),
                      legacy=(_key("img-mirror", CACHE_STAGE, encoder.fingerprint, paths), valid))
    return dataclasses.replace(feats, mirrored=flipped.clean)


def extract_text_features(
    texts: Sequence[str],
    *,
    views: int = 0,
    seed: int = 0,
    encoder: Encoder | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> TextFeatures:
    """Sentence embeddings of the texts and of ``views`` augmented variants of each."""
    encoder = encoder or load_encoder("minilm")
    key = _key("txt", views, seed, encoder.fingerprint, text_digest(texts))

    def build() -> TextFeatures:
        rng = random.Random(seed)
        clean = torch.from_numpy(encoder.encode(list(texts), progress=progress))
        if not views:
            return TextFeatures(clean, None)
        variants = [augment_text(t, rng) for t in texts for _ in range(views)]
        v = torch.from_numpy(encoder.encode(variants, progress=progress)).view(len(texts), views, -1)
        return TextFeatures(clean, v)

    return _cached(cache_dir, key, build)


def lift_features(feats: ImageFeatures, encoder: MobileNetV2Encoder, stage: int) -> ImageFeatures:
    """Run the frozen stages from ``feats.stage`` up to ``stage`` once (clean and views), so that
    models fine-tuning fewer stages, and every fold of an evaluation, share the work."""
    if stage == feats.stage:
        return feats
    if stage < feats.stage:
        raise ValueError(f"stage={stage} is below the cached stage {feats.stage}; features cannot be lowered")
    clean = frozen_stages(encoder, feats.clean, feats.stage, stage)
    mirrored = None if feats.mirrored is None else frozen_stages(encoder, feats.mirrored, feats.stage, stage)
    views = None
    if feats.views is not None:
        flat = frozen_stages(encoder, feats.views.reshape(-1, *feats.views.shape[2:]), feats.stage, stage)
        views = flat.view(len(feats.clean), feats.views.shape[1], *flat.shape[1:])
    return ImageFeatures(clean, views, feats.ok, feats.errors, stage, mirrored)


def lift_to_stages(feats: ImageFeatures, encoder: MobileNetV2Encoder, stages: set[int]) -> dict[int, ImageFeatures]:
    """``lift_features`` to several stages, chaining upwards so each frozen stage runs once."""
    out, current = {}, feats
    for stage in sorted(stages):
        current = lift_features(current, encoder, stage)
        out[stage] = current
    return out
