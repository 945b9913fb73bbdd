"""``crossrec creative eval``: is the creative personal, faithful, labelled and fast enough?

On MovieLens 100K (users with >= ``min_likes`` ratings of 4 or 5; target items they never rated,
with a poster):

- **Counterfactual personalisation**: for each (user u, item i) a random other sampled user v;
  the creative made for u wins when it is closer to u's history than the creative made for v for
  the same item. Posters are scored with the aligned model's image tower (CrossCLIP-ml100k image
  embeddings against the weighted mean embedding of u's liked posters); generation and the gate
  use the Magenta style vector, palettes and MobileNetV2 Gram/pooled features, never the aligned
  model. Copy is scored with multilingual e5 (passage embeddings of the copy vs u's liked items'
  overviews); the English guardrails use MiniLM and the copy is English here, so e5 is used by
  neither. Liked titles quoted in copy are masked before scoring (templates quote none, so the
  mask is a guard). Win rates come with a paired bootstrap 95% interval over users.
- **Weight sweep**: poster win rate and fidelity (Acc@1 below) for every personalisation weight,
  the trade-off curve (plot), and the chosen weight: the highest win rate whose Acc@1 stays
  >= ``min_fidelity``.
- **Real-data ceiling**: AUC of "own history vs a random user's history" for the generated
  posters, next to the same AUC for each eligible user's real next-liked poster (history =
  earlier likes; every user with ``min_likes`` likes, not only the sample), both with a 95%
  interval resampling users.
- **Fidelity**: the poster, as an image query, retrieves its own item's poster first among all
  catalogue posters (aligned image space; Acc@1); the share of copies whose names and numbers all
  come from the item's metadata. Per weight, the same Acc@1 with frozen ImageNet MobileNetV2
  features is reported beside it as a diagnostic (what the layout costs, apart from what the
  aligned tower loses of a poster's look); it chooses nothing.
- **Trust**: labelled share of studio outputs (verify), watermark recovery after JPEG q85 + 10%
  resize on the generated posters, false positives on real photos (grocery shop photos and
  MovieLens posters).
- **Latency** (warm models): LM copy for one (user, item) with its candidates batched, copy
  from the cache, one poster, 16 scored variants, one full studio creative; batch throughput.
- **Language-model copy**: how often the LM's candidates all fail and the templates are used,
  per language, on a small sample (SmolLM2 runs at a few tokens per second on this machine).

The win-rate creatives use one poster variant each, no gate (the gate picks among variants of
one request, which does not change whose taste a variant follows) and template copy; the latency
part runs the whole studio (variants, scores, gate, trust) and the LM.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from crossrec_core.persist import atomic_write_text

__all__ = ["EvalOptions", "EvalReport", "run_eval", "paired_bootstrap", "auc", "auc_interval"]


_CEILING_PARTNERS = 10  # other users' histories each real next-liked poster is compared with


@dataclass(frozen=True)
class EvalOptions:
    users: int = 50
    items: int = 20
    weights: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
    min_fidelity: float = 0.90
    min_likes: int = 20
    history: int = 40
    catalogue: int | None = None
    real_photos: int = 500
    trust_outputs: int = 10
    lm_requests: int = 6
    sheet_users: int = 4
    sheet_items: int = 5
    bootstrap: int = 2000
    seed: int = 0

    @classmethod
    def quick(cls) -> "EvalOptions":
        return cls(users=10, items=5, weights=(0.0, 0.25, 0.5, 0.75, 1.0), trust_outputs=3, lm_requests=2, catalogue=400,
                   history=20)

    def with_(self, **changes: Any) -> "EvalOptions":
        return replace(self, **changes)

    def __post_init__(self) -> None:
        if self.users < 2 or self.items < 1:
            raise ValueError(f"users={self.users} (>= 2) and items={self.items} (>= 1)")
        if not self.weights or not all(0.0 <= w <= 1.0 for w in self.weights):
            raise ValueError(f"weights={self.weights}: non-empty, each in [0, 1]")


@dataclass
class EvalReport:
    data: dict[str, Any] = field(default_factory=dict)

    def format(self) -> str:
        d = self.data
        p, c = d["posters"], d["copy"]
        lines = [
            f"creative eval on {d['setup']['users']} users x {d['setup']['items']} items (ML-100K), "
            f"chosen weight {d['setup']['chosen_weight']}",
            f"posters win rate {p['win_rate']:.3f} CI [{p['win_rate_ci'][0]:.3f}, {p['win_rate_ci'][1]:.3f}]  "
            f"copy win rate {c['win_rate']:.3f} CI [{c['win_rate_ci'][0]:.3f}, {c['win_rate_ci'][1]:.3f}]",
            f"AUC posters {p['auc']:.3f} CI [{p['auc_ci'][0]:.3f}, {p['auc_ci'][1]:.3f}]  ceiling (real next-liked "
            f"posters, {d['ceiling']['n_users']} users) {d['ceiling']['auc']:.3f} CI [{d['ceiling']['auc_ci'][0]:.3f}, "
            f"{d['ceiling']['auc_ci'][1]:.3f}]",
            f"fidelity: poster Acc@1 {d['fidelity']['poster_acc@1']:.3f}  copy entities ok {d['fidelity']['copy_entity_ok']:.3f}",
            f"trust: labelled {d['trust']['labelled']:.3f}  watermark after JPEG q85 + resize {d['trust']['watermark_detected']:.3f}"
            f"  false positives {d['trust']['false_positives']}/{d['trust']['real_photos']}",
            "latency s: " + ", ".join(f"{k} {v:.3f}" for k, v in d["latency_s"].items() if isinstance(v, (int, float))),
            "sweep (weight: poster win rate / Acc@1 [frozen MobileNetV2 Acc@1, diagnostic]): " + ", ".join(
                f"{s['weight']}: {s['win_rate']:.3f} / {s['poster_acc@1']:.3f} [{s['poster_acc@1_frozen_mobilenet_v2']:.3f}]"
                for s in d["sweep"]),
            "LM copy fallback rate: " + ", ".join(f"{k} {v['fallback_rate']:.2f} (n={v['n']})" for k, v in d["lm_copy"].items()),
        ]
        return "\n".join(lines)


def auc(positive: Sequence[float], negative: Sequence[float]) -> float:
    """P(positive > negative) + 0.5 P(tie) over all pairs (Mann-Whitney, from average ranks)."""
    from scipy.stats import rankdata

    pos, neg = np.asarray(positive, np.float64), np.asarray(negative, np.float64)
    if not len(pos) or not len(neg):
        return float("nan")
    ranks = rankdata(np.concatenate([pos, neg]))
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def auc_interval(positive: Sequence[float], negative: Sequence[float], groups: Sequence,
                 negative_groups: Sequence | None = None, n: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% interval of :func:`auc` resampling whole ``groups`` (users) with replacement: entry k
    of ``positive`` belongs to ``groups[k]``, entry k of ``negative`` to ``negative_groups[k]``
    (default ``groups``: the two lists paired)."""
    pos, neg = np.asarray(positive, np.float64), np.asarray(negative, np.float64)
    groups = np.asarray(groups)
    neg_groups = groups if negative_groups is None else np.asarray(negative_groups)
    ids = np.unique(np.concatenate([groups, neg_groups]))
    pos_rows = [np.flatnonzero(groups == g) for g in ids]
    neg_rows = [np.flatnonzero(neg_groups == g) for g in ids]
    values = [auc(pos[np.concatenate([pos_rows[k] for k in pick])], neg[np.concatenate([neg_rows[k] for k in pick])])
              for pick in _group_resamples(len(ids), n, seed)]
    lo, hi = np.nanpercentile(values, [2.5, 97.5])
    return float(lo), float(hi)


