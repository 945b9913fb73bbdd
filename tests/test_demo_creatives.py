"""The demo's creative step at toy size: real MovieLens posters and overviews, a live profile
store, creatives and a trailer made once, then reused from the cache and the asset store."""

from __future__ import annotations

import json
import subprocess
from types import SimpleNamespace

import pytest

from crossrec.demo_creatives import creative_picks, creative_state_dir, demo_studio, make_demo_creatives
from crossrec.demo_report import write_html_report


def test_picks_start_with_the_demo_user_then_the_longest_histories():
    recs = {5: [40, 41, 42], 6: [], 7: [70, 71, 72], 8: [80, 81, 82]}
    picks = creative_picks((9, [90, 91, 92]), lambda user, k: recs[user][:k],
                           [(5, 12), (6, 40), (7, 12), (8, 3), (9, 50)], n_users=3, n_items=2)
    # 9 first (the demo's user, not twice); 6 has no recommendations; 5 and 7 tie on history: lower id first
    assert picks == [(9, (90, 91)), (5, (40, 41)), (7, (70, 71))]
    assert creative_picks((9, []), lambda user, k: recs[user][:k], [(8, 1)], n_users=3) == [(8, (80, 81))]


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """The demo's studio on the MovieLens catalogue (its cache and assets in a fresh demo out
    folder) and a live store with one user who rated four films."""
    from recsys.profiles import Interaction, ProfileStore

    home, out = tmp_path_factory.mktemp("home"), tmp_path_factory.mktemp("demo")
    mp = pytest.MonkeyPatch()
    mp.setenv("CROSSREC_HOME", str(home))  # the C2PA signer's keys are created here
    store = ProfileStore(out / "profiles.db")
    store.apply([Interaction(f"e{i}", 7, item, "rating", 880_000_000.0 + i, value)
                 for i, (item, value) in enumerate([(1, 5.0), (50, 5.0), (181, 4.0), (100, 2.0)])])
    try:
        yield demo_studio(creative_state_dir(out)), store, out
    finally:
        store.close()
        mp.undo()


def test_creatives_and_trailer_are_made_then_reused(toy):
    from generation.trust import verify

    studio, store, out = toy
    assert studio.copy_writer.name == "template" and studio.config.attempts == 1
    assert studio.assets.root == out / "service" / "creatives" / "assets"
    lines: list[str] = []
    creatives, trailer = make_demo_creatives([(7, (172,))], store, out / "creatives", studio, echo=lines.append)
    (c,) = creatives
    assert (c.user_id, c.item_id, c.cache_hit, c.copy_source, c.liked) == (7, 172, False, "template", 3)
    folder = out / "creatives" / "7" / "172"
    assert c.folder == str(folder) and c.headline and c.poster_score is not None and c.variants >= 1
    assert verify(folder / "poster.png").label  # labelled AI-generated
    scores = json.loads((folder / "scores.json").read_text())
    assert scores["controls"]["user_id"] == "7" and len(scores["attempts"]) == 1
    assert len(scores["attempts"][0]["variants"]) == 4
    assert trailer is not None and not trailer.reused and trailer.path == str(folder / "trailer.mp4")
    from generation.trailer import ffmpeg_exe

    probe = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", trailer.path], capture_output=True, text=True).stderr
    assert "h264" in probe and "AI-generated" in probe
    assert any("made in" in line for line in lines) and any("rendered in" in line for line in lines)

    poster, film = (folder / "poster.png").read_bytes(), (folder / "trailer.mp4").read_bytes()
    (folder / "poster.png").unlink()
    (folder / "trailer.mp4").unlink()
    lines.clear()
    again, trailer2 = make_demo_creatives([(7, (172,))], store, out / "creatives", studio, echo=lines.append)
    assert again[0].cache_hit and trailer2.reused  # no model ran: files copied out of the asset store
    assert (folder / "poster.png").read_bytes() == poster and (folder / "trailer.mp4").read_bytes() == film
    assert again[0].headline == c.headline and again[0].poster_score == c.poster_score
    assert any("reused from the cache" in line for line in lines)

    report = SimpleNamespace(total_seconds=1.0, steps=(), searches=(), stream=_stream(), change=_change(),
                             new_item=SimpleNamespace(item_id=1, query="q", rank_before=None, rank_after=1),
                             outputs={}, creatives=again, trailer=trailer2)
    page = write_html_report(report, out, plots_root=out / "no-plots").read_text()
    assert "<h2>Creatives</h2>" in page and "creatives/7/172/poster.png" in page
    assert "creatives/7/172/trailer.mp4" in page and "<video" in page
    import html

    assert html.escape(c.headline) in page and f"{c.poster_score:.3f}" in page


def _stream():
    return SimpleNamespace(published=1, publish_events_per_s=1.0, applied=1, end_to_end_events_per_s=1.0, p50_ms=None,
                           p99_ms=None, lag=0, dlq=0)


def _change():
    return SimpleNamespace(user_id=7, clicked_title="x", before=(), after=(), added=())
