"""The trailer role: settings, the shot plan, the frame-source base and the result types.

A trailer is a list of :class:`Shot` s (a title card, item shots, styled shots, an end card). Each
shot lasts a whole number of ``chunk_frames``-frame chunks; a :class:`FrameSource` renders one
chunk at a time given the last frame of the previous chunk (the seed), so a long trailer never
holds more than a chunk of frames, and each new shot dissolves from the exact frame the viewer saw.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from crossrec_core.errors import CrossrecError
from generation.types import ControlSignals, CreativeItem

__all__ = [
    "ORIENTATIONS", "SHOT_KINDS", "TrailerError", "TrailerConfig", "Shot", "TrailerPlan", "FrameSource",
    "CaptionPlacement", "TrailerResult", "plan_trailer",
]

# (width, height): portrait is the posters' shape; landscape on request.
ORIENTATIONS = {"portrait": (480, 720), "landscape": (720, 480)}
SHOT_KINDS = ("title", "image", "styled", "end")


class TrailerError(CrossrecError):
    """A trailer could not be rendered or encoded (ffmpeg missing or failing, bad plan)."""


@dataclass(frozen=True)
class TrailerConfig:
    """``seconds`` is rounded up to whole chunks (16 frames at 24 fps: 2/3 s); trailers are meant
    to be 6 to 15 s, longer ones are allowed (memory stays bounded). ``crf``/``preset``: libx264
    quality and speed; ``threads``: ffmpeg encoder threads (it runs beside the renderer)."""

    orientation: str = "portrait"
    seconds: float = 8.0
    fps: int = 24
    chunk_frames: int = 16
    shot_chunks: int = 3
    dissolve_frames: int = 8
    caption_fade_frames: int = 6
    zoom: float = 1.15
    crf: int = 23
    preset: str = "veryfast"
    threads: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        if self.orientation not in ORIENTATIONS:
            raise ValueError(f"orientation={self.orientation!r}: allowed {tuple(ORIENTATIONS)}")
        if not 1.0 <= float(self.seconds) <= 600.0:
            raise ValueError(f"seconds={self.seconds!r}: must be in 1..600")
        if not 1 <= self.fps <= 60:
            raise ValueError(f"fps={self.fps!r}: must be in 1..60")
        if not 1 <= self.chunk_frames <= 128:
            raise ValueError(f"chunk_frames={self.chunk_frames!r}: must be in 1..128")
        if self.shot_chunks < 1:
            raise ValueError(f"shot_chunks={self.shot_chunks!r}: must be >= 1")
        if not 0 <= self.dissolve_frames <= self.chunk_frames:
            raise ValueError(f"dissolve_frames={self.dissolve_frames!r}: must be in 0..chunk_frames={self.chunk_frames}")
        if not 1.0 <= self.zoom <= 2.0:
            raise ValueError(f"zoom={self.zoom!r}: must be in 1..2")
        if not 0 <= self.crf <= 51:
            raise ValueError(f"crf={self.crf!r}: libx264 takes 0..51")

    @property
    def size(self) -> tuple[int, int]:
        """(width, height)."""
        return ORIENTATIONS[self.orientation]

    @property
    def total_chunks(self) -> int:
        return max(1, int(np.ceil(self.seconds * self.fps / self.chunk_frames)))


@dataclass(frozen=True)
class Shot:
    """One shot: ``kind`` in SHOT_KINDS, ``chunks`` long. ``item`` for image and styled shots;
    ``caption`` is drawn over the shot (image/styled) or is the card's text (title/end)."""

    kind: str
    chunks: int
    caption: str = ""
    item: CreativeItem | None = None

    def __post_init__(self) -> None:
        if self.kind not in SHOT_KINDS:
            raise ValueError(f"kind={self.kind!r}: allowed {SHOT_KINDS}")
        if self.chunks < 1:
            raise ValueError(f"chunks={self.chunks!r}: a shot lasts at least one chunk")
        if self.kind in ("image", "styled") and (self.item is None or self.item.image is None):
            raise TrailerError(f"a {self.kind} shot needs an item with an image (item={getattr(self.item, 'item_id', None)!r})")


