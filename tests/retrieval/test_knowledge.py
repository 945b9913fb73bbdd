"""WordNet knowledge on item texts: which entry an item gets, and where the catalogue uses it."""

from __future__ import annotations

import pytest

from crossrec_core.errors import ResourceNotFoundError
from retrieval.knowledge import FOOD_LEXNAMES, WordNet, item_knowledge
from retrieval.searcher import load_catalogue_items


@pytest.mark.parametrize("title, anchor, has, lacks", [
    ("Banana", "Banana", "yellow fruit", "genus Musa"),  # the food sense, not the plant
    ("Red-Beet", "Red-Beet", "root vegetable", None),  # the class falls back to its head past an adjective
    ("Green-Bell-Pepper", "Pepper", "bell pepper", "seasoning"),  # the title's phrase under the class
    ("Golden-Delicious", "Apple", "yellow skin", None),
    ("Pink-Lady", "Apple", "apple:", "cocktail"),  # a variety WordNet files elsewhere: the class only
    ("Beef-Tomato", "Tomato", "tomato:", "bovine"),  # a modifier noun is not the item
    ("Sweet-Potato", "Potato", "sweet potato:", None),
    ("Carrots", "Carrots", "root vegetable", None),  # plurals
])
def test_grocery_items_get_their_own_entry(title, anchor, has, lacks):
    text = item_knowledge(title, anchor, lexnames=FOOD_LEXNAMES)
    assert has in text
    assert lacks is None or lacks not in text


def test_unknown_classes_and_modified_heads_get_nothing():
    # soy milk is not a milk: the head is not taken past a noun modifier
    assert item_knowledge("Alpro-Fresh-Soy-Milk", "Soy-Milk") == ""
    assert item_knowledge("Oatly-Natural-Oatghurt", "Oatghurt") == ""
    assert item_knowledge("", None) == "" and item_knowledge("Arla", "") == ""


def test_any_noun_sense_for_other_catalogues():
    assert "garment" in item_knowledge("Red Summer Dress", "dress", lexnames=None)
    assert item_knowledge("Red Summer Dress", "dress") == ""  # not a food: nothing under the grocery senses


def test_missing_database_names_the_folder(tmp_path):
    with pytest.raises(ResourceNotFoundError, match=str(tmp_path)):
        WordNet(tmp_path)


def test_grocery_catalogue_texts_carry_the_knowledge():
    plain, rich = load_catalogue_items("grocery", knowledge=False), load_catalogue_items("grocery")
    row = plain.titles.index("Red Beet")
    assert "root vegetable" in rich.texts[row] and "root vegetable" in rich.short_texts[row]
    assert rich.texts[row].startswith(plain.texts[row]) and "root vegetable" not in plain.texts[row]
    # the aligned model's own texts stay as it was trained on them
    assert rich.aligned_texts == plain.aligned_texts
    soy = plain.titles.index("Alpro Fresh Soy Milk")
    assert rich.texts[soy] == plain.texts[soy]
    with pytest.raises(ValueError, match="knowledge=True"):
        load_catalogue_items("ml100k", knowledge=True)


def test_a_folder_catalogue_takes_knowledge_when_asked(shop_folder):
    plain = load_catalogue_items(str(shop_folder))
    rich = load_catalogue_items(str(shop_folder), knowledge=True)
    added = [r for r, (a, b) in enumerate(zip(plain.texts, rich.texts)) if a != b]
    assert added, "no shop item got a WordNet entry"
    for r in added:  # appended, never replacing the shop's own text
        assert rich.texts[r].startswith(plain.texts[r]) and rich.short_texts[r].startswith(plain.short_texts[r])


def test_the_catalogue_says_which_items_got_knowledge():
    rich = load_catalogue_items("grocery")
    assert len(rich.knowledge) == len(rich) and rich.knowledge[rich.titles.index("Alpro Fresh Soy Milk")] == ""
    assert load_catalogue_items("grocery", knowledge=False).knowledge is None


def test_a_hit_shows_the_knowledge_it_was_found_by(text_encoder):
    from retrieval.searcher import Searcher

    items = load_catalogue_items("grocery")
    searcher = Searcher(items, text_encoders={"minilm": (text_encoder, text_encoder)}, use_cache=False)
    hits = {h.title: h for h in searcher.search("root vegetables", k=10).hits}
    assert "root vegetable" in hits["Red Beet"].knowledge
    plain = Searcher(load_catalogue_items("grocery", knowledge=False),
                     text_encoders={"minilm": (text_encoder, text_encoder)}, use_cache=False)
    assert all(h.knowledge is None for h in plain.search("root vegetables", k=10).hits)
