"""Image encoder: ImageNet MobileNetV2 (offline weights), plain torch."""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from retrieval.encoders.base import Encoder
from retrieval.encoders.mobilenet import FEATURE_DIM, MobileNetV2, mobilenet_v2_imagenet
from crossrec_core.errors import ImageDecodeError
from retrieval.images import ImageInput, load_image, preprocess

__all__ = ["MobileNetV2Encoder", "LoadedImages", "EncodedImages", "load_images"]

log = logging.getLogger(__name__)
_ORT_BATCH = 8  # ONNX Runtime's CPU time per image is lowest at small batches (cache-resident activations)


@dataclass(frozen=True)
class LoadedImages:
    """``tensors (M, 3, S, S)`` for the ``M`` inputs that decoded; ``ok (N,)`` marks them;
    ``errors`` maps input position to the reason it was skipped."""

    tensors: torch.Tensor
    ok: np.ndarray
    errors: dict[int, str]


@dataclass(frozen=True)
class EncodedImages:
    """``vectors (N, D)``: unit features, zero rows where an input was missing or did not decode;
    ``ok (N,)`` marks the encoded ones; ``errors`` maps input position to the reason it was skipped."""

    vectors: np.ndarray
    ok: np.ndarray
    errors: dict[int, str]


def load_images(images: Sequence[ImageInput | None]) -> LoadedImages:
    """Decode and preprocess a batch, skipping (and counting) missing or corrupt images."""
    tensors, ok, errors = [], np.zeros(len(images), dtype=bool), {}
    for i, image in enumerate(images):
        if image is None:
            errors[i] = "no image"
            continue
        try:
            tensors.append(preprocess(load_image(image)))
            ok[i] = True
        except ImageDecodeError as exc:
            errors[i] = str(exc)
    stacked = torch.stack(tensors) if tensors else torch.zeros((0, 3, 224, 224))
    return LoadedImages(stacked, ok, errors)


class MobileNetV2Encoder(Encoder):
    """Pooled MobileNetV2 features ``(B, 1280)``; ``trunk(start, stop)`` exposes the stages so
    aligned models can cache features below the blocks they fine-tune."""

    modality = "image"

    def __init__(self, weights: str | os.PathLike | None = None, device: str = "cpu"):
        self.weights = weights
        self.device = device

    @cached_property
    def model(self) -> MobileNetV2:
        return mobilenet_v2_imagenet(self.weights).to(self.device)

    @property
    def dim(self) -> int:
        return FEATURE_DIM

    @property
    def fingerprint(self) -> str:
        name = Path(self.weights).name if self.weights else "imagenet"
        return f"mobilenet_v2:{name}:{FEATURE_DIM}"

    @torch.inference_mode()
    def stages(self, batch: torch.Tensor, stop: int) -> torch.Tensor:
        """Run stages ``0..stop-1`` on a preprocessed batch ``(B, 3, S, S)``."""
        return self.model.features[:stop](batch.to(self.device))

    def frozen(self, batch: torch.Tensor, start: int, stop: int) -> torch.Tensor | None:
        """Stages ``start..stop-1`` on ``(B, C, H, W)`` float32 through ONNX Runtime (float32,
        ``(B, C', H', W')``), or None where that runtime is not used (not on CPU, or the export
        failed: the caller runs torch). On a CPU without native bf16 this takes a quarter to a fifth
        of torch's CPU time for MobileNetV2's depthwise blocks, with a max abs difference of about
        1e-5. The slice is exported once into ``$CROSSREC_HOME/cache/onnx``, keyed by its weights."""
        if self.device != "cpu" or start >= stop:
            return None
        session = self._stage_session(start, stop)
        if session is None:
            return None
        x = batch.float().contiguous().numpy()
        out = [session.run(None, {"x": x[i : i + _ORT_BATCH]})[0] for i in range(0, len(x), _ORT_BATCH)]
        return torch.from_numpy(np.concatenate(out)) if out else batch.new_zeros((0,))

    @cached_property
    def _sessions(self) -> dict:
        return {}

    def _stage_session(self, start: int, stop: int):
        key = (start, stop, torch.get_num_threads())
        if key not in self._sessions:
            self._sessions[key] = self._open_stage_session(start, stop)
        return self._sessions[key]

    def _open_stage_session(self, start: int, stop: int):
        from crossrec_core.paths import cache_dir
        from retrieval.encoders.onnx import export_onnx, ort_session

        part = self.model.features[start:stop].eval()
        digest = hashlib.sha1(f"v1:{start}:{stop}".encode())
        for name, tensor in part.state_dict().items():
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().numpy().tobytes())
        path = cache_dir("onnx") / f"mobilenet_v2-stages{start}-{stop}-{digest.hexdigest()[:16]}.onnx"
        try:
            if not path.is_file():
                log.info("exporting MobileNetV2 stages %d..%d to ONNX once: %s", start, stop - 1, path)
                with torch.no_grad():  # an input of the slice's shape: the stages below it on a blank image
                    example = self.model.features[:start](torch.zeros(2, 3, 224, 224))
                axes = {0: "batch", 2: "h", 3: "w"}
                export_onnx(part, (example,), path, input_names=["x"], output_names=["y"],
                            dynamic_axes={"x": axes, "y": axes})
            return ort_session(path, torch.get_num_threads())
        except Exception as exc:  # noqa: BLE001 - any export or runtime failure keeps the torch path
            log.warning("MobileNetV2 stages %d..%d stay on torch (ONNX Runtime unavailable: %s)", start, stop - 1, exc)
            return None

    def encode(self, inputs: Sequence[ImageInput], batch_size: int = 32, progress: bool = False) -> np.ndarray:
        """Encode images; raises ``ImageDecodeError`` on the first one that does not decode."""
        out = self.encode_skipping(inputs, batch_size, progress)
        if out.errors:
            pos = min(out.errors)
            raise ImageDecodeError(f"inputs[{pos}]: {out.errors[pos]}")
        return out.vectors

    def encode_skipping(self, inputs: Sequence[ImageInput | None], batch_size: int = 32,
                        progress: bool = False) -> EncodedImages:
        """Encode images, skipping (zero row, ``ok`` False, reason in ``errors``) those that are
        None or do not decode, for callers that score a catalogue with a few broken files."""
        vectors = np.zeros((len(inputs), self.dim), np.float32)
        ok = np.zeros(len(inputs), dtype=bool)
        errors: dict[int, str] = {}
        for start in tqdm(range(0, len(inputs), batch_size), disable=not progress, desc="images"):
            loaded = load_images(list(inputs[start : start + batch_size]))
            errors.update({start + i: why for i, why in loaded.errors.items()})
            if not len(loaded.tensors):
                continue
            with torch.inference_mode():
                feats = self.model(loaded.tensors.to(self.device))
            rows = start + np.flatnonzero(loaded.ok)
            vectors[rows] = torch.nn.functional.normalize(feats, dim=-1).cpu().numpy()
            ok[rows] = True
        return EncodedImages(vectors, ok, errors)
