"""The committed query sets (shape, split made once, judgements on real items) and their evaluation."""

from __future__ import annotations

import json
from collections import Counter
from importlib import resources

import numpy as np
import pytest

from crossrec_datasets import load_grocery
from crossrec_core.errors import DataFormatError, DatasetNotFoundError
from retrieval.query_eval import (Judged, QueryEvalOptions, _bootstrap, _crosslingual, evaluate_queries, load_query_set,
                                  markdown, rank_metrics, split_groups)
from retrieval.searcher import CatalogueItems, Searcher, load_catalogue_items


def _rows(dataset: str) -> list[dict]:
    text = resources.files("crossrec_datasets").joinpath("queries", f"{dataset}.jsonl").read_text("utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.mark.parametrize("dataset, at_least", [("grocery", 60), ("ml100k", 40)])
def test_query_sets_are_big_enough_and_split_by_group(dataset, at_least):
    rows = _rows(dataset)
    assert len(rows) >= at_least
    assert len({r["id"] for r in rows}) == len(rows)
    assert {r["lang"] for r in rows} == {"en", "zh"}
    split_of = {}
    for r in rows:  # an English query and its Chinese twin never straddle the split
        assert split_of.setdefault(r["group"], r["split"]) == r["split"]
        assert r["relevance"] and max(r["relevance"].values()) == 2 and set(r["relevance"].values()) <= {1, 2}
    # the random split covers the first batch; later batches were written for dev only
    later = {r["group"] for r in rows if r.get("batch", 1) > 1}
    assert all(split_of[g] == "dev" for g in later)
    first = {g: s for g, s in split_of.items() if g not in later}
    assert first == split_groups(list(first))  # the one seeded split, as a user's unsplit set gets it


def test_grocery_judgements_name_real_products():
    names = {p.name: p.class_id for p in load_grocery().products}
    queries = load_query_set("grocery", names)
    assert len(queries) == len(_rows("grocery"))
    banana = next(q for q in queries if q.id == "bananna/en")
    assert banana.gains == {names["Banana"]: 2}
    with pytest.raises(ValueError, match="not in the catalogue"):
        load_query_set("grocery", {"Banana": 6})


def test_rank_metrics_and_bootstrap():
    m = rank_metrics([5, 1, 2], {1: 2, 2: 1, 9: 1})
    assert m["mrr"] == pytest.approx(0.5) and m["recall@10"] == pytest.approx(2 / 3) and 0 < m["ndcg@10"] < 1
    assert rank_metrics([], {1: 2}) == {"ndcg@10": 0.0, "mrr": 0.0, "recall@10": 0.0}
    better = _bootstrap(np.array([0.9, 0.8, 0.95, 0.7]), np.array([0.5, 0.6, 0.4, 0.3]), n=500)
    assert better["diff"] > 0 and better["p"] < 0.05 and better["ci95"][0] > 0


def test_evaluate_queries_reports_every_system_split_and_language(tmp_path, text_encoder):
    products = load_grocery().products[:12]
    items = CatalogueItems([p.class_id for p in products], [p.name.replace("-", " ") for p in products],
                           [p.description for p in products], [str(p.iconic_image) for p in products],
                           aligned_texts=[p.description for p in products])
    searcher = Searcher(items, text_encoders={"minilm": (text_encoder, text_encoder)}, use_cache=False)
    lines = []
    for i, (q, rel, lang) in enumerate([("green apple", {"Granny-Smith": 2}, "en"), ("青苹果", {"Granny-Smith": 2}, "zh"),
                                        ("avacado", {"Avocado": 2}, "en"), ("牛油果", {"Avocado": 2}, "zh"),
                                        ("banana snack", {"Banana": 2}, "en"), ("香蕉", {"Banana": 2}, "zh"),
                                        ("sour lemon", {"Lemon": 2, "Lime": 1}, "en"), ("柠檬", {"Lemon": 2}, "zh")]):
        lines.append(json.dumps({"id": f"q{i}/{lang}", "group": f"g{i // 2}", "lang": lang, "type": "t",
                                 "query": q, "relevance": rel, "split": "dev" if i < 4 else "heldout"}))
    path = tmp_path / "q.jsonl"
    path.write_text("\n".join(lines), encoding="utf-8")
    report = evaluate_queries(QueryEvalOptions("grocery", query_set=str(path), folds=2), searcher)
    for name in ("hybrid", "rrf", "bm25", "trigram", "dense_text_minilm", "reference_frozen_text"):
        for split in ("heldout", "dev"):
            for lang in ("en", "zh"):
                assert set(report[name][split][lang]) == {"ndcg@10", "mrr", "recall@10", "n"}
    assert report["hybrid"]["heldout"]["en"]["n"] == 2 and report["queries"] == {"dev": 4, "heldout": 4}
    assert set(report["learned_weights"]) == {"en", "zh"}
    assert "bm25" in report["bootstrap_hybrid_vs"]["all"]
    assert report["hybrid"]["heldout"]["zh"]["ndcg@10"] > 0.5  # glossed Chinese reaches the English items
    overlap = report["crosslingual_overlap@10"]
    assert overlap["dev"]["pairs"] == 2 and overlap["heldout"]["pairs"] == 2
    assert all(0.0 <= overlap[split][n] <= 1.0 for split in ("dev", "heldout") for n in ("hybrid", "bm25"))
    assert "top-10 overlap (hybrid)" in markdown(report)


def test_crosslingual_overlap_pairs_each_english_query_with_each_chinese_one_of_its_group():
    qs = [Judged("a", "g1", "en", "t", "apple", "dev", {0: 2}), Judged("b", "g1", "zh", "t", "苹果", "dev", {0: 2}),
          Judged("c", "g1", "zh", "t", "苹果2", "dev", {0: 2}), Judged("d", "g2", "en", "t", "pear", "dev", {1: 2}),
          Judged("e", "g3", "zh", "t", "梨", "heldout", {1: 2})]
    tops = {0: list(range(10)), 1: list(range(5, 15)), 2: list(range(10, 20))}
    out = _crosslingual(qs, {"hybrid": [tops.get(i, []) for i in range(len(qs))]})
    # a-b share 5 of 10, a-c none; g2 has no Chinese query, g3 (held-out) no English one
    assert out["dev"] == {"hybrid": 0.25, "pairs": 2} and out["heldout"] == {"hybrid": None, "pairs": 0}


def _shop_queries(shop_folder) -> list[dict]:
    """Colour + product-type queries judged from the shop's own catalogue columns: the items of
    that colour and type 2, other items of the type 1."""
    import polars as pl

    cat = pl.read_parquet(shop_folder / "catalogue.parquet").head(16)
    rows = []
    for r in cat.iter_rows(named=True):
        same_type = cat.filter(pl.col("subcategory") == r["subcategory"])
        rel = {s["item_id"]: 2 if s["colour"] == r["colour"] else 1 for s in same_type.iter_rows(named=True)}
        rows.append({"query": f"{r['colour']} {r['subcategory'].lower()}", "relevance": rel})
    return rows


def test_eval_queries_on_a_shop_folder_with_its_own_unsplit_query_set(shop_folder, text_encoder, tmp_path):
    items = load_catalogue_items(str(shop_folder))
    searcher = Searcher(items, text_encoders={"minilm": (text_encoder, text_encoder)}, use_cache=False)
    path = tmp_path / "shop_queries.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in _shop_queries(shop_folder)), encoding="utf-8")
    queries = load_query_set(str(shop_folder), {str(i): k for k, i in enumerate(items.ids)}, path)
    # no split in the file: groups (here one per query) split once, seeded, into halves
    assert Counter(q.split for q in queries) == {"dev": 8, "heldout": 8}
    assert {q.id: q.split for q in queries} == {q.id: split_groups([q.group for q in queries])[q.group] for q in queries}
    assert {q.lang for q in queries} == {"en"} and queries[0].id == "q1"
    report = evaluate_queries(QueryEvalOptions(str(shop_folder), query_set=str(path), folds=2), searcher)
    assert report["queries"] == {"dev": 8, "heldout": 8} and report["query_set"] == str(path)
    assert report["hybrid"]["heldout"]["zh"]["n"] == 0
    # the query's words are in the item texts: the hybrid finds them (a random order of the 40
    # items scores about 0.1 on a one-item query)
    assert report["hybrid"]["heldout"]["en"]["ndcg@10"] > 0.6


def test_eval_queries_without_a_query_set_for_a_folder_says_what_to_pass(shop_folder):
    with pytest.raises(DatasetNotFoundError, match="no committed query set.*query_set"):
        evaluate_queries(QueryEvalOptions(str(shop_folder)))


@pytest.mark.parametrize("lines, match", [
    (['{"query": "lamp"}'], r"line 1: relevance=None must be an object"),
    (['{"query": "", "relevance": {"A": 2}}'], r"line 1: query='' must be a non-empty string"),
    (['{"query": "lamp", "relevance": {"A": 3}}'], r"grades \{'A': 3\} must be 0, 1 or 2"),
    (['{"query": "lamp", "relevance": {"Z": 2}}'], r"items \['Z'\] are not in the catalogue"),
    (['{"query": "lamp", "relevance": {"A": 0}}'], r"no item has a grade above 0"),
    (['{"query": "lamp", "relevance": {"A": 2}, "lang": "fr"}'], r"lang='fr' is not one of \('en', 'zh'\)"),
    (['{"query": "lamp", "relevance": {"A": 2}, "split": "dev"}', '{"query": "mug", "relevance": {"A": 2}}'],
     r"line 2: no split, while other lines give one"),
    (['{"query": "lamp", "relevance": {"A": 2}, "id": "x"}', '{"query": "mug", "relevance": {"A": 2}, "id": "x"}'],
     r"line 2: id='x' is used twice"),
    (['not json'], r"line 1: not a JSON object"),
    ([''], r"no queries"),
])
def test_bad_query_sets_name_the_line_and_what_is_allowed(tmp_path, lines, match):
    path = tmp_path / "q.jsonl"
    path.write_text("\n".join(lines), encoding="utf-8")
    with pytest.raises(DataFormatError, match=match):
        load_query_set("shop", {"A": 0, "B": 1}, path)