def _group_resamples(n_groups: int, n: int, seed: int):
    """``n`` seeded bootstrap draws of group positions ``(n_groups,)``, with replacement."""
    rng = np.random.default_rng(seed)
    for _ in range(n):
        yield rng.integers(0, n_groups, n_groups)


def paired_bootstrap(wins: np.ndarray, groups: np.ndarray, n: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% interval of the mean of ``wins`` (N,) resampling whole ``groups`` (users) with
    replacement: pairs of one user are not independent."""
    ids = np.unique(groups)
    per = [wins[groups == g] for g in ids]
    means = [np.concatenate([per[k] for k in pick]).mean() for pick in _group_resamples(len(ids), n, seed)]
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(lo), float(hi)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def _history_vector(vectors: dict[str, np.ndarray], liked) -> np.ndarray:
    """Weighted mean of the liked items' vectors (those that have one), L2-normalised."""
    rows = [(vectors[e.item.item_id], e.weight) for e in liked if e.item.item_id in vectors]
    v = sum(w * r for r, w in rows) / max(sum(w for _, w in rows), 1e-12)
    return _unit(np.asarray(v, np.float32))


def run_eval(options: EvalOptions = EvalOptions(), *, json_path: str | os.PathLike, sheet_path=None, data_dir=None,
             progress: bool = False, embedder=None) -> EvalReport:
    """Run everything in the module docstring; write the JSON (and the sweep plot and contact
    sheet beside it)."""
    import polars as pl
    from tqdm import tqdm

    from crossrec_datasets import load_movielens
    from generation.catalogue import movielens_items
    from generation.control import liked_from_profile
    from generation.copy import Guardrails, TemplateCopyWriter
    from generation.studio import Studio, StudioConfig
    from recsys.profiles import ProfileStore, interactions_from_ratings
    from retrieval.align.embedder import load_item_embedder
    from retrieval.encoders import E5Encoder

    t_start = time.perf_counter()
    rng = np.random.default_rng(options.seed)
    json_path = Path(json_path)
    ml = load_movielens(data_dir)
    items = movielens_items(movielens=ml)
    store = ProfileStore(None)
    store.apply(interactions_from_ratings(ml.ratings, source="ml100k"))

    # -- users and target items ---------------------------------------------------------------
    likes = ml.ratings.filter(pl.col("rating") >= 4).group_by("user_id").len()
    eligible = sorted(likes.filter(pl.col("len") >= options.min_likes)["user_id"].to_list())
    users = [str(u) for u in rng.choice(eligible, size=min(options.users, len(eligible)), replace=False)]
    rated = {str(u): set(map(str, g["item_id"].to_list())) for (u,), g in ml.ratings.group_by("user_id")}
    with_poster = sorted((i for i, it in items.items() if it.image is not None), key=int)
    liked = {u: liked_from_profile(store.get(int(u)), items) for u in users}
    targets = {u: [str(i) for i in rng.choice([i for i in with_poster if i not in rated[u]], options.items, replace=False)]
               for u in users}
    partner = {}
    for u in users:  # a random other sampled user per (u, i)
        others = [v for v in users if v != u]
        for i in targets[u]:
            partner[(u, i)] = str(rng.choice(others))

    # -- scorers (never used by generation or the gate) ---------------------------------------
    embedder = embedder or load_item_embedder(dataset="ml100k")
    scorer_source = embedder.source or "untrained fallback (frozen MobileNetV2 + seeded random projection)"
    # the retrieval catalogue for Acc@1: every poster, or (``catalogue``) a random subset plus the targets
    catalogue_ids = with_poster
    if options.catalogue is not None and options.catalogue < len(with_poster):
        keep = {i for u in users for i in targets[u]} | set(rng.choice(with_poster, options.catalogue, replace=False))
        catalogue_ids = sorted(keep, key=int)
    # plus every history poster the scores need (the users' likes), embedded once
    # the ceiling uses every eligible user, the sampled ones included: it has one next-liked
    # poster per user, and the sample alone leaves it too noisy to compare the posters with
    ceiling_users = [str(u) for u in eligible]
    liked_all = {u: liked[u] if u in liked else liked_from_profile(store.get(int(u)), items) for u in ceiling_users}
    nexts = {u: _next_liked(store, u) for u in ceiling_users}
    needed_images = set(catalogue_ids) | {e.item.item_id for u in ceiling_users for e in liked_all[u][: options.history]}
    needed_images |= {n for n in nexts.values() if n in items and items[n].image is not None}
    embedded = sorted(needed_images, key=int)
    vectors, ok = _catalogue_vectors(embedder.embed_images, embedder.fingerprint, [items[i].image for i in embedded], progress)
    image_vec = {i: vectors[k] for k, i in enumerate(embedded) if ok[k]}
    cat_vectors = np.stack([image_vec.get(i, np.zeros(vectors.shape[1], np.float32)) for i in catalogue_ids])
    # Diagnostic only (never a target or a choice): the same Acc@1 with frozen ImageNet MobileNetV2
    # features, to tell what the layout costs from what the aligned tower loses of a poster's look.
    frozen = _FrozenImages()
    frozen_cat, _ = _catalogue_vectors(frozen.embed_images, frozen.fingerprint,
                                       [items[i].image if i in image_vec else None for i in catalogue_ids], progress)
    e5 = E5Encoder()
    history_items = {u: [e for e in liked[u] if e.item.text][: options.history] for u in users}
    text_vec = {}
    all_hist = sorted({e.item.item_id for u in users for e in history_items[u]}, key=int)
    for k, vec in zip(all_hist, e5.encode([items[i].title + ". " + items[i].text for i in all_hist])):
        text_vec[k] = vec
    hist_all = {u: _history_vector(image_vec, liked_all[u][: options.history]) for u in ceiling_users}
    hist_img = {u: hist_all[u] for u in users}
    hist_txt = {u: _history_vector(text_vec, history_items[u]) for u in users}

    # -- creatives: template copy once per (user, item), posters per weight --------------------
    guardrails = Guardrails()
    templates = TemplateCopyWriter(guardrails)
    studio = Studio(items, copy_writer=templates, cache=None, config=StudioConfig(variants=1, attempts=1))
    needed = sorted({(u, i) for u in users for i in targets[u]} | {(partner[(u, i)], i) for u in users for i in targets[u]})
    controls, copies = {}, {}
    t0 = time.perf_counter()
    for u, i in tqdm(needed, desc="controls + copy", disable=not progress):
        controls[(u, i)] = studio.controls(items[i], u, liked[u])
        copies[(u, i)] = templates.write(items[i], controls[(u, i)])
    copy_time = (time.perf_counter() - t0) / len(needed)
    pairs = [(u, i) for u in users for i in targets[u]]
    groups = np.array([users.index(u) for u, _ in pairs])

    def acc_at_1(own: np.ndarray, catalogue: np.ndarray) -> float:
        """Share of ``pairs`` whose poster vector (row of ``own``) finds its item first in ``catalogue``."""
        top = np.argmax(own @ catalogue.T, axis=1)
        return float(np.mean([catalogue_ids[t] == i for t, (_, i) in zip(top, pairs)]))

    def choose(entries):
        ok_weights = [s for s in entries if s["poster_acc@1"] >= options.min_fidelity] or entries
        return max(ok_weights, key=lambda s: (s["win_rate"], -s["weight"]))

    # Each weight's posters are embedded as soon as they are rendered; only the images of the
    # weight chosen so far are kept (the trust check and the contact sheet need them): keeping
    # every weight's images held gigabytes at 50 x 20 and slowed rendering down.
    posters: dict[tuple[str, str, float], Any] = {}
    sweep, poster_vectors = [], {}
    render_s, rendered = 0.0, 0
    for w in options.weights:
        t0 = time.perf_counter()
        images = {}
        for u, i in tqdm(needed, desc=f"posters w={w}", disable=not progress):
            c = replace(controls[(u, i)], personalisation=float(w))
            images[(u, i, w)] = studio.render(items[i], c, copy=copies[(u, i)], score=False).poster.image
        render_s, rendered = render_s + time.perf_counter() - t0, rendered + len(images)
        keys = list(images)
        out = embedder.embed_images([images[k] for k in keys])
        vec = {k: v for k, v, good in zip(keys, _unit(out.vectors), out.ok) if good}
        wins = np.array([float(vec[(u, i, w)] @ hist_img[u] > vec[(partner[(u, i)], i, w)] @ hist_img[u]) for u, i in pairs])
        acc = acc_at_1(np.array([vec[(u, i, w)] for u, i in pairs]), cat_vectors)
        frozen_acc = acc_at_1(frozen.embed_images([images[(u, i, w)] for u, i in pairs]).vectors, frozen_cat)
        ci = paired_bootstrap(wins, groups, options.bootstrap, options.seed)
        sweep.append({"weight": w, "win_rate": float(wins.mean()), "win_rate_ci": list(ci), "poster_acc@1": acc,
                      "poster_acc@1_frozen_mobilenet_v2": frozen_acc})
        poster_vectors[w] = vec
        if choose(sweep)["weight"] == w:
            posters = {(u, i, w): images[(u, i, w)] for u, i in pairs}
    poster_time = render_s / rendered
    chosen = choose(sweep)
    w_star = chosen["weight"]
    vec_star = poster_vectors[w_star]

    # AUC: own history vs a random other user's history, generated posters vs real next-liked posters
    def other(u):
        return str(rng.choice([v for v in users if v != u]))

    pos = [float(vec_star[(u, i, w_star)] @ hist_img[u]) for u, i in pairs]
    neg = [float(vec_star[(u, i, w_star)] @ hist_img[other(u)]) for u, i in pairs]
    ceiling_pos, ceiling_neg, ceiling_users_of_neg = [], [], []
    ceiling_rng = np.random.default_rng(options.seed + 1)  # its own draws: the sample's stay as they were
    scored = [u for u in ceiling_users if nexts[u] in image_vec]
    for k, u in enumerate(scored):
        nxt = nexts[u]
        earlier = [e for e in liked_all[u] if e.item.item_id != nxt]
        ceiling_pos.append(float(image_vec[nxt] @ _history_vector(image_vec, earlier[: options.history])))
        # several other users per poster: one random partner each left the AUC noisy by the draw
        for v in ceiling_rng.choice([x for x in ceiling_users if x != u], _CEILING_PARTNERS, replace=False):
            ceiling_neg.append(float(image_vec[nxt] @ hist_all[str(v)]))
            ceiling_users_of_neg.append(k)

    # copy win rate (e5), liked titles masked
    def copy_text(u, i):
        text = copies[(u, i)].text()
        for title in controls[(u, i)].liked_titles:
            text = text.replace(title, " ")
        return text

    copy_keys = sorted({(u, i) for u, i in pairs} | {(partner[(u, i)], i) for u, i in pairs})
    copy_vec = dict(zip(copy_keys, e5.encode([copy_text(u, i) for u, i in copy_keys])))
    copy_wins = np.array([float(copy_vec[(u, i)] @ hist_txt[u] > copy_vec[(partner[(u, i)], i)] @ hist_txt[u]) for u, i in pairs])
    copy_ties = float(np.mean([copy_vec[(u, i)] @ hist_txt[u] == copy_vec[(partner[(u, i)], i)] @ hist_txt[u] for u, i in pairs]))
    entity_ok = float(np.mean([copies[k].guardrails.entities_ok for k in copies]))

    # -- trust ------------------------------------------------------------------------------
    from generation.trust import watermark_benchmark

    grocery_photos = _grocery_photos(data_dir, options.real_photos // 2, rng)
    ml_posters = [items[i].image for i in rng.choice(with_poster, options.real_photos - len(grocery_photos), replace=False)]
    bench = watermark_benchmark([posters[(u, i, w_star)] for u, i in pairs], grocery_photos + ml_posters,
                                seed=options.seed, progress=progress)

    # -- latency with the whole studio (warm), LM copy, cache --------------------------------
    latency, lm_report, labelled = _latency_and_lm(options, items, users, targets, liked, guardrails, templates)

    # -- contact sheet and sweep plot -------------------------------------------------------
    sheet = Path(sheet_path) if sheet_path else json_path.with_name(json_path.stem + "-contact-sheet.png")
    _contact_sheet(sheet, users[: options.sheet_users], targets, posters, controls, w_star, options.sheet_items)
    plot = _sweep_plot(json_path.with_name(json_path.stem + "-sweep.png"), sweep, w_star)

    total_posters = len(needed) * len(options.weights)
    data = {
        "setup": {"users": len(users), "items": options.items, "pairs": len(pairs), "weights": list(options.weights),
                  "chosen_weight": w_star, "seed": options.seed, "min_likes": options.min_likes,
                  "poster_scorer": f"aligned image tower: {scorer_source}", "copy_scorer": e5.fingerprint,
                  "poster_scorer_training": _training_settings(embedder.source),
                  "copy_writer_for_win_rate": "template (LM sampled separately: lm_copy)",
                  "poster_variants_for_win_rate": 1, "load_avg": _loadavg()},
        "posters": {"win_rate": chosen["win_rate"], "win_rate_ci": chosen["win_rate_ci"], "auc": auc(pos, neg),
                    "auc_ci": list(auc_interval(pos, neg, groups, n=options.bootstrap, seed=options.seed))},
        "copy": {"win_rate": float(copy_wins.mean()), "win_rate_ci": list(paired_bootstrap(copy_wins, groups,
                 options.bootstrap, options.seed)), "ties": copy_ties},
        "ceiling": {"auc": auc(ceiling_pos, ceiling_neg), "n_users": len(ceiling_pos),
                    "auc_ci": list(auc_interval(ceiling_pos, ceiling_neg, np.arange(len(ceiling_pos)), ceiling_users_of_neg,
                                                options.bootstrap, options.seed)),
                    "what": f"real next-liked poster vs own earlier likes / {_CEILING_PARTNERS} random other users' "
                            "likes, same encoder"},
        "fidelity": {"poster_acc@1": chosen["poster_acc@1"], "copy_entity_ok": entity_ok,
                     "catalogue_posters": len(catalogue_ids)},
        "trust": {"labelled": labelled, "watermark_detected": bench.recovered_rate,
                  "false_positives": bench.false_positives, "real_photos": bench.n_real, "benchmark": bench.to_dict()},
        "latency_s": {**latency, "eval_copy_template_per_request": copy_time, "eval_poster_per_render": poster_time},
        "throughput": {"posters_per_s": 1.0 / poster_time if poster_time else None,
                       "template_copy_per_s": 1.0 / copy_time if copy_time else None, "posters_rendered": total_posters},
        "sweep": sweep, "lm_copy": lm_report, "files": {"contact_sheet": str(sheet), "sweep_plot": str(plot)},
        "wall_s": time.perf_counter() - t_start,
    }
    atomic_write_text(json_path, json.dumps(data, indent=2, default=float))
    return EvalReport(data)


def _catalogue_vectors(embed, fingerprint: str, images: list, progress: bool) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors ``(N, D)`` of the catalogue posters and their decode flags ``(N,)``, cached per
    encoder and image list; ``embed(images)`` gives an object with ``vectors`` and ``ok``."""
    import hashlib

    from tqdm import tqdm

    from crossrec_core.paths import cache_dir

    digest = hashlib.sha256(("\n".join(map(str, images)) + fingerprint).encode()).hexdigest()[:16]
    file = cache_dir("eval") / f"catalogue-{digest}.npz"
    if file.is_file():
        with np.load(file) as cached:
            return cached["vectors"], cached["ok"]
    chunks = [embed(images[k:k + 128]) for k in tqdm(range(0, len(images), 128), desc="catalogue posters",
                                                      disable=not progress)]
    vectors, ok = _unit(np.concatenate([c.vectors for c in chunks])), np.concatenate([c.ok for c in chunks])
    file.parent.mkdir(parents=True, exist_ok=True)
    tmp = file.with_name(file.stem + ".tmp.npz")
    np.savez(tmp, vectors=vectors, ok=ok)
    tmp.replace(file)
    return vectors, ok


class _FrozenImages:
    """Frozen ImageNet MobileNetV2 pooled features, unit ``(N, 1280)``, behind the ``embed_images``
    interface of the aligned embedder (missing or undecodable images: zero rows, ``ok`` False)."""

    def __init__(self):
        from retrieval.encoders import MobileNetV2Encoder

        self.encoder = MobileNetV2Encoder()
        self.fingerprint = self.encoder.fingerprint

    def embed_images(self, images: list):
        from retrieval.align.embedder import Embeddings

        out = self.encoder.encode_skipping(images)
        return Embeddings(out.vectors, out.ok, out.errors)


def _training_settings(model_dir: str) -> dict[str, Any] | None:
    """The scorer's training settings (saved beside its weights): the poster figures depend on
    them (the demo's light model and a full ``crossrec retrieval train`` one sit at different
    points of the win-rate / Acc@1 trade-off). None when none were saved."""
    from dataclasses import asdict

    from crossrec_core.errors import ModelLoadError
    from retrieval.align.model import AlignedModel

    if not model_dir:  # the untrained fallback: nothing was trained
        return None
    try:
        training = AlignedModel.load_training_config(model_dir)
    except ModelLoadError:
        return None
    return asdict(training) if training is not None else None


def _next_liked(store, user: str) -> str:
    """The user's latest item rated 4 or 5 (ties broken by item id)."""
    history = sorted((h[3], h[0]) for h in store.get(int(user)).history if h[1] == "rating" and (h[2] or 0) >= 4)
    return str(history[-1][1])


def _loadavg() -> str:
    try:
        return Path("/proc/loadavg").read_text().strip()
    except OSError:
        return ""


def _grocery_photos(data_dir, n: int, rng) -> list[Path]:
    from crossrec_datasets import load_grocery

    photos = [p.path for p in load_grocery(data_dir).photos]
    return [photos[k] for k in rng.choice(len(photos), min(n, len(photos)), replace=False)]


def _latency_and_lm(options, items, users, targets, liked, guardrails, templates):
    """Warm-model latencies, full studio creatives (labelled share), the LM copy sample per
    language. The studio creatives use template copy: the LM's latency is measured on its own."""
    import tempfile

    from generation.assets import AssetStore
    from generation.cache import CacheKey, CreativeCache, segment_owner
    from generation.copy import AdCopy, CopyRequest, LanguageModelCopyWriter
    from generation.poster import PosterCopy
    from generation.studio import Studio, StudioConfig
    from generation.trust import verify

    lm_writer = LanguageModelCopyWriter(guardrails=guardrails)
    studio = Studio(items, copy_writer=lm_writer, config=StudioConfig(variants=4, attempts=2))
    u, i = users[0], targets[users[0]][0]
    item = items[i]
    controls = studio.controls(item, u, liked[u])
    lm_writer.write(item, controls)  # warm: load the model
    t = time.perf_counter()
    copy = lm_writer.write(item, controls, seed=1)
    lat = {"copy": time.perf_counter() - t}
    cache = CreativeCache(":memory:")
    key = CacheKey("copy", segment_owner(0), i, lm_writer.fingerprint)
    cache.put(key, copy.to_dict())
    t = time.perf_counter()
    AdCopy.from_dict(cache.get(key))
    lat["copy_cached"] = time.perf_counter() - t
    text = PosterCopy(copy.headline, copy.tagline, item.attributes.get("year", ""))
    studio.poster_generator.generate(item, text, controls, n_variants=1)  # warm
    t = time.perf_counter()
    studio.poster_generator.generate(item, text, controls, n_variants=1, seed=5)
    lat["poster"] = time.perf_counter() - t
    t = time.perf_counter()
    variants = studio.poster_generator.generate(item, text, controls, n_variants=16, seed=7)
    studio.scorer.score(variants, item, controls, style_references=[e.item.image for e in liked[u][:8]])
    lat["variants16"] = time.perf_counter() - t
    # full creatives through the studio (variants, scores, gate, trust), then the labelled share
    labelled, made = 0, 0
    with tempfile.TemporaryDirectory() as tmp:
        full = Studio(items, copy_writer=templates, poster_generator=studio.poster_generator, scorer=studio.scorer,
                      style_model=studio.style_model, assets=AssetStore(Path(tmp) / "assets"),
                      config=StudioConfig(variants=4, attempts=2))
        t = time.perf_counter()
        for k in range(options.trust_outputs):
            uu = users[k % len(users)]
            out = Path(tmp) / str(k)
            result = full.make(targets[uu][k % len(targets[uu])], user_id=uu, liked=liked[uu], out_dir=out)
            v = verify(out / "poster.png")
            labelled += int(v.label and v.manifest == "valid" and v.watermark_id == result.payload_id)
            made += 1
        lat["studio_creative"] = (time.perf_counter() - t) / max(made, 1)
    # LM copy fallback per language (and the batched throughput)
    lm_report = {}
    for lang in ("en", "zh"):
        reqs = [CopyRequest(items[targets[uu][0]], studio.controls(items[targets[uu][0]], uu, liked[uu], language=lang))
                for uu in users[: options.lm_requests]]
        t = time.perf_counter()
        outs = lm_writer.write_batch(reqs, seed=3)
        elapsed = time.perf_counter() - t
        lm_report[lang] = {"n": len(outs), "fallback_rate": float(np.mean([o.source == "template" for o in outs])),
                           "batch_s": elapsed, "per_request_s": elapsed / len(outs),
                           "examples": [o.to_dict() for o in outs[:2]]}
    return lat, lm_report, labelled / max(made, 1)


def _contact_sheet(path: Path, users, targets, posters, controls, weight, n_items: int) -> Path:
    """Rows: users (labelled with their top style words); columns: items."""
    from PIL import Image, ImageDraw

    from generation.poster.text import load_font

    thumb, label_w = 180, 200
    n_items = min(n_items, min(len(targets[u]) for u in users))
    sheet = Image.new("RGB", (label_w + n_items * thumb, len(users) * thumb), "white")
    draw = ImageDraw.Draw(sheet)
    font = load_font(14)
    for r, u in enumerate(users):
        c0 = controls[(u, targets[u][0])]
        draw.text((8, r * thumb + 10), f"user {u}\n" + "\n".join(c0.style_words) + f"\n{c0.theme}\nweight {weight}",
                  fill=(0, 0, 0), font=font)
        for c, i in enumerate(targets[u][:n_items]):
            im = posters[(u, i, weight)].copy()
            im.thumbnail((thumb - 6, thumb - 6))
            sheet.paste(im, (label_w + c * thumb + 3, r * thumb + 3))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path


def _sweep_plot(path: Path, sweep, chosen: float) -> Path:
    from crossrec_core.plots import pyplot, save_figure

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 4))
    xs = [s["poster_acc@1"] for s in sweep]
    ys = [s["win_rate"] for s in sweep]
    ax.plot(xs, ys, "o-")
    for s in sweep:
        ax.annotate(f"w={s['weight']}" + (" (chosen)" if s["weight"] == chosen else ""), (s["poster_acc@1"], s["win_rate"]))
    ax.axhline(0.75, ls="--", c="grey", lw=0.8)
    ax.axvline(0.90, ls="--", c="grey", lw=0.8)
    ax.set_xlabel("fidelity: poster Acc@1 (own item among catalogue posters)")
    ax.set_ylabel("poster win rate vs a random other user's creative")
    ax.set_title("personalisation weight sweep")
    fig.tight_layout()
    return save_figure(fig, path)
