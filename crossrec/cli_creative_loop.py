"""``crossrec creative trailer|worker|loop-bench``: trailers, the creative worker on Kafka and the
feedback-loop benchmark (issue 12). Registered by :mod:`crossrec.cli_creative`.

- ``crossrec creative trailer --user ID [--item ID] --out DIR``: ``trailer.mp4`` (H.264, labelled,
  watermarked, C2PA-signed) and ``scores.json`` (timings, memory, temporal consistency, OCR
  read-back of the captions, key-frame fidelity with the aligned model when one is trained).
  Without ``--item``: the user's top items from a saved recommender (``--recommender DIR``).
- ``crossrec creative worker --bootstrap HOST:PORT --state DIR``: answer creative requests.
- ``crossrec creative feedback --bandit DIR [--store PROFILE_DB]``: impressions and clicks from
  Kafka into the bandit the service's ``choose_variant`` reads.
- ``crossrec creative loop-bench --json PATH``: bandit simulation through the broker, kill -9 of
  the worker during a burst, trailer speed and memory.
"""

from __future__ import annotations

import json

from crossrec.creative import make_trailer
from crossrec.options import add_data_dir, add_json

__all__ = ["add_trailer", "add_worker", "add_feedback", "add_loop_bench"]




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
        from crossrec_core.persist import write_json

        write_json(args.json, report)
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
                          light=args.light, variants=args.variants, profiles=args.profiles, data_dir=args.data_dir,
                          assets_dir=args.assets_dir, cache_path=args.creative_cache)
    summary = run_creative_worker(config, bootstrap=resolve_bootstrap(args.bootstrap), topics=Topics(prefix=args.prefix),
                                  group_id=args.group, idle_timeout_s=args.idle_timeout)
    print(json.dumps({k: summary[k] for k in ("consumed", "answers", "dlq", "lag", "elapsed_s")}))
    if args.json:
        from crossrec_core.persist import write_json

        write_json(args.json, summary)
    return 0


def add_worker(actions) -> None:
    p = actions.add_parser("worker", help="answer creative requests from Kafka (a consumer group)")
    _add_common(p)
    p.add_argument("--profiles", default=None, metavar="DB", help="the live profile store (default: ml100k ratings)")
    p.add_argument("--variants", type=int, default=None, help="poster variants per request (default 4; --light: 1)")
    p.add_argument("--bootstrap", default=None, metavar="HOST:PORT", help="Kafka (default: the embedded broker)")
    p.add_argument("--prefix", default="crossrec", help="topic prefix (default crossrec)")
    p.add_argument("--group", default="crossrec-creative", help="consumer group (default crossrec-creative)")
    p.add_argument("--state", required=True, metavar="DIR", help="answered-request ledger (and, unless given below, "
                                                                     "the asset store and creative cache)")
    p.add_argument("--assets-dir", default=None, metavar="DIR", help="content-addressed asset store (default: STATE/assets)")
    p.add_argument("--creative-cache", default=None, metavar="DB", help="creative cache index (default: STATE/cache.sqlite)")
    p.add_argument("--max-age", type=float, default=600.0, help="answer older requests 'expired' (seconds, default 600)")
    p.add_argument("--max-batch", type=int, default=8, help="requests fetched at a time (default 8)")
    p.add_argument("--light", action="store_true", help="template copy and one poster variant per request")
    p.add_argument("--idle-timeout", type=float, default=None, help="stop after this many idle seconds")
    p.set_defaults(func=_cmd_worker)


def _cmd_feedback(args) -> int:
    from crossrec.wiring import run_feedback_consumer
    from streaming.broker import resolve_bootstrap
    from streaming.events import Topics

    summary = run_feedback_consumer(resolve_bootstrap(args.bootstrap), args.bandit, store_path=args.store,
                                    n_segments=args.segments, topics=Topics(prefix=args.prefix), group_id=args.group,
                                    idle_timeout_s=args.idle_timeout)
    print(json.dumps({k: summary[k] for k in ("consumed", "applied", "duplicates", "dlq", "lag", "elapsed_s", "bandit")}))
    if args.json:
        from crossrec_core.persist import write_json

        write_json(args.json, summary)
    return 0


def add_feedback(actions) -> None:
    p = actions.add_parser("feedback", help="apply creative impressions and clicks from Kafka to the bandit the "
                                            "service reads (a consumer group)")
    p.add_argument("--bandit", required=True, metavar="DIR", help="the bandit state (created when DIR holds none)")
    p.add_argument("--store", default=None, metavar="PROFILE_DB",
                   help="the live profile store: its users' category affinities define the segments when the bandit "
                        "is created, and segment users first seen later (required to create a bandit)")
    p.add_argument("--segments", type=int, default=None,
                   help="k-means segments when creating the bandit (default 10, plus one cold segment)")
    p.add_argument("--bootstrap", default=None, metavar="HOST:PORT", help="Kafka (default: the embedded broker)")
    p.add_argument("--prefix", default="crossrec", help="topic prefix (default crossrec)")
    p.add_argument("--group", default="crossrec-feedback", help="consumer group (default crossrec-feedback)")
    p.add_argument("--idle-timeout", type=float, default=None, help="stop after this many idle seconds")
    add_json(p)
    p.set_defaults(func=_cmd_feedback)


def _cmd_loop_bench(args) -> int:
    import signal
    import sys

    from crossrec.loop_bench import LoopBenchConfig, run_loop_bench

    # SIGTERM unwinds like Ctrl+C, so the bench's own broker and worker processes are stopped
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    config = LoopBenchConfig(impressions=args.impressions, tail=min(10_000, args.impressions // 5) or 1, burst=args.burst,
                             variants=args.variants,
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
    p.add_argument("--variants", type=int, default=1,
                   help="poster variants per burst request (default 1, the light request; more: every servable "
                        "variant is stored and published)")
    p.add_argument("--skip", action="append", choices=("bandit", "worker", "trailer"), help="leave a part out")
    p.add_argument("--bootstrap", default=None, metavar="HOST:PORT", help="Kafka (default: a broker of its own)")
    p.add_argument("--storage", choices=("memory", "s3"), default="memory",
                   help="log of the bench's own broker (default memory: the S3 log is ~5x slower on a loaded machine)")
    add_data_dir(p)
    add_json(p)
    p.set_defaults(func=_cmd_loop_bench)
