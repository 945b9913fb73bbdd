"""The posters' three marks on a trailer: the label (MP4 metadata and the C2PA digital source
type), the invisible watermark (:class:`generation.trust.Watermark`) and a signed C2PA manifest
over the whole MP4 (:func:`generation.trust.sign_file`).

The watermark is embedded per chunk, not per frame: the chunk's mean frame is marked and the same
change is added to each of its frames. The projections the watermark quantises are linear in the
pixels, so the mean of the marked frames carries the payload; a reader averages each decoded
chunk, which also averages out most of the encoder's noise (a single marked frame among unmarked
ones does not survive H.264), and takes the payload most chunks agree on. One embedding per
``every`` chunks costs a fraction of marking every frame.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from generation.trailer.quality import iter_frames
from generation.trailer.render import FrameMarker
from generation.trust import Verification, Watermark, default_watermark, sign_file, verify

__all__ = ["watermark_marker", "VideoWatermark", "read_video_watermark", "sign_trailer", "verify_media", "VIDEO_SUFFIXES"]

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov")


def watermark_marker(payload_id: int, *, every: int = 1, watermark: Watermark | None = None) -> FrameMarker:
    """A marker for :func:`render_trailer` embedding ``payload_id`` in every ``every``-th chunk."""
    if every < 1:
        raise ValueError(f"every={every!r}: must be >= 1")
    wm = watermark or default_watermark()
    count = [0]

    def mark(frames: np.ndarray, first: int) -> None:
        count[0] += 1
        if (count[0] - 1) % every:
            return
        h, w = frames.shape[1:3]
        # marked at half size: the watermark lives below the canonical grid's frequencies, which
        # half of 480x720 still holds, at a quarter of the cost; the change is scaled back up
        mean = sum(cv2.resize(f, (w // 2, h // 2), interpolation=cv2.INTER_AREA).astype(np.float32) for f in frames)
        small = (mean / len(frames) + 0.5).astype(np.uint8)
        delta = np.asarray(wm.embed(small, payload_id), dtype=np.float32) - small
        delta = np.rint(cv2.resize(delta, (w, h), interpolation=cv2.INTER_LINEAR))
        up, down = np.clip(delta, 0, 255).astype(np.uint8), np.clip(-delta, 0, 255).astype(np.uint8)
        for f in frames:  # saturating in-place adds (OpenCV), no float copy of the chunk
            cv2.add(f, up, dst=f)
            cv2.subtract(f, down, dst=f)

    return mark


@dataclass(frozen=True)
class VideoWatermark:
    """``payload_id`` read from the most chunks (None if none), in ``agreeing`` of ``chunks``."""

    payload_id: int | None
    agreeing: int
    chunks: int


def read_video_watermark(path: str | Path, *, chunk_frames: int = 16, watermark: Watermark | None = None) -> VideoWatermark:
    """Average each decoded ``chunk_frames``-frame chunk of ``path`` and read its watermark."""
    wm = watermark or default_watermark()
    ids: list[int | None] = []
    total, n = None, 0
    for frame in iter_frames(path):
        total = frame.astype(np.float32) if total is None else total + frame
        n += 1
        if n == chunk_frames:
            ids.append(wm.read((total / n + 0.5).astype(np.uint8)).payload_id)
            total, n = None, 0
    counted = Counter(i for i in ids if i is not None)
    if not counted:
        return VideoWatermark(None, 0, len(ids))
    payload, agreeing = counted.most_common(1)[0]
    return VideoWatermark(payload, agreeing, len(ids))


def sign_trailer(path: str | Path, *, payload_id: int, title: str, metadata: dict | None = None) -> Path:
    """Embed the signed C2PA manifest (``c2pa.created``, trainedAlgorithmicMedia) in the MP4."""
    assertion = {"label": "org.crossrec.creative", "data": {"kind": "trailer", "watermark_id": int(payload_id),
                                                            **dict(metadata or {})}}
    return sign_file(path, title=title, assertions=[assertion])


def verify_media(path: str | Path) -> Verification:
    """``generation.trust.verify`` for any file, and for a video (``VIDEO_SUFFIXES``) also the
    watermark read from its chunks (``read_video_watermark``): ``watermark_confidence`` is then the
    share of chunks that agree on the payload."""
    found = verify(path)
    if Path(path).suffix.lower() not in VIDEO_SUFFIXES:
        return found
    read = read_video_watermark(path)
    return replace(found, watermark_id=read.payload_id,
                   watermark_confidence=round(read.agreeing / read.chunks, 3) if read.chunks else None)
