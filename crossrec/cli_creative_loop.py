"""``crossrec creative trailer|worker|loop-bench``: trailers, the creative worker on Kafka and the
feedback-loop benchmark (issue 12). Registered by :mod:`crossrec.cli_creative`.

- ``crossrec creative trailer --user ID [--item ID] --out DIR``: ``trailer.mp4`` (H.264, labelled,
  watermarked, C2PA-signed) and ``scores.json`` (timings, memory, temporal consistency, OCR
  read-back of the captions, key-frame fidelity with the aligned model when one is trained).
  Without ``--item``: the user's top items from a saved recommender (``--recommender DIR``).
- ``crossrec creative worker --bootstrap HOST:PORT --state DIR``: answer creative requests.
- ``crossrec creative loop-bench --json PATH``: bandit simulation through the broker, kill -9 of
  the worker during a burst, trailer speed and memory.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Sequence

from crossrec.options import add_data_dir, add_json

__all__ = ["make_trailer", "make_trailer_asset", "add_trailer", "add_worker", "add_loop_bench"]


def _captions(studio, items, controls_by_item, copy_writer) -> list[str]:
    out = []
    for item in items:
        copy = copy_writer.write(item, controls_by_item[item.item_id])
        out.append(copy.tagline or copy.headline)
    return out


def _render(studio, items, taste, out_path: Path, *, seconds: float, orientation: str, diffusers: str | None,
            copy_writer, title: str | None = None):
    """Plan, render, watermark and sign a trailer of ``items`` for ``taste``; returns the result."""
    from generation.trailer import ComposedFrames, TrailerConfig, plan_trailer, render_trailer
    from generation.trailer.mark import sign_trailer, watermark_marker
    from generation.trust import payload_id_for

    config = TrailerConfig(orientation=orientation, seconds=seconds)
    controls = {it.item_id: studio.controls(it, taste.user_id, taste.liked) for it in items}
    lead = controls[items[0].item_id]
    captions = _captions(studio, items, controls, copy_writer)
    plan = plan_trailer(items, captions, lead, config, title=title or "")
    if diffusers:
        from generation.trailer.diffusion import VideoDiffusionFrames

        source = VideoDiffusionFrames(config, lead, diffusers)
    else:
        source = ComposedFrames(config, lead, style=studio.style_model)
    key = json.dumps({"user": taste.user_id, "items": [it.item_id for it in items], "captions": captions,
                      "seconds": seconds, "orientation": orientation}, sort_keys=True)
    payload = payload_id_for(key)
    t0 = time.perf_counter()
    result = render_trailer(plan, source, out_path, config, marker=watermark_marker(payload),
                            metadata={"description": f"crossrec trailer for user {taste.user_id or '-'}"})
    sign_trailer(out_path, payload_id=payload, title=plan.title,
                 metadata={"user_id": str(taste.user_id or ""), "items": ",".join(it.item_id for it in items)})
    total_s = time.perf_counter() - t0  # render + encode + watermark + manifest
    return result, plan, payload, total_s, captions


def make_trailer_asset(studio, item_id: str, taste, *, seconds: float = 8.0):
    """A trailer of one item for the worker: rendered to a temporary file and put in the studio's
    asset store; returns the ``CreativeAsset``."""
    from generation.control import require_item
    from generation.copy import TemplateCopyWriter
    from streaming.events import CreativeAsset

    item = require_item(studio.items, item_id)
    with tempfile.TemporaryDirectory(dir=studio.assets.root.parent if studio.assets.root.parent.is_dir() else None) as tmp:
        _render(studio, [item], taste, Path(tmp) / "trailer.mp4", seconds=seconds, orientation="portrait",
                diffusers=None, copy_writer=TemplateCopyWriter())
        ref = studio.assets.put_file(Path(tmp) / "trailer.mp4")
    return CreativeAsset(kind="trailer", asset_id=ref.asset_id, variant_id=f"{item_id}:trailer:{ref.asset_id[:12]}")


def _top_items(user: str, recommender: str | None, k: int) -> list[str]:
    from crossrec_core.errors import ModelLoadError
    from recsys import load_recommender

    if recommender is None:
        raise ValueError("crossrec creative trailer: give --item, or --recommender DIR (a saved recommender) "
                         "to take the user's top items")
    if not Path(recommender).is_dir():
        raise ModelLoadError(f"recommender={recommender!r}: no such directory")
    recs = load_recommender(recommender).recommend(int(user), k)
    ids = getattr(recs, "item_ids", None)
    return [str(int(i)) for i in (ids if ids is not None else [getattr(r, "item_id", r) for r in recs])]


def make_trailer(dataset: str, out: str | os.PathLike, *, user: str | None, item: str | None = None,
                 recommender: str | None = None, top_k: int = 3, seconds: float = 8.0, orientation: str = "portrait",
                 diffusers: str | None = None, lm: str | None = None, score: bool = True, data_dir=None) -> dict:
    """Write ``out/trailer.mp4`` and ``out/scores.json``; returns the scores report."""
    from crossrec.cli_creative import user_taste
    from crossrec_core.persist import atomic_write_text
    from generation.catalogue import load_catalogue
    from generation.control import require_item
    from generation.copy import LanguageModelCopyWriter, TemplateCopyWriter
    from generation.studio import Studio

    items = load_catalogue(dataset, data_dir)
    ids = [item] if item is not None else _top_items(user, recommender, top_k)
    chosen = [require_item(items, i) for i in ids]  # unknown items fail before any model loads
    taste = user_taste(dataset, user, items, data_dir=data_dir)
    studio = Studio(items)
    if lm == "template":
        writer = TemplateCopyWriter()
    elif lm is not None:
        from retrieval.encoders import load_language_model

        writer = LanguageModelCopyWriter(load_language_model(lm))
    else:
        writer = studio.copy_writer
    out = Path(out)
    result, plan, payload, total_s, captions = _render(studio, chosen, taste, out / "trailer.mp4", seconds=seconds,
                                                       orientation=orientation, diffusers=diffusers, copy_writer=writer)
    placed = result.to_dict()
    report = {"path": str(out / "trailer.mp4"), "user_id": taste.user_id, "items": ids, "captions": captions,
              "caption_placements": placed.pop("captions"), "seconds_total": round(total_s, 3),
              **{k: v for k, v in placed.items() if k != "path"},
              "trust": {"label": "AI-generated (MP4 metadata + C2PA)", "watermark_id": payload, "c2pa": "signed"},
              "load_avg": os.getloadavg()[0]}
    if score:
        report["quality"] = _score(result, dataset, data_dir)
    atomic_write_text(out / "scores.json", json.dumps(report, indent=2, ensure_ascii=False, default=str))
    return report


def _score(result, dataset: str, data_dir) -> dict:
    from generation.poster.vision import default_text_reader
    from generation.trailer import score_trailer
    from generation.trailer.mark import read_video_watermark

    embedder, ids, vectors, note = None, (), None, ""
    try:
        from retrieval.align.embedder import default_model_dir, load_item_embedder

        if (default_model_dir(dataset) / "config.json").is_file():
            from generation.catalogue import load_catalogue

            catalogue = load_catalogue(dataset, data_dir)
            with_image = [it for it in catalogue.values() if it.image is not None]
            embedder = load_item_embedder(dataset=dataset)
            vectors, _ = embedder.embed_images([it.image for it in with_image])
            ids = [it.item_id for it in with_image]
        else:
            note = f"no aligned model in {default_model_dir(dataset)}: key-frame fidelity skipped"
    except ImportError as exc:
        note = f"key-frame fidelity skipped ({exc})"
    scores = score_trailer(result, reader=default_text_reader(), embedder=embedder, catalogue_ids=ids,
                           catalogue_vectors=vectors).to_dict()
    wm = read_video_watermark(result.path)
    scores["watermark_read"] = {"payload_id": wm.payload_id, "agreeing_chunks": wm.agreeing, "chunks": wm.chunks}
    if note:
        scores["note"] = note
    return scores


# -- subcommands -------------------------------------------------------------------------------------

def _add_common(p) -> None:
    """Options the ``creative`` parser also has: given after the action, they are read here."""
    p.add_argument("--dataset", choices=("ml100k", "grocery"), default="ml100k", help="catalogue (default: ml100k)")
    add_data_dir(p)
    add_json(p)


def _cmd_trailer(args) -> int:
    if args.out is None:
        raise ValueError("crossrec creative trailer: --out DIR is required")
    report = make_trailer(args.dataset, args.out, user=args.user, item=args.item, recommender=args.recommender,
                          top_k=args.top_k, seconds=args.seconds, orientation=args.orientation,
                          diffusers=args.diffusers, lm=args.lm, score=not args.no_score, data_dir=args.data_dir)
    q = report.get("quality", {})
    print(f"wrote {report['path']} ({report['frames']} frames, {report['size'][0]}x{report['size'][1]}, "
          f"{report['seconds']:.1f} s) and scores.json")
    print(f"  render+encode+watermark+sign {report['seconds_total']:.2f} s (load avg {report['load_avg']:.1f}); "
          f"memory added {report['rss_added_mb']:.0f} MB")
    if q:
        print(f"  temporal MAD {q['temporal_mad']:.2f} (jumps {q['jumps']}); captions read back "
              f"{q['caption_similarity'] if q['caption_similarity'] is not None else '-'}; key-frame hit@1 "
              f"{q['fidelity_hit1'] if q['fidelity_hit1'] is not None else '-'}; watermark {q['watermark_read']['payload_id']}")
    if args.json:
        from crossrec_core.persist import atomic_write_text

        atomic_write_text(args.json, json.dumps(report, indent=2, default=str))
    return 0


def add_trailer(actions) -> None:
    p = actions.add_parser("trailer", help="a personalised MP4 trailer of one item or of a user's top items")
    _add_common(p)
    p.add_argument("--user", default=None, help="user id (omitted: the neutral default)")
    p.add_argument("--item", default=None, help="the item of a one-item trailer")
    p.add_argument("--lm", default=None, metavar="DIR|template", help="captions: a local HF causal-LM directory, "
                                                                      "'template', or by default SmolLM2-135M")
    p.add_argument("--out", default=None, metavar="DIR", help="folder for trailer.mp4 and scores.json")
    p.add_argument("--recommender", default=None, metavar="DIR", help="without --item: a saved recommender whose top "
                                                                       "items the trailer shows")
    p.add_argument("--top-k", type=int, default=3, help="items of the user's list (default 3)")
    p.add_argument("--seconds", type=float, default=8.0, help="length, rounded up to 2/3 s chunks (default 8)")
    p.add_argument("--orientation", choices=("portrait", "landscape"), default="portrait",
                   help="portrait 480x720 (default) or landscape 720x480")
    p.add_argument("--diffusers", default=None, metavar="DIR", help="a local Stable Video Diffusion checkpoint: "
                                                                    "image-to-video shots instead of composed ones")
    p.add_argument("--no-score", action="store_true", help="skip OCR, consistency and fidelity scoring")
    p.set_defaults(func=_cmd_trailer)


def _cmd_worker(args) -> int:
    from crossrec.creative_worker import WorkerConfig, run_creative_worker
    from streaming.broker import resolve_bootstrap
    from streaming.events import Topics

    config = WorkerConfig(state_dir=args.state, dataset=args.dataset, max_age_s=args.max_age, max_batch=args.max_batch,
                          light=args.light, variants=args.variants, profiles=args.profiles, data_dir=args.data_dir)
    summary = run_creative_worker(config, bootstrap=resolve_bootstrap(args.bootstrap), topics=Topics(prefix=args.prefix),
                                  group_id=args.group, idle_timeout_s=args.idle_timeout)
    print(json.dumps({k: summary[k] for k in ("consumed", "answers", "dlq", "lag", "elapsed_s")}))
    if args.json:
        from crossrec_core.persist import atomic_write_text

        atomic_write_text(args.json, json.dumps(summary, indent=2, default=str))
    return 0


def add_worker(actions) -> None:
    p = actions.add_parser("worker", help="answer creative requests from Kafka (a consumer group)")
    _add_common(p)
    p.add_argument("--profiles", default=None, metavar="DB", help="the live profile store (default: ml100k ratings)")
    p.add_argument("--variants", type=int, default=4, help="poster variants per request (default 4; --light: 1)")
    p.add_argument("--bootstrap", default=None, metavar="HOST:PORT", help="Kafka (default: the embedded broker)")
    p.add_argument("--prefix", default="crossrec", help="topic prefix (default crossrec)")
    p.add_argument("--group", default="crossrec-creative", help="consumer group (default crossrec-creative)")
    p.add_argument("--state", required=True, metavar="DIR", help="answered-request ledger, asset store and cache")
    p.add_argument("--max-age", type=float, default=600.0, help="answer older requests 'expired' (seconds, default 600)")
    p.add_argument("--max-batch", type=int, default=8, help="requests fetched at a time (default 8)")
    p.add_argument("--light", action="store_true", help="template copy and one poster variant per request")
    p.add_argument("--idle-timeout", type=float, default=None, help="stop after this many idle seconds")
    p.set_defaults(func=_cmd_worker)


def _cmd_loop_bench(args) -> int:
    import signal
    import sys

    from crossrec.loop_bench import LoopBenchConfig, run_loop_bench

    # SIGTERM unwinds like Ctrl+C, so the bench's own broker and worker processes are stopped
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    config = LoopBenchConfig(impressions=args.impressions, tail=min(10_000, args.impressions // 5) or 1, burst=args.burst,
                             skip=tuple(args.skip or ()), storage=args.storage,
                             bootstrap=args.bootstrap, data_dir=args.data_dir)
    report = run_loop_bench(config, json_path=args.json)
    print(report["table"])
    return 0


def add_loop_bench(actions) -> None:
    p = actions.add_parser("loop-bench", help="bandit vs oracle/random/best style through the broker, kill -9 of the "
                                              "creative worker, trailer speed and memory")
    p.add_argument("--impressions", type=int, default=50_000,
                   help="simulated impressions (default 50000; CTR over the last 10000, or a fifth when fewer)")
    p.add_argument("--burst", type=int, default=200, help="light requests in the kill -9 burst (default 200)")
    p.add_argument("--skip", action="append", choices=("bandit", "worker", "trailer"), help="leave a part out")
    p.add_argument("--bootstrap", default=None, metavar="HOST:PORT", help="Kafka (default: a broker of its own)")
    p.add_argument("--storage", choices=("memory", "s3"), default="memory",
                   help="log of the bench's own broker (default memory: the S3 log is ~5x slower on a loaded machine)")
    add_data_dir(p)
    add_json(p)
    p.set_defaults(func=_cmd_loop_bench)
