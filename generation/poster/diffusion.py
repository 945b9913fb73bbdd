"""The diffusion poster path: a local diffusers checkpoint paints the background.

:class:`DiffusersPosterGenerator` keeps the layout engine's product, text, badge and palette
layers and replaces its background: the canvas with the product in place goes through a
Stable-Diffusion inpainting pipeline that repaints everything but the product's box, from a prompt
built from the user's control signals (:func:`build_prompt`). Any Stable Diffusion checkpoint
directory works (``model_index.json`` + components): an inpainting model (9-channel UNet) or a
text-to-image one such as SD-Turbo (diffusers then blends the kept region at every step). On a GPU
when there is one. Nothing loads until the first poster.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from crossrec_core.errors import ModelLoadError
from generation.poster.base import RGB, Box
from generation.poster.layout import LayoutConfig, LayoutPosterGenerator, _Request
from generation.types import ControlSignals, CreativeItem

__all__ = ["DiffusionConfig", "DiffusersPosterGenerator", "build_prompt", "colour_name"]

_NAMED_COLOURS: dict[str, RGB] = {
    "black": (20, 20, 20), "white": (245, 245, 245), "grey": (128, 128, 128), "red": (200, 40, 40),
    "orange": (235, 130, 40), "yellow": (240, 210, 60), "green": (60, 160, 70), "teal": (40, 150, 150),
    "blue": (40, 80, 200), "navy": (30, 40, 90), "purple": (120, 60, 160), "pink": (230, 130, 170),
    "brown": (120, 80, 50), "beige": (225, 205, 170),
}
NEGATIVE_PROMPT = "text, letters, words, watermark, logo, signature, blurry, low quality"


def colour_name(rgb) -> str:
    """The nearest of a small set of colour names (for prompts)."""
    rgb = np.asarray(rgb, dtype=np.float64)
    return min(_NAMED_COLOURS, key=lambda name: float(((np.asarray(_NAMED_COLOURS[name]) - rgb) ** 2).sum()))


def build_prompt(item: CreativeItem, controls: ControlSignals, palette: tuple[RGB, ...] = ()) -> str:
    """A background prompt from the control signals: the campaign theme, style words, tone and
    palette colours, and the item's category. Item and user text enter only as short quoted
    attributes (titles are left out: the product image carries the item)."""
    parts = ["poster background"]
    if controls.theme:
        parts.append(_clean(controls.theme))
    parts += [_clean(w) for w in controls.style_words[:4]]
    parts.append(f"{_clean(controls.tone)} mood")
    colours = list(dict.fromkeys(colour_name(c) for c in (palette or controls.palette)[:3]))
    if colours:
        parts.append(" and ".join(colours) + " colours")
    if item.category:
        parts.append(f"for {_clean(item.category)}")
    parts.append("soft lighting, high quality, no text")
    return ", ".join(p for p in parts if p)


def _clean(text: str, limit: int = 40) -> str:
    """Keep prompts to plain words: no newlines, brackets or instructions smuggled in."""
    kept = "".join(ch if ch.isalnum() or ch in " -'" else " " for ch in str(text))
    return " ".join(kept.split())[:limit]


@dataclass(frozen=True)
class DiffusionConfig:
    """``checkpoint``: a local diffusers pipeline directory. ``steps``/``guidance``: sampler
    settings (SD-Turbo: 1-4 steps, guidance 0; other models about 25 steps, 7.5). ``work_size``:
    the longer side the pipeline paints at (a multiple of 8), resized to the poster's shape
    afterwards (at most 1.25x up for 512). ``device`` None: CUDA when available, else CPU."""

    checkpoint: str
    steps: int = 4
    guidance: float = 0.0
    work_size: int = 512
    device: str | None = None
    strength: float = 1.0

    def __post_init__(self) -> None:
        if not 1 <= int(self.steps) <= 200:
            raise ValueError(f"steps={self.steps!r}: must be in 1..200")
        if int(self.work_size) % 8 or not 32 <= int(self.work_size) <= 2048:
            raise ValueError(f"work_size={self.work_size!r}: must be a multiple of 8 in 32..2048")
        if not 0.0 < float(self.strength) <= 1.0:
            raise ValueError(f"strength={self.strength!r}: must be in (0, 1]")


class DiffusersPosterGenerator(LayoutPosterGenerator):
    """Posters whose background a diffusers inpainting pipeline paints around the product."""

    name = "diffusers"

    def __init__(self, config: DiffusionConfig, layout: LayoutConfig = LayoutConfig(), **shared):
        path = Path(config.checkpoint).expanduser()
        if not (path / "model_index.json").is_file():
            raise ModelLoadError(f"checkpoint={str(path)!r}: not a diffusers pipeline directory (no model_index.json)")
        super().__init__(layout, **shared)
        self.diffusion = config
        self.checkpoint = path
        self._pipe = None
        self._pipe_lock = threading.Lock()

    @property
    def device(self) -> str:
        import torch

        return self.diffusion.device or ("cuda" if torch.cuda.is_available() else "cpu")

    def pipeline(self):
        """The inpainting pipeline, loaded on first use (float16 on CUDA)."""
        with self._pipe_lock:
            if self._pipe is None:
                import torch
                from diffusers import AutoPipelineForInpainting

                dtype = torch.float16 if self.device.startswith("cuda") else torch.float32
                try:
                    index = json.loads((self.checkpoint / "model_index.json").read_text())
                    kwargs = {"safety_checker": None, "requires_safety_checker": False} if "safety_checker" in index else {}
                    pipe = AutoPipelineForInpainting.from_pretrained(self.checkpoint, dtype=dtype,
                                                                     local_files_only=True, **kwargs)
                except Exception as exc:  # diffusers raises many types for a broken checkpoint
                    raise ModelLoadError(f"checkpoint={str(self.checkpoint)!r}: cannot load a diffusers pipeline ({exc})") from exc
                pipe.set_progress_bar_config(disable=True)
                self._pipe = pipe.to(self.device)
            return self._pipe

    def _work_size(self, size: tuple[int, int]) -> tuple[int, int]:
        scale = self.diffusion.work_size / max(size)
        return tuple(max(8, int(round(v * scale / 8)) * 8) for v in size)  # type: ignore[return-value]

    def _background(self, request: _Request, rng: np.random.Generator, accent: RGB,
                    product_box: Box | None, region: Box | None = None) -> Image.Image:
        import torch

        size = request.size
        work = self._work_size(size)
        # the starting canvas: the layout's own background with the product in place
        start = super()._background(request, rng, accent, product_box, region)
        mask = Image.new("L", size, 255)
        if product_box is not None and request.image is not None:
            pw, ph = product_box[2] - product_box[0], product_box[3] - product_box[1]
            start.paste(request.image.resize((pw, ph), Image.LANCZOS), product_box[:2])
            ImageDraw.Draw(mask).rectangle(product_box, fill=0)
        prompt = build_prompt(request.item, request.controls, tuple(request.accents[:3]))
        generator = torch.Generator(device="cpu").manual_seed(int(rng.integers(2 ** 31)))
        with torch.inference_mode():
            out = self.pipeline()(
                prompt=prompt, negative_prompt=NEGATIVE_PROMPT if self.diffusion.guidance > 1 else None,
                image=start.resize(work, Image.LANCZOS), mask_image=mask.resize(work, Image.NEAREST),
                height=work[1], width=work[0], num_inference_steps=int(self.diffusion.steps),
                guidance_scale=float(self.diffusion.guidance), strength=float(self.diffusion.strength),
                generator=generator, output_type="pil",
            ).images[0]
        painted = out.resize(size, Image.LANCZOS)
        # keep the pixels outside the painted area exactly; feather the seam
        soft = mask.filter(ImageFilter.GaussianBlur(2))
        return Image.composite(painted, start, soft)

    def _extra(self, request: _Request) -> dict:
        return {"checkpoint": str(self.checkpoint), "prompt": build_prompt(request.item, request.controls,
                                                                            tuple(request.accents[:3])),
                "steps": self.diffusion.steps, "device": self.device}