@dataclass(frozen=True)
class TrailerPlan:
    shots: tuple[Shot, ...]
    controls: ControlSignals
    title: str

    @property
    def chunks(self) -> int:
        return sum(s.chunks for s in self.shots)


class FrameSource(ABC):
    """Renders the picture of a shot, one chunk at a time (captions and dissolves are added by
    the caller, the same for every source)."""

    @abstractmethod
    def render_chunk(self, shot: Shot, shot_index: int, start: int, n: int, seed: np.ndarray | None) -> np.ndarray:
        """Frames ``start .. start + n`` of ``shot`` as ``(n, H, W, 3)`` uint8; ``seed`` is the last
        frame of the previous chunk ``(H, W, 3)`` (None for the first chunk of the trailer)."""

    def close(self) -> None:
        """Release what the source holds (default: nothing)."""


@dataclass(frozen=True)
class CaptionPlacement:
    """Where caption ``text`` was drawn: at frames ``frames`` (a key frame range), one box per line."""

    shot_index: int
    text: str
    lines: tuple[str, ...]
    boxes: tuple[tuple[int, int, int, int], ...]
    key_frame: int


@dataclass
class TrailerResult:
    """The written file and what rendering took. ``peak_rss_mb``/``rss_added_mb``: the process's
    resident memory at its highest during rendering, above what it was at the start."""

    path: Path
    frames: int
    fps: int
    size: tuple[int, int]
    seconds: float
    render_s: float
    encode_wait_s: float
    mark_s: float
    wall_s: float
    rss_added_mb: float
    ffmpeg_peak_mb: float = 0.0  # the encoder process's peak resident memory
    captions: list[CaptionPlacement] = field(default_factory=list)
    key_frames: dict[int, str] = field(default_factory=dict)  # frame index -> item id
    source: str = "composed"

    def to_dict(self) -> dict:
        out = {k: v for k, v in self.__dict__.items() if k not in ("captions", "path")}
        out["path"] = str(self.path)
        out["captions"] = [c.__dict__ for c in self.captions]
        return out


def plan_trailer(items: Sequence[CreativeItem], captions: Sequence[str], controls: ControlSignals,
                 config: TrailerConfig, *, title: str = "") -> TrailerPlan:
    """A title card, then an image shot and a styled shot per item (cycling through ``items`` to
    fill ``config.seconds``), then an end card ("because you liked ..." from ``controls``).

    ``captions[i]`` is item i's copy line. Items without an image are skipped; none left raises.
    """
    if len(captions) != len(items):
        raise ValueError(f"captions: {len(captions)} given for {len(items)} items; one caption per item is required")
    usable = [(it, cap) for it, cap in zip(items, captions) if it.image is not None]
    if not usable:
        raise TrailerError(f"none of the {len(items)} items has an image; a trailer needs at least one")
    total = config.total_chunks
    card = 2 if total >= 8 else 1
    body = max(1, total - 2 * card)
    n_shots = max(1, round(body / config.shot_chunks))
    lengths = [len(a) for a in np.array_split(np.arange(body), n_shots)]
    shots = [Shot("title", card, title or (f"Picked for you: {usable[0][0].title}" if len(usable) == 1 else "Picked for you"))]
    for k, length in enumerate(lengths):
        item, caption = usable[(k // 2) % len(usable)]
        shots.append(Shot("image" if k % 2 == 0 else "styled", length, caption, item))
    liked = [t for t in controls.liked_titles if t][:2]
    end = "Because you liked " + " and ".join(liked) if liked else "Made for you"
    shots.append(Shot("end", max(1, total - card - body), end))
    return TrailerPlan(tuple(shots), controls, shots[0].caption)
