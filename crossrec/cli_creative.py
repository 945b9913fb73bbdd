"""``crossrec creative``: personalised creatives (copy + poster) for a (user, item) pair.

- ``crossrec creative --user ID --item ID --out DIR [--dataset ml100k|grocery]``: writes
  ``poster.png``, ``copy.json``, ``scores.json``.
- ``crossrec creative verify FILE``: label, watermark, C2PA manifest, verdict.
- ``crossrec creative eval --json PATH [--quick]``: the issue-11 evaluation and a contact sheet.

Each action is one ``_add_<name>(actions)`` function below; a new action adds one such function
and one line in :func:`add_parser`.

Whose taste: see :func:`crossrec.creative.user_taste`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from crossrec.creative import make_creative
from crossrec.options import add_data_dir, add_json

__all__ = ["add_parser"]

DATASETS = ("ml100k", "grocery")




# -- subcommands -------------------------------------------------------------------------------------

def _cmd_make(args) -> int:
    if args.item is None or args.out is None:
        raise ValueError("crossrec creative: --item and --out are required (or use an action: verify, eval)")
    liked = [s for s in (args.liked or "").split(",") if s.strip()]
    result, taste = make_creative(args.dataset, args.item, args.out, user=args.user, liked=liked, profiles=args.profiles,
                                  data_dir=args.data_dir, language=args.language, shape=args.shape, variants=args.variants,
                                  personalisation=args.personalisation, lm=args.lm, use_cache=not args.no_cache,
                                  shopper_seed=args.shopper_seed)
    report = {**result.to_dict(), "taste": {"source": taste.source, "liked": len(taste.liked),
                                            "profile_version": taste.profile_version},
              "copy": {k: v for k, v in result.copy.to_dict().items() if k in ("headline", "tagline", "body", "source")}}
    print(f"wrote {', '.join(str(Path(args.out) / n) for n in ('poster.png', 'copy.json', 'scores.json'))}")
    print(f"  user {taste.user_id or '-'} ({taste.source}, {len(taste.liked)} liked items); item {result.item_id}; "
          f"copy from {result.copy.source}; gate {'passed' if result.gate_passed else 'failed (fallback)'}; "
          f"{'cache hit' if result.cache_hit else 'generated'}; watermark id {result.payload_id}")
    print(f"  headline: {result.copy.headline}\n  tagline:  {result.copy.tagline}")
    if args.json:
        from crossrec_core.persist import write_json

        write_json(args.json, report)
    return 0


def _add_verify(actions) -> None:
    p = actions.add_parser("verify", help="check a file for the AI-generated label, our watermark and a C2PA manifest")
    p.add_argument("file", help="an image (PNG/JPEG), a trailer (MP4: the watermark is read from its frames) "
                                "or any file type C2PA supports")
    add_json(p)
    p.set_defaults(func=_cmd_verify)


def _cmd_verify(args) -> int:
    from generation.trailer.mark import verify_media

    result = verify_media(args.file)
    print(result.summary())
    if args.json:
        from crossrec_core.persist import write_json

        write_json(args.json, result.to_dict())
    return 0


def _add_eval(actions) -> None:
    p = actions.add_parser("eval", help="personalisation, fidelity, trust and latency of the creatives (ML-100K)")
    add_json(p, required=True)
    add_data_dir(p)
    p.add_argument("--quick", action="store_true", help="10 users x 5 items (about 10 minutes); default 50 x 20")
    p.add_argument("--users", type=int, default=None, help="number of users (overrides the mode's)")
    p.add_argument("--items", type=int, default=None, help="items per user (overrides the mode's)")
    p.add_argument("--weights", type=float, nargs="+", default=None, metavar="W",
                   help="personalisation weights of the sweep, each in [0, 1] (default 0 0.25 0.5 0.75 1)")
    p.add_argument("--sheet", default=None, metavar="PNG", help="contact sheet path (default: beside the JSON)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--poster-scorer", default=None, metavar="DIR",
                   help="aligned model directory whose image tower scores the posters (default: the trained "
                        "MovieLens model, $CROSSREC_HOME/models/crossclip-ml100k)")
    p.set_defaults(func=_cmd_eval)


def _cmd_eval(args) -> int:
    from generation.evaluate import EvalOptions, run_eval

    options = EvalOptions.quick() if args.quick else EvalOptions()
    weights = tuple(args.weights) if args.weights else None
    overrides = {k: v for k, v in (("users", args.users), ("items", args.items), ("weights", weights)) if v is not None}
    options = options.with_(seed=args.seed, **overrides)
    embedder = None
    if args.poster_scorer is not None:
        from retrieval.align.embedder import load_item_embedder

        embedder = load_item_embedder(args.poster_scorer, dataset="ml100k")
    report = run_eval(options, json_path=args.json, sheet_path=args.sheet, data_dir=args.data_dir, progress=True,
                      embedder=embedder)
    print(report.format())
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("creative", help="personalised ad copy and posters for a (user, item) pair",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", choices=DATASETS, default="ml100k", help="catalogue (default: ml100k)")
    add_data_dir(p)
    p.add_argument("--user", default=None, help="user id (ml100k: a MovieLens user; grocery: a simulated shopper 1..50); "
                                                "omitted: the neutral default")
    p.add_argument("--item", default=None, help="item id")
    p.add_argument("--out", default=None, metavar="DIR", help="folder for poster.png, copy.json, scores.json")
    p.add_argument("--liked", default=None, metavar="ID,ID", help="explicit liked item ids (instead of --user's history)")
    p.add_argument("--profiles", default=None, metavar="DB", help="a profile store file (the stream workers' live store)")
    p.add_argument("--shopper-seed", type=int, default=0, help="grocery: seed of the shopper simulator (default 0)")
    p.add_argument("--language", choices=("en", "zh"), default="en")
    p.add_argument("--shape", choices=("square", "landscape", "story"), default="square")
    p.add_argument("--variants", type=int, default=4, help="poster variants per attempt (default 4)")
    p.add_argument("--personalisation", type=float, default=0.5, help="user-style weight in [0, 1] (default 0.5)")
    p.add_argument("--lm", default=None, metavar="DIR", help="a local HF causal-LM directory (default: SmolLM2-135M)")
    p.add_argument("--no-cache", action="store_true", help="always generate (do not read or fill the creative cache)")
    add_json(p)
    p.set_defaults(func=_cmd_make)
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    _add_verify(actions)
    _add_eval(actions)
    from crossrec import cli_creative_loop  # issue 12: trailer, worker, loop-bench

    cli_creative_loop.add_trailer(actions)
    cli_creative_loop.add_worker(actions)
    cli_creative_loop.add_feedback(actions)
    cli_creative_loop.add_loop_bench(actions)
