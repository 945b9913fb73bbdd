"""Lexical signals, the Chinese glossary, filtered dense search and fusion (no model weights)."""

from __future__ import annotations

import numpy as np
import pytest

from retrieval.hybrid import DenseSignal, SignalHits, fuse, learn_weights, ndcg_at
from retrieval.lexical import LexicalIndex, char_trigrams, gloss, has_cjk, tokenize


def test_tokenize_stems_english_cuts_chinese_and_drops_symbols():
    tokens = tokenize("Organic 有机牛奶, Tomatoes! 🍌")
    assert "tomato" in tokens and "organic" in tokens
    assert "牛奶" in tokens and "有机" in tokens
    assert not any("🍌" in t for t in tokens)
    assert tokenize("🍌🍌 !!") == []


def test_bm25_and_trigrams_score_items():
    texts = ["Banana. An ecologically grown banana.", "Regular tomatoes from Sweden", "Oat milk drink"]
    words = LexicalIndex(texts)
    s = words.scores("tomato")
    assert s.argmax() == 1 and s[0] == 0
    assert not words.scores("xylophone").any()  # no known word: all zero, no error
    assert not words.scores("🍌").any()
    grams = LexicalIndex(texts, char_trigrams)
    assert grams.scores("bananna").argmax() == 0  # a misspelling still lands


def test_gloss_puts_english_in_place_of_chinese_words():
    assert has_cjk("organic 牛奶") and not has_cjk("organic milk")
    assert "tomato" in gloss("西红柿")
    mixed = gloss("organic 牛奶")
    assert mixed.startswith("organic") and "milk" in mixed
    assert "banana" in gloss("香蕉")


def test_dense_signal_filter_inside_search_exact_and_ivf():
    rng = np.random.default_rng(0)
    v = rng.normal(size=(25_000, 16)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    sig = DenseSignal(v, nprobe=64)
    assert sig._ivf is not None  # above the exact-scan size: the IVF path
    q = v[123]
    allowed = np.zeros(len(v), dtype=bool)
    allowed[::10] = True  # 2,500 allowed: exact scan on the allowed rows
    rows, scores = sig.search(q, 10, allowed)
    assert allowed[rows].all() and len(rows) == 10
    truth = np.flatnonzero(allowed)[np.argsort(-(v[allowed] @ q))[:10]]
    assert set(rows) == set(truth)
    allowed = np.ones(len(v), dtype=bool)
    allowed[123] = False  # 24,999 allowed: IVF with an IDSelectorBitmap
    rows, scores = sig.search(q, 10, allowed)
    assert 123 not in rows and len(rows) == 10 and allowed[rows].all()
    half = np.zeros(len(v), dtype=bool)
    half[::2] = True  # 12,500 allowed: IVF with the filter inside, never a filtered-out row
    rows, _ = sig.search(v[124], 10, half)
    assert len(rows) == 10 and half[rows].all() and rows[0] == 124
    assert np.all(np.diff(scores) <= 1e-6)
    rows, _ = sig.search(q, 10, None)
    assert rows[0] == 123


def _hits(scores: dict[str, np.ndarray], k: int = 5) -> dict[str, SignalHits]:
    out = {}
    for name, s in scores.items():
        rows = np.argsort(-s)[:k]
        out[name] = SignalHits(rows, s[rows], lambda r, s=s: s[r])
    return out


def test_fuse_weighted_rrf_and_breakdown():
    a = np.array([0.9, 0.1, 0.5, 0.2, 0.3, 0.0])
    b = np.array([0.0, 5.0, 4.0, 0.1, 0.2, 3.0])
    hits = _hits({"a": a, "b": b}, k=3)
    only_a = fuse(hits, weights={"a": 1.0})
    assert only_a.rows[0] == 0
    only_b = fuse(hits, weights={"b": 1.0})
    assert only_b.rows[0] == 1
    both = fuse(hits, weights={"a": 1.0, "b": 1.0})
    assert both.rows[0] == 2  # second in both lists beats first in one
    assert set(both.raw) == {"a", "b"} and both.rank["a"][list(both.rows).index(1)] == -1  # 1 is not in a's top 3
    assert np.isclose(both.raw["b"][list(both.rows).index(1)], 5.0)
    rrf = fuse(hits, fusion="rrf")
    assert rrf.rows[0] == 2
    with pytest.raises(ValueError, match="fusion"):
        fuse(hits, fusion="max")


def test_learn_weights_finds_the_informative_signal():
    rng = np.random.default_rng(1)
    train = []
    for q in range(12):
        good = np.zeros(30)
        rel = rng.choice(30, 3, replace=False)
        good[rel] = 1.0
        good += rng.normal(scale=0.1, size=30)
        noise = rng.normal(size=30)
        train.append((_hits({"good": good, "noise": noise}, k=30), {int(r): 2 for r in rel}))
    weights, score = learn_weights(train, ["good", "noise"])
    assert weights["good"] > weights["noise"]
    assert score > 0.9


def test_ndcg_graded():
    gains = {1: 2, 2: 1}
    assert ndcg_at([1, 2, 3], gains) == pytest.approx(1.0)
    assert ndcg_at([2, 1], gains) < 1.0
    assert ndcg_at([5, 6], gains) == 0.0
