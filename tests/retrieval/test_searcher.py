"""Searcher over real grocery products (a slice) with a tiny aligned model, and over a shop folder."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from crossrec_core.errors import ImageDecodeError, InvalidQueryError
from retrieval.align.embedder import ItemEmbedder
from retrieval.encoders import E5Encoder
from retrieval.searcher import MAX_QUERY_CHARS, CatalogueItems, Searcher, load_catalogue_items, query_language

NAMES = ["Banana", "Kiwi", "Lemon", "Lime", "Golden-Delicious", "Granny-Smith", "Arla-Lactose-Medium-Fat-Milk",
         "Arla-Standard-Milk", "Oatly-Oat-Milk", "Beef-Tomato", "Regular-Tomato", "Carrots", "Aubergine", "Watermelon"]


@pytest.fixture(scope="module")
def items():
    full = load_catalogue_items("grocery")
    keep = [full.titles.index(n.replace("-", " ")) for n in NAMES]
    pick = lambda seq: [seq[i] for i in keep]
    return CatalogueItems(pick(full.ids), pick(full.titles), pick(full.texts), pick(full.images),
                          {k: v[keep] for k, v in full.facets.items()}, pick(full.aligned_texts), pick(full.short_texts))


@pytest.fixture(scope="module")
def searcher(items, tiny_crossclip, text_encoder, image_encoder):
    embedder = ItemEmbedder(tiny_crossclip.model, text_encoder, image_encoder)
    encoders = {"minilm": (text_encoder, text_encoder), "e5": (E5Encoder(), E5Encoder(as_query=True))}
    return Searcher(items, embedder=embedder, text_encoders=encoders, use_cache=False)


def test_every_signal_loaded_and_hits_explain_themselves(searcher):
    assert set(searcher.signals) == {"bm25", "trigram", "minilm", "minilm_title", "e5", "e5_title", "image", "fused"}
    result = searcher.search("lactose free milk", k=3)
    assert result.hits[0].title == "Arla Lactose Medium Fat Milk"
    assert result.language == "en" and result.note is None and result.matching == len(searcher)
    top = result.hits[0]
    assert set(top.signals) == set(searcher.signals)
    assert top.signals["bm25"].rank == 1 and top.signals["bm25"].raw > 0
    assert top.image and top.image.endswith(".jpg")
    assert result.to_dict()["hits"][0]["signals"]["e5"]["raw"] == pytest.approx(top.signals["e5"].raw)


def test_modes_and_misspelling(searcher):
    assert searcher.search("bananna", k=1, mode="trigram").hits[0].title == "Banana"
    assert searcher.search("bananna", k=1, mode="rrf").hits[0].title == "Banana"
    single = searcher.search("carrots", k=2, mode="bm25")
    assert set(single.hits[0].signals) == {"bm25"}
    with pytest.raises(InvalidQueryError, match="mode"):
        searcher.search("carrots", mode="best")


def test_chinese_and_mixed_queries_reach_the_english_items(searcher):
    assert query_language("香蕉") == "zh" and query_language("organic 牛奶") == "zh" and query_language("milk") == "en"
    zh = searcher.search("西红柿", k=2)
    assert {h.title for h in zh.hits} == {"Beef Tomato", "Regular Tomato"}
    assert "tomato" in zh.english
    assert searcher.search("无乳糖牛奶", k=1).hits[0].title == "Arla Lactose Medium Fat Milk"
    assert searcher.search("香蕉", k=1).hits[0].title == "Banana"


def test_filters_apply_inside_the_search(searcher):
    # "milk" ranks the milks first; restricted to vegetables the top-k still has k vegetables
    result = searcher.search("milk", k=4, filters={"category": "Vegetables"})
    assert len(result.hits) == 4 and result.matching == 4
    assert {h.title for h in result.hits} == {"Beef Tomato", "Regular Tomato", "Carrots", "Aubergine"}
    several = searcher.search("fruit", k=20, filters={"subcategory": ["Apple", "Lime"]})
    assert {h.title for h in several.hits} == {"Golden Delicious", "Granny Smith", "Lime"}
    with pytest.raises(InvalidQueryError, match="unknown.*fields: \\['category', 'subcategory'\\]"):
        searcher.search("milk", filters={"colour": "red"})
    with pytest.raises(InvalidQueryError, match="takes a value or a list"):
        searcher.search("milk", filters={"category": 3})
    none = searcher.search("milk", filters={"category": "Toys"})
    assert none.hits == [] and "allow no item" in none.note


@pytest.mark.parametrize("bad, match", [
    ("", "empty"), ("   \n", "empty"), ("x" * 10_000, f"at most {MAX_QUERY_CHARS}"), ("🍌🥛", "no letter"),
    ("!!!", "no letter"), (None, "must be a str"),
])
def test_bad_queries_are_refused_with_a_reason(searcher, bad, match):
    with pytest.raises(InvalidQueryError, match=match):
        searcher.search(bad)


def test_bad_k_and_batch_argument(searcher):
    with pytest.raises(InvalidQueryError, match="k=0"):
        searcher.search("milk", k=0)
    with pytest.raises(InvalidQueryError, match="list of str"):
        searcher.search_batch("milk")


def test_batch_equals_single_and_other_scripts_answer(searcher):
    queries = ["carrots", "香蕉", "lemon for drinks", "Лимон"]  # Russian: not refused, e5 leads
    batch = searcher.search_batch(queries, k=3)
    for q, r in zip(queries, batch):
        single = searcher.search(q, k=3)
        assert [h.item_id for h in r.hits] == [h.item_id for h in single.hits]
        assert np.allclose([h.score for h in r.hits], [h.score for h in single.hits], atol=1e-5)
    assert batch[3].language == "zh" and len(batch[3].hits) == 3


def test_search_image(searcher, items, grocery):
    photo = next(p.path for p in grocery.split("test") if p.class_id == items.ids[0])
    for space in ("fused", "image", "text"):
        result = searcher.search_image(photo, k=3, space=space)
        assert len(result.hits) == 3 and set(result.hits[0].signals) == {space}
    assert searcher.search_image(photo, k=2, filters={"category": "Vegetables"}).hits[0].title in {
        "Beef Tomato", "Regular Tomato", "Carrots", "Aubergine"}
    with pytest.raises(ImageDecodeError):
        searcher.search_image(__file__)
    with pytest.raises(InvalidQueryError, match="space"):
        searcher.search_image(photo, space="audio")


def test_without_aligned_model_the_note_says_so(items, text_encoder):
    plain = Searcher(items, text_encoders={"minilm": (text_encoder, text_encoder)}, use_cache=False)
    result = plain.search("banana", k=2)
    assert result.hits[0].title == "Banana" and "no aligned model" in result.note
    with pytest.raises(InvalidQueryError, match="aligned model"):
        plain.search_image(items.images[0])
    with pytest.raises(InvalidQueryError, match="not loaded"):
        plain.search("banana", mode="fused")


def test_shop_folder_price_and_stock_filters(shop_folder, text_encoder):
    items = load_catalogue_items(str(shop_folder))
    assert {"category", "price", "in_stock", "brand", "colour"} <= set(items.facets)
    s = Searcher(items, text_encoders={"minilm": (text_encoder, text_encoder)}, use_cache=False)
    cheap = s.search(items.titles[0], k=40, filters={"price": {"max": float(np.nanmedian(items.facets["price"]))},
                                                      "in_stock": True})
    rows = [items.ids.index(h.item_id) for h in cheap.hits]
    assert rows and cheap.matching == len(rows)
    assert (items.facets["price"][rows] <= np.nanmedian(items.facets["price"])).all()
    assert items.facets["in_stock"][rows].all()
    with pytest.raises(InvalidQueryError, match="min .* is above max"):
        s.search("lamp", filters={"price": [10, 1]})
    with pytest.raises(InvalidQueryError, match="true or false"):
        s.search("lamp", filters={"in_stock": "yes"})
    assert dataclasses.is_dataclass(cheap)


class _Recording:
    """A text encoder that records what it is asked to encode (MiniLM's vectors underneath)."""

    modality = "text"

    def __init__(self, inner, multilingual: bool):
        self.inner, self.multilingual, self.seen = inner, multilingual, []
        self.dim, self.fingerprint = inner.dim, f"recording:{multilingual}"

    def encode(self, texts, batch_size=32, progress=False):
        self.seen += list(texts)
        return self.inner.encode(texts)


@pytest.mark.parametrize("multilingual, expected", [(True, "香蕉"), (False, "banana")])
def test_the_aligned_tower_reads_chinese_as_written_only_when_multilingual(items, tiny_crossclip, text_encoder,
                                                                           image_encoder, multilingual, expected):
    tower_text = _Recording(text_encoder, multilingual)
    embedder = ItemEmbedder(tiny_crossclip.model, tower_text, image_encoder)
    searcher = Searcher(items, embedder=embedder, text_encoders={"minilm": (text_encoder, text_encoder)}, use_cache=False)
    tower_text.seen.clear()  # the catalogue's own texts were encoded on the way in
    searcher.search("香蕉", k=3, mode="image")
    assert tower_text.seen == [expected]  # the glossed form otherwise
