"""``crossrec retrieval eval-queries``: search quality on the natural query sets.

Fusion weights are learned on the dev half only (grid search per query language, its choice
checked by 5-fold cross-validation over dev groups); every figure is reported on the held-out half
(used for no choice) and on dev, per language and per query type. The hybrid is compared with each
single signal by a paired bootstrap over held-out queries.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from crossrec_core.errors import DataFormatError, DatasetNotFoundError
from crossrec_core.persist import atomic_write_text
from retrieval.hybrid import DenseSignal, SignalHits, fuse, learn_weights, ndcg_at
from retrieval.searcher import Searcher, query_language

__all__ = ["Judged", "load_query_set", "split_groups", "SPLITS", "rank_metrics", "QueryEvalOptions", "evaluate_queries", "REPORT_NAMES"]

# JSON name -> what it ranks by
REPORT_NAMES = {
    "hybrid": "weighted fusion of every signal, weights learned on dev per language",
    "rrf": "reciprocal-rank fusion of every signal",
    "bm25": "BM25 over item texts (stemmed words, jieba for Chinese)",
    "trigram": "BM25 over character trigrams",
    "dense_text": "frozen multilingual e5-small, query vs item text",
    "dense_text_minilm": "frozen all-MiniLM-L6-v2, query vs item text (title, classes, description)",
    "dense_title": "frozen multilingual e5-small, query vs title and classes",
    "dense_title_minilm": "frozen all-MiniLM-L6-v2, query vs title and classes",
    "aligned_image": "aligned text tower vs catalogue images",
    "fused": "aligned text tower vs fused image+text item vectors",
    "reference_frozen_text": "frozen all-MiniLM-L6-v2, query vs the raw description (the issue's reference)",
}
_SIGNAL_OF = {"bm25": "bm25", "trigram": "trigram", "dense_text": "e5", "dense_text_minilm": "minilm",
              "dense_title": "e5_title", "dense_title_minilm": "minilm_title",
              "aligned_image": "image", "fused": "fused", "reference_frozen_text": "reference"}


@dataclass(frozen=True)
class Judged:
    """One query with graded relevance ``gains`` (catalogue row -> 1 or 2)."""

    id: str
    group: str
    lang: str
    type: str
    query: str
    split: str
    gains: dict[int, int]


SPLITS = ("dev", "heldout")
COMMITTED_SETS = ("grocery", "ml100k")
SPLIT_SEED = 15  # the committed sets were split with random.Random(15); a user's set without splits is split the same way


def split_groups(groups: Sequence[str], seed: int = SPLIT_SEED) -> dict[str, str]:
    """Each group's split: the groups shuffled once with ``random.Random(seed)``, the first half
    (rounded down) ``dev``, the rest ``heldout``; queries sharing a group never straddle the split."""
    import random

    order = sorted(set(groups))
    random.Random(seed).shuffle(order)
    return {g: "dev" if k < len(order) // 2 else "heldout" for k, g in enumerate(order)}


def _field(r: dict, name: str, where: str, default=None, allowed: Sequence[str] | None = None) -> str:
    value = r.get(name, default)
    if not isinstance(value, str) or not value.strip():
        raise DataFormatError(f"{where}: {name}={value!r} must be a non-empty string")
    if allowed is not None and value not in allowed:
        raise DataFormatError(f"{where}: {name}={value!r} is not one of {tuple(allowed)}")
    return value


def load_query_set(dataset: str, row_of: Mapping[str, int], path: str | Path | None = None) -> list[Judged]:
    """The committed query set of ``dataset``, or the JSONL file ``path``; ``row_of`` maps a
    judgement key (grocery: product name; ml100k and folders: item id as str) to its catalogue row.

    One object per line: ``query`` and ``relevance`` (key -> grade 0, 1 or 2) are required;
    ``id`` (default ``q<line>``), ``group`` (default the id), ``lang`` (``en``/``zh``, default
    from the query's script), ``type`` (default ``query``) and ``split`` (``dev``/``heldout``)
    are optional. Give ``split`` on every line or on none: without it the groups are split at
    random once, seeded (:func:`split_groups`). Raises ``DataFormatError`` naming the line."""
    name = str(path) if path is not None else f"the {dataset} query set"
    try:
        text = (Path(path).read_text("utf-8") if path is not None else
                resources.files("crossrec_datasets").joinpath("queries", f"{dataset}.jsonl").read_text("utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise DataFormatError(f"{name}: cannot read the query set ({exc})") from exc
    rows, ids = [], set()
    for line_no, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{name} line {line_no}"
        try:
            r = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataFormatError(f"{where}: not a JSON object ({exc.msg})") from exc
        if not isinstance(r, dict):
            raise DataFormatError(f"{where}: not a JSON object")
        query = _field(r, "query", where)
        qid = _field(r, "id", where, f"q{line_no}")
        if qid in ids:
            raise DataFormatError(f"{where}: id={qid!r} is used twice")
        ids.add(qid)
        relevance = r.get("relevance")
        if not isinstance(relevance, dict) or not relevance:
            raise DataFormatError(f"{where}: relevance={relevance!r} must be an object of item -> grade (0, 1 or 2)")
        bad = {k: g for k, g in relevance.items() if isinstance(g, bool) or g not in (0, 1, 2)}
        if bad:
            raise DataFormatError(f"{where}: grades {bad} must be 0, 1 or 2")
        unknown = [key for key in relevance if key not in row_of]
        if unknown:
            raise DataFormatError(f"{where}: items {unknown[:5]} are not in the catalogue")
        if not any(relevance.values()):
            raise DataFormatError(f"{where}: no item has a grade above 0 (nothing to find)")
        split = None if r.get("split") is None else _field(r, "split", where, allowed=SPLITS)
        rows.append((Judged(qid, _field(r, "group", where, qid), _field(r, "lang", where, query_language(query), ("en", "zh")),
                            _field(r, "type", where, "query"), query, split or "",
                            {row_of[key]: int(g) for key, g in relevance.items() if int(g) > 0}), line_no))
    if not rows:
        raise DataFormatError(f"{name}: no queries")
    given = [j.split for j, _ in rows]
    if all(given):
        return [j for j, _ in rows]
    if any(given):
        line_no = next(n for j, n in rows if not j.split)
        raise DataFormatError(f"{name} line {line_no}: no split, while other lines give one; give it on every line or on none")
    split_of = split_groups([j.group for j, _ in rows])
    return [replace(j, split=split_of[j.group]) for j, _ in rows]


def rank_metrics(ranked: Sequence[int], gains: Mapping[int, int], k: int = 10) -> dict[str, float]:
    """nDCG@k (gains 2^g - 1), MRR (first item of grade >= 1; 0 when none is listed) and
    Recall@k (share of the grade >= 1 items in the top k)."""
    ranked = list(ranked)
    first = next((i for i, r in enumerate(ranked) if gains.get(r, 0) > 0), None)
    return {"ndcg@10": ndcg_at(ranked, gains, k), "mrr": 0.0 if first is None else 1.0 / (first + 1),
            "recall@10": sum(1 for r in ranked[:k] if gains.get(r, 0) > 0) / max(1, len(gains))}


def _summary(per_query: list[dict[str, float]]) -> dict[str, float]:
    if not per_query:
        return {"ndcg@10": None, "mrr": None, "recall@10": None, "n": 0}
    return {m: float(np.mean([q[m] for q in per_query])) for m in per_query[0]} | {"n": len(per_query)}


def _bootstrap(a: np.ndarray, b: np.ndarray, n: int = 10_000, seed: int = 0) -> dict[str, float]:
    """Paired bootstrap over queries of mean(a - b): the difference, its 95% interval and the
    one-sided p (share of resamples where a does not beat b)."""
    d = np.asarray(a) - np.asarray(b)
    idx = np.random.default_rng(seed).integers(0, len(d), size=(n, len(d)))
    means = d[idx].mean(axis=1)
    return {"diff": float(d.mean()), "ci95": [float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))],
            "p": float((means <= 0).mean()), "n": int(len(d))}


@dataclass(frozen=True)
class QueryEvalOptions:
    dataset: str = "grocery"
    data_dir: str | None = None
    model_dir: str | None = None
    folds: int = 5
    query_set: str | None = None  # a JSONL query set (``load_query_set``); default: the dataset's committed set
    query_runtime: str = "onnx-int8"  # the query encoders' runtime (``Searcher.load``)
    knowledge: bool | None = None  # WordNet text on the items (``load_catalogue_items``; None: the dataset's default)


def _row_keys(searcher: Searcher, dataset: str) -> dict[str, int]:
    if dataset == "grocery":
        return {t.replace(" ", "-"): i for i, t in enumerate(searcher.items.titles)}
    return {str(i): row for row, i in enumerate(searcher.items.ids)}


def _rank(hits: Mapping[str, SignalHits], weights: Mapping[str, float] | None, fusion: str = "weighted") -> list[int]:
    return fuse(hits, fusion=fusion, weights=weights).rows.tolist()


def _learn(train: list[tuple[dict, dict]], signals: Sequence[str]) -> dict[str, float]:
    return learn_weights(train, signals)[0] if train else {s: 1.0 for s in signals}


def evaluate_queries(opts: QueryEvalOptions, searcher: Searcher | None = None, progress: bool = True) -> dict:
    """The report dict (see ``REPORT_NAMES``); ``learned_weights`` are the dev-fitted weights."""
    start = time.perf_counter()
    if opts.query_set is None and opts.dataset not in COMMITTED_SETS:
        raise DatasetNotFoundError(f"dataset={opts.dataset!r} has no committed query set (those are {COMMITTED_SETS}); "
                                   "pass query_set=PATH, a JSONL of your queries (README 'Your data')")
    searcher = searcher or Searcher.load(opts.dataset, model_dir=opts.model_dir, data_dir=opts.data_dir,
                                         query_runtime=opts.query_runtime, knowledge=opts.knowledge)
    queries = load_query_set(opts.dataset, _row_keys(searcher, opts.dataset), opts.query_set)
    signals = list(searcher.signals)
    hits = searcher.signal_hits([q.query for q in queries])
    # the reference: frozen MiniLM over the raw item description, no training, no fusion (queries
    # through the item encoder: the reference does not change with the searcher's query runtime)
    minilm = searcher.text_encoders["minilm"][0]
    ref = DenseSignal(minilm.encode(searcher.items.aligned_texts or searcher.items.texts))
    qv = minilm.encode([q.query for q in queries])
    for h, v in zip(hits, qv):
        rows, scores = ref.search(v, searcher.config.candidates)
        h["reference"] = SignalHits(rows, scores, lambda r, v=v: ref.score(v, r))
    fusable = [{s: h[s] for s in signals} for h in hits]

    def pairs(idx):
        return [(fusable[i], queries[i].gains) for i in idx]

    dev = [i for i, q in enumerate(queries) if q.split == "dev"]
    learned, cv = {}, {}
    for lang in ("en", "zh"):
        dev_l = [i for i in dev if queries[i].lang == lang]
        learned[lang] = _learn(pairs(dev_l), signals)
        # k-fold over dev groups: does learning weights beat RRF on dev queries it did not see?
        groups = sorted({queries[i].group for i in dev_l})
        fold_of = {g: f % opts.folds for f, g in enumerate(np.random.default_rng(0).permutation(groups))}
        scores = {"weighted": [], "rrf": []}
        for f in range(opts.folds):
            test = [i for i in dev_l if fold_of[queries[i].group] == f]
            train = [i for i in dev_l if fold_of[queries[i].group] != f]
            if not test:
                continue
            w = _learn(pairs(train), signals)
            for i in test:
                scores["weighted"].append(ndcg_at(_rank(fusable[i], w), queries[i].gains))
                scores["rrf"].append(ndcg_at(_rank(fusable[i], None, "rrf"), queries[i].gains))
        cv[lang] = {k: float(np.mean(v)) if v else None for k, v in scores.items()} | {"n": len(scores["rrf"])}

    def ranking(name: str, i: int) -> list[int]:
        if name == "hybrid":
            return _rank(fusable[i], learned[query_language(queries[i].query)])
        if name == "rrf":
            return _rank(fusable[i], None, "rrf")
        signal = _SIGNAL_OF[name]
        return hits[i][signal].rows.tolist() if signal in hits[i] else []

    names = [n for n in REPORT_NAMES if n in ("hybrid", "rrf") or _SIGNAL_OF[n] in hits[0]]
    ranked = {n: [ranking(n, i) for i in range(len(queries))] for n in names}  # once: metrics and overlap read them
    per = {n: [rank_metrics(ranked[n][i], q.gains) for i, q in enumerate(queries)] for n in names}
    report: dict = {"dataset": opts.dataset, "signals": signals, "systems": {n: REPORT_NAMES[n] for n in names}}
    for n in names:
        report[n] = {split: {lang: _summary([per[n][i] for i, q in enumerate(queries) if q.split == split and q.lang == lang])
                             for lang in ("en", "zh")} for split in ("heldout", "dev")}
        report[n]["heldout"]["by_type"] = {
            t: _summary([per[n][i] for i, q in enumerate(queries) if q.split == "heldout" and q.type == t])
            for t in sorted({q.type for q in queries})}
    held = [i for i, q in enumerate(queries) if q.split == "heldout"]
    subsets = {"en": [i for i in held if queries[i].lang == "en"], "zh": [i for i in held if queries[i].lang == "zh"],
               "all": held}
    report["bootstrap_hybrid_vs"] = {
        subset: {n: _bootstrap(np.array([per["hybrid"][i]["ndcg@10"] for i in idx]), np.array([per[n][i]["ndcg@10"] for i in idx]))
                 for n in names if n != "hybrid"} for subset, idx in subsets.items() if idx}
    report["crosslingual_overlap@10"] = _crosslingual(queries, ranked)
    report["learned_weights"] = learned
    report["default_weights"] = {"en": dict(searcher.config.weights_en), "zh": dict(searcher.config.weights_zh)}
    report["cv_dev_ndcg@10"] = cv
    report["queries"] = {"dev": len(dev), "heldout": len(held)}
    knowledge = searcher.items.knowledge
    report["item_knowledge"] = {"items": len(searcher.items), "with_text": sum(map(bool, knowledge)) if knowledge else 0}
    report["query_set"] = opts.query_set or f"committed: crossrec_datasets/queries/{opts.dataset}.jsonl"
    report["per_query_heldout"] = {queries[i].id: {n: round(per[n][i]["ndcg@10"], 4) for n in ("hybrid", "reference_frozen_text", "dense_text")
                                                   if n in per} for i in held}
    report["seconds"] = time.perf_counter() - start
    return report


def _crosslingual(queries: Sequence[Judged], ranked: Mapping[str, Sequence[Sequence[int]]]) -> dict:
    """Does a Chinese query reach the items its English counterpart does? Per split and system
    (``ranked``: system -> each query's ranking), the mean share of top-10 items that an English
    and a Chinese query of one group have in common (every en x zh pair of a group), and the
    number of pairs."""
    out = {}
    for split in ("heldout", "dev"):
        groups: dict[str, dict[str, list[int]]] = {}
        for i, q in enumerate(queries):
            if q.split == split:
                groups.setdefault(q.group, {}).setdefault(q.lang, []).append(i)
        pairs = [(a, b) for g in groups.values() for a in g.get("en", []) for b in g.get("zh", [])]
        out[split] = {n: (float(np.mean([len(set(rows[a][:10]) & set(rows[b][:10])) / 10 for a, b in pairs]))
                          if pairs else None) for n, rows in ranked.items()} | {"pairs": len(pairs)}
    return out


def _row(name: str, block: dict) -> str:
    cells = []
    for split in ("heldout", "dev"):
        for lang in ("en", "zh"):
            m = block[split][lang]
            cells.append("-" if m["ndcg@10"] is None else f"{m['ndcg@10']:.3f} / {m['mrr']:.3f} / {m['recall@10']:.3f}")
    return f"| {name} | " + " | ".join(cells) + " |"


def markdown(report: dict) -> str:
    lines = [f"query-set search, {report['dataset']}: nDCG@10 / MRR / Recall@10",
             "| system | heldout en | heldout zh | dev en | dev zh |", "|---|---|---|---|---|"]
    lines += [_row(n, report[n]) for n in REPORT_NAMES if n in report]
    overlap = report.get("crosslingual_overlap@10", {})
    if all(overlap.get(split, {}).get("pairs") for split in ("heldout", "dev")):
        lines.append("en/zh queries of one group, top-10 overlap (hybrid): heldout "
                     f"{overlap['heldout']['hybrid']:.2f} ({overlap['heldout']['pairs']} pairs), "
                     f"dev {overlap['dev']['hybrid']:.2f} ({overlap['dev']['pairs']} pairs)")
    return "\n".join(lines)


def write_report(report: dict, path: str | Path) -> Path:
    atomic_write_text(path, json.dumps(report, indent=2, ensure_ascii=False))
    return Path(path)
