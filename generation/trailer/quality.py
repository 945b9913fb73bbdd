"""Scores of a written trailer, read back from the MP4 (what a viewer gets, after encoding).

- temporal consistency: mean absolute difference of consecutive frames (grey, 1/4 size, 0..255),
  its 99th percentile and the number of jumps above ``JUMP`` (a hard cut; dissolves stay below);
- captions: each caption line recognised by OCR (rapidocr) in its box at the shot's key frame,
  scored by character similarity to the text drawn (1.0 = read back exactly);
- key-frame fidelity: each image shot's middle frame embedded by the aligned model and searched
  among the catalogue's item images (image -> image): hit@1 when its own item comes first, and the
  cosine to its own item's image.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Protocol, Sequence

import numpy as np
from PIL import Image

from generation.trailer.base import TrailerResult

__all__ = ["JUMP", "TrailerScores", "ImageEmbedder", "iter_frames", "read_frames", "score_trailer"]

JUMP = 40.0  # mean |difference| (0..255) of consecutive frames above which a frame pair is a cut


class ImageEmbedder(Protocol):
    """``retrieval.ItemEmbedder``'s image side: images -> ``Embeddings`` (``vectors (N, D)``
    L2-normalised, ``ok (N,)``)."""

    def embed_images(self, images: Sequence[Image.Image]): ...


@dataclass
class TrailerScores:
    frames: int
    temporal_mad: float
    temporal_p99: float
    jumps: int
    caption_similarity: float | None = None  # mean over caption lines
    captions_read: list[dict] = field(default_factory=list)
    fidelity_hit1: float | None = None
    fidelity_cosine: float | None = None

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def iter_frames(path: str | Path) -> Iterator[np.ndarray]:
    """Decode ``path`` frame by frame: ``(H, W, 3)`` uint8 arrays (one in memory at a time)."""
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24")
    w, h = next(reader)["size"]
    for raw in reader:
        yield np.frombuffer(raw, np.uint8).reshape(h, w, 3)


def read_frames(path: str | Path, keep: Sequence[int] = ()) -> tuple[np.ndarray, dict[int, Image.Image]]:
    """Decode ``path``: consecutive-frame differences ``(T - 1,)`` and the frames at ``keep``."""
    wanted, kept, diffs = set(keep), {}, []
    prev = None
    for i, frame in enumerate(iter_frames(path)):
        grey = frame[::4, ::4].astype(np.float32).mean(-1)
        if prev is not None:
            diffs.append(float(np.abs(grey - prev).mean()))
        prev = grey
        if i in wanted:
            kept[i] = Image.fromarray(frame.copy())
    return np.array(diffs), kept


def score_trailer(result: TrailerResult, *, reader=None, embedder: ImageEmbedder | None = None,
                  catalogue_ids: Sequence[str] = (), catalogue_vectors: np.ndarray | None = None) -> TrailerScores:
    """Score ``result``'s file. ``reader``: a ``generation.poster.vision.TextReader`` (None skips
    OCR); ``embedder`` with ``catalogue_ids``/``catalogue_vectors`` ``(N, D)`` (the catalogue's
    item images in the same space; None skips fidelity)."""
    keep = [c.key_frame for c in result.captions] + list(result.key_frames)
    diffs, frames = read_frames(result.path, keep)
    scores = TrailerScores(frames=len(diffs) + 1, temporal_mad=float(diffs.mean()) if len(diffs) else 0.0,
                           temporal_p99=float(np.percentile(diffs, 99)) if len(diffs) else 0.0,
                           jumps=int((diffs > JUMP).sum()))
    if reader is not None and result.captions:
        sims = []
        for c in result.captions:
            read = reader.read(frames[c.key_frame], list(c.boxes)) if c.key_frame in frames else []
            for line, (text, conf) in zip(c.lines, read):
                sim = difflib.SequenceMatcher(None, line.lower(), text.lower()).ratio()
                sims.append(sim)
                scores.captions_read.append({"drawn": line, "read": text, "similarity": round(sim, 3)})
        scores.caption_similarity = float(np.mean(sims)) if sims else 0.0
    if embedder is not None and catalogue_vectors is not None and result.key_frames:
        ids = [str(i) for i in catalogue_ids]
        index = {item: k for k, item in enumerate(ids)}
        shots = [(f, item) for f, item in result.key_frames.items() if f in frames and item in index]
        if shots:
            z = embedder.embed_images([frames[f] for f, _ in shots]).vectors
            sims = z @ np.asarray(catalogue_vectors, np.float32).T  # (K, N)
            own = np.array([index[item] for _, item in shots])
            scores.fidelity_hit1 = float(np.mean(sims.argmax(1) == own))
            scores.fidelity_cosine = float(np.mean(sims[np.arange(len(own)), own]))
    return scores
