"""``crossrec data synth|check``: thin wrappers over ``crossrec_datasets``."""

from __future__ import annotations

__all__ = ["add_parser"]


def add_parser(subparsers) -> None:
    group = subparsers.add_parser("data", help="user data: generate a synthetic shop, check a folder")
    sub = group.add_subparsers(dest="data_command", required=True)

    synth = sub.add_parser("synth", help="write a synthetic shop (catalogue, users, interactions) to a folder")
    synth.add_argument("--out", required=True, help="folder to write (replaced as a whole)")
    synth.add_argument("--items", type=int, required=True)
    synth.add_argument("--users", type=int, required=True)
    synth.add_argument("--interactions", type=int, required=True)
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--images", action="store_true", help="also write a small image and a query photo per item")
    synth.set_defaults(func=_synth)

    check = sub.add_parser("check", help="validate a dataset folder; exit 1 when it cannot be used")
    check.add_argument("path", help="the folder (catalogue.*, interactions.*, photos.*, users.*)")
    check.add_argument("--json", default=None, metavar="PATH", help="write the report JSON to PATH")
    check.add_argument("--no-images", action="store_true", help="skip opening every image")
    check.set_defaults(func=_check)


def _synth(args) -> int:
    import time

    from crossrec_datasets.synthetic import make_shop

    start = time.perf_counter()
    out = make_shop(args.out, n_items=args.items, n_users=args.users, n_interactions=args.interactions,
                    seed=args.seed, images=args.images, progress=True)
    print(f"wrote {out}: {args.items} items, {args.users} users, {args.interactions} interactions "
          f"in {time.perf_counter() - start:.1f} s")
    return 0


def _check(args) -> int:
    from crossrec_core.persist import write_json
    from crossrec_datasets.check import check_dataset

    report = check_dataset(args.path, check_images=not args.no_images)
    print(report.format())
    if args.json:
        write_json(args.json, report.to_dict())
    return 0 if report.usable else 1
