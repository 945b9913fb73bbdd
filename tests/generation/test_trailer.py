"""Trailers from real MovieLens posters: a playable H.264 MP4 with captions OCR can read back."""

import subprocess

import numpy as np
import pytest

from crossrec_core.paths import resolve_data_dir
from generation.poster.vision import TextReader
from generation.trailer import (
    ComposedFrames, FrameSource, TrailerConfig, TrailerError, ffmpeg_exe, plan_trailer, render_trailer,
)
from generation.trailer.quality import read_frames, score_trailer
from generation.types import ControlSignals, CreativeItem


@pytest.fixture(scope="module")
def items():
    posters = resolve_data_dir() / "ml100k-posters" / "data" / "posters"
    return [CreativeItem("1", "Toy Story (1995)", "", posters / "1.jpg"),
            CreativeItem("50", "Star Wars (1977)", "", posters / "50.jpg")]


CONTROLS = ControlSignals("7", palette=((30, 20, 60), (200, 80, 60), (240, 220, 150)),
                          liked_titles=("Fargo (1996)",))


def _probe(path):
    out = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(path)], capture_output=True, text=True).stderr
    return out


def test_portrait_trailer_is_h264_with_label_and_readable_captions(tmp_path, items):
    config = TrailerConfig(seconds=4.0)
    plan = plan_trailer(items, ["To infinity and beyond", "A galaxy far away"], CONTROLS, config)
    assert [s.kind for s in plan.shots][0] == "title" and plan.shots[-1].caption == "Because you liked Fargo (1996)"
    result = render_trailer(plan, ComposedFrames(config, CONTROLS), tmp_path / "trailer.mp4", config)
    assert result.frames == plan.chunks * config.chunk_frames == 96 and result.size == (480, 720)
    info = _probe(result.path)
    assert "h264" in info and "480x720" in info and "AI-generated" in info
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left behind
    scores = score_trailer(result, reader=TextReader())
    assert scores.frames == 96 and scores.jumps == 0  # dissolves, no hard cuts
    assert scores.caption_similarity > 0.8, scores.captions_read


def test_landscape_trailer_and_chunks_seeded_by_the_previous_frame(tmp_path, items):
    config = TrailerConfig(orientation="landscape", seconds=3.0, dissolve_frames=16)
    plan = plan_trailer(items[:1], ["Toys come alive"], ControlSignals(None), config)
    seeds = []

    class Recording(ComposedFrames):
        def render_chunk(self, shot, shot_index, start, n, seed):
            seeds.append(None if seed is None else seed.copy())
            return super().render_chunk(shot, shot_index, start, n, seed)

    result = render_trailer(plan, Recording(config, ControlSignals(None)), tmp_path / "t.mp4", config)
    assert result.size == (720, 480) and "720x480" in _probe(result.path)
    assert seeds[0] is None and all(s is not None and s.shape == (480, 720, 3) for s in seeds[1:])
    diffs, kept = read_frames(result.path, keep=[15, 16])
    # a shot change dissolves from the seed: the first frame after it is close to the last one before
    assert np.abs(np.asarray(kept[16], float) - np.asarray(kept[15], float)).mean() < 25


def test_ffmpeg_missing_or_failing_leaves_nothing(tmp_path, items):
    config = TrailerConfig(seconds=2.0)
    plan = plan_trailer(items[:1], ["Toys"], CONTROLS, config)
    with pytest.raises(TrailerError, match="not an executable"):
        render_trailer(plan, ComposedFrames(config, CONTROLS), tmp_path / "a.mp4", config, ffmpeg=tmp_path / "none")
    failing = tmp_path / "ffmpeg"
    failing.write_text("#!/bin/sh\necho 'No space left on device' >&2\nexit 1\n")
    failing.chmod(0o755)
    with pytest.raises(TrailerError, match="No space left on device"):
        render_trailer(plan, ComposedFrames(config, CONTROLS), tmp_path / "out" / "a.mp4", config, ffmpeg=failing)
    assert list((tmp_path / "out").iterdir()) == []


def test_bad_plans_are_refused(tmp_path, items):
    config = TrailerConfig()
    no_image = CreativeItem("9", "No picture", "", None)
    with pytest.raises(TrailerError, match="none of the 1 items has an image"):
        plan_trailer([no_image], ["x"], CONTROLS, config)
    with pytest.raises(ValueError, match="one caption per item"):
        plan_trailer(items, ["only one"], CONTROLS, config)
    with pytest.raises(ValueError, match="orientation='square'"):
        TrailerConfig(orientation="square")

    class Wrong(FrameSource):
        def render_chunk(self, shot, shot_index, start, n, seed):
            return np.zeros((n, 10, 10, 3), np.uint8)

    plan = plan_trailer(items[:1], ["x"], CONTROLS, TrailerConfig(seconds=1.0))
    with pytest.raises(TrailerError, match="expected \\(16, 720, 480, 3\\)"):
        render_trailer(plan, Wrong(), tmp_path / "never.mp4", TrailerConfig(seconds=1.0))
    assert list(tmp_path.iterdir()) == []


def test_watermark_survives_h264_and_the_manifest_covers_the_mp4(tmp_path, items, monkeypatch):
    from generation.trailer.mark import read_video_watermark, sign_trailer, verify_media, watermark_marker
    from generation.trust import verify

    monkeypatch.setenv("CROSSREC_HOME", str(tmp_path / "home"))  # the local CA is created here
    config = TrailerConfig(seconds=3.0)
    plan = plan_trailer(items[:1], ["Toys"], CONTROLS, config)
    path = tmp_path / "trailer.mp4"
    render_trailer(plan, ComposedFrames(config, CONTROLS), path, config, marker=watermark_marker(4242))
    plain = tmp_path / "plain.mp4"
    render_trailer(plan, ComposedFrames(config, CONTROLS), plain, config)
    read = read_video_watermark(path)
    assert read.payload_id == 4242 and read.agreeing >= read.chunks // 2
    assert read_video_watermark(plain).payload_id is None
    sign_trailer(path, payload_id=4242, title="trailer")
    found = verify(path)
    assert found.manifest == "valid" and found.trusted and found.label and found.ours
    assert verify(plain).manifest == "absent" and not verify(plain).ours
    # `crossrec creative verify trailer.mp4` also reads the watermark from the frames
    media = verify_media(path)
    assert media.watermark_id == 4242 and media.watermark_confidence >= 0.5 and media.manifest == "valid" and media.ours
    assert verify_media(plain).watermark_id is None and not verify_media(plain).ours
