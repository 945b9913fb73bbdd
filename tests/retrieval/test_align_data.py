"""Training data for the aligned model: several texts per item, content-keyed image caches, one-call training."""

from __future__ import annotations

import dataclasses
import os
import shutil

import numpy as np
import pytest
import torch

from retrieval.align.features import TextFeatures, extract_image_features, image_digest
from retrieval.align.model import AlignTrainingConfig
from retrieval.align.train import PairData, _ItemTexts, fit_aligned, train_aligned



def test_image_cache_is_keyed_by_content_not_path(grocery, image_encoder, tmp_path):
    a, b = grocery.products[0].iconic_image, grocery.products[1].iconic_image
    photo = tmp_path / "photos" / "item.jpg"
    photo.parent.mkdir()
    shutil.copy(a, photo)
    cache = tmp_path / "cache"
    first = extract_image_features([photo], encoder=image_encoder, cache_dir=cache, progress=False)
    shutil.copy(b, photo)  # replaced at the same path: the cache must not serve the old photo
    replaced = extract_image_features([photo], encoder=image_encoder, cache_dir=cache, progress=False)
    direct = extract_image_features([b], encoder=image_encoder, progress=False)
    assert not torch.equal(first.clean, replaced.clean)
    torch.testing.assert_close(replaced.clean, direct.clean)
    # the same bytes at another path reuse the cached features
    moved = tmp_path / "elsewhere.jpg"
    shutil.copy(b, moved)
    assert image_digest([moved]) == image_digest([photo]) != image_digest([a])
    n_files = len(list(cache.glob("*.pt")))
    extract_image_features([moved], encoder=image_encoder, cache_dir=cache, progress=False)
    assert len(list(cache.glob("*.pt"))) == n_files


def test_path_keyed_cache_is_adopted_only_when_older_than_the_photos(grocery, image_encoder, tmp_path):
    from retrieval.align.features import CACHE_STAGE, _key

    photo = tmp_path / "item.jpg"
    shutil.copy(grocery.products[0].iconic_image, photo)
    legacy = tmp_path / "cache" / f"{_key('img', CACHE_STAGE, 0, 0, image_encoder.fingerprint, [str(photo)])}.pt"
    legacy.parent.mkdir()
    marker = extract_image_features([grocery.products[2].iconic_image], encoder=image_encoder, progress=False)
    torch.save(marker, legacy)
    os.utime(photo, (legacy.stat().st_mtime + 10,) * 2)  # the photo changed after the old cache was written
    fresh = extract_image_features([photo], encoder=image_encoder, cache_dir=legacy.parent, progress=False)
    assert not torch.equal(fresh.clean, marker.clean) and legacy.is_file()
    for f in legacy.parent.glob("*.pt"):
        if f != legacy:
            f.unlink()
    os.utime(photo, (legacy.stat().st_mtime - 10,) * 2)  # older than the cache: still valid, adopted
    adopted = extract_image_features([photo], encoder=image_encoder, cache_dir=legacy.parent, progress=False)
    assert torch.equal(adopted.clean, marker.clean) and not legacy.is_file()


def test_text_features_concat_fills_missing_views():
    a = TextFeatures(torch.randn(2, 4), torch.randn(2, 3, 4))
    b = TextFeatures(torch.randn(5, 4), None)
    both = TextFeatures.concat(a, b)
    assert both.clean.shape == (7, 4) and both.views.shape == (7, 3, 4)
    assert torch.equal(both.views[:2], a.views) and torch.equal(both.views[4, 1], b.clean[2])
    assert TextFeatures.concat(b, b).views is None


def _with_queries(slice_data, text_encoder):
    """The slice's descriptions plus two short queries per product (item = product row)."""
    products = slice_data["products"]
    queries = [q for p in products for q in (p.coarse_name.lower(), f"{p.category.lower()} {p.coarse_name.lower()}")]
    extra = TextFeatures(torch.from_numpy(text_encoder.encode(queries)), None)
    texts = TextFeatures.concat(slice_data["texts"], extra)
    text_item = np.concatenate([np.arange(len(products)), np.repeat(np.arange(len(products)), 2)])
    return texts, text_item


def test_texts_of_one_item_are_positives_and_are_drawn(slice_data, text_encoder, image_encoder, tiny_configs):
    texts, text_item = _with_queries(slice_data, text_encoder)
    train = slice_data["train"]
    data = PairData(train.images, train.image_text, texts, text_item)
    assert data.image_items.tolist() == train.image_text.tolist()
    drawn = _ItemTexts(data).draw(np.repeat(np.arange(6), 50), np.random.default_rng(0))
    assert (text_item[drawn] == np.repeat(np.arange(6), 50)).all()
    assert len(set(drawn.tolist())) == len(text_item)  # every text of every item gets drawn
    with pytest.raises(ValueError, match="text_item has 3 entries"):
        PairData(train.images, train.image_text, texts, text_item[:3])
    training = dataclasses.replace(tiny_configs[1], item_text_prob=0.5)
    res = train_aligned(tiny_configs[0], data,
                        PairData(slice_data["test"].images, slice_data["test"].image_text, texts, text_item), training,
                        encoder=image_encoder, progress=False)
    assert res.history[-1]["loss"] < res.history[0]["loss"]
    # val Acc@1 counts any text of the photo's item as the right answer
    assert 0.0 <= res.history[-1]["val_i2t_acc@1"] <= 1.0
    with pytest.raises(ValueError, match="item_text_prob"):
        AlignTrainingConfig(item_text_prob=1.5)


def test_fit_aligned_trains_with_the_configs_own_views(slice_data, image_encoder, text_encoder, tmp_path, tiny_configs):
    photos = slice_data["train_photos"] + slice_data["test_photos"]
    products = slice_data["products"]
    names = [p.name for p in products]
    texts = [p.description for p in products] + [p.coarse_name.lower() for p in products]
    config, training = tiny_configs[0], dataclasses.replace(tiny_configs[1], epochs=2)
    res = fit_aligned([p.path for p in photos], texts, [names[[q.class_id for q in products].index(p.class_id)] for p in photos],
                      text_labels=names + names, config=config, training=training, encoder=image_encoder,
                      text_encoder=text_encoder, cache_dir=tmp_path, progress=False)
    assert len(res.history) == 2 and "val_i2t_acc@1" in res.history[0]
    # the cache holds what the config declares: 1 augmented view, the mirrored photo, 2 text variants
    feats = extract_image_features([p.path for p in photos], views=1, mirror=True, encoder=image_encoder,
                                   cache_dir=tmp_path, progress=False)
    assert feats.views.shape[1] == training.image_views and feats.mirrored is not None
    assert len(list(tmp_path.glob("*.pt"))) == 3  # views + mirror + texts: nothing extracted twice
    with pytest.raises(ValueError, match="name no item"):
        fit_aligned([photos[0].path], texts, ["Nope"], text_labels=names + names, config=config,
                    encoder=image_encoder, text_encoder=text_encoder, progress=False)
    with pytest.raises(ValueError, match="one label per image"):
        fit_aligned([photos[0].path], texts, [], config=config, encoder=image_encoder, text_encoder=text_encoder)


def test_generated_queries_are_short_distinct_and_from_the_items_own_words():
    from retrieval.align.queries import ItemFields, catalogue_queries, item_queries

    golden = ItemFields("Golden-Delicious", ("Apple", "Fruit"),
                        "Golden Delicious has a white juicy pulp and a greenish yellow shell. Sweet, for desserts.")
    queries = item_queries(golden)
    assert queries[:3] == ["golden delicious", "apple", "fruit"]
    assert {"yellow apple", "sweet fruit", "apple for desserts"} <= set(queries)
    assert len(queries) == len(set(queries)) <= 12 and all(len(q.split()) <= 4 for q in queries)
    pepper = ItemFields("Yellow-Bell-Pepper", ("Pepper", "Vegetables"), "Sweeter than the green one; good in salads.")
    assert not any(q.startswith("green") for q in item_queries(pepper))  # a colour named in the title wins
    texts, rows = catalogue_queries([golden, pepper], max_queries=4)
    assert len(texts) == len(rows) == 8 and rows == [0] * 4 + [1] * 4


class _ScriptedLM:
    """Stands in for the local language model: answers each prompt with scripted completions
    (the real model's own test is in tests/retrieval/test_encoders.py) and counts its calls."""

    fingerprint = "scripted"

    def __init__(self, answers):
        self.answers, self.calls = answers, 0

    def generate(self, prompts, num_return_sequences=1, **options):
        self.calls += 1
        return [[self.answers[next(k for k in self.answers if k in p.rsplit("Product:", 1)[1])][j % 2]
                 for j in range(num_return_sequences)] for p in prompts]


def test_lm_queries_keep_new_short_lines_and_are_cached(tmp_path):
    from retrieval.align.queries import ItemFields, lm_catalogue_queries

    items = [ItemFields("Red-Beet", ("Red-Beet", "Vegetables"), "A beet with a deep red colour."),
             ItemFields("Oatly-Oat-Milk", ("Oat-Milk", "Packages"), "An oat drink.")]
    lm = _ScriptedLM({"Red Beet": ["red beet soup\n- Red Beet\n- 1. 1. 1.\n- sour green apple", "root vegetable\n- red beet soup"],
                      "Oatly": ["oatly oat milk\n- a drink that is very very very good for you", "dairy free milk"]})
    queries, rows = lm_catalogue_queries(items, lm, per_item=4, cache_dir=tmp_path)
    # kept: 2 to 5 plain words with a word the title lacks; dropped: title echoes, numbers, the
    # worked example's own queries, long sentences, duplicates
    assert list(zip(queries, rows)) == [("red beet soup", 0), ("root vegetable", 0), ("dairy free milk", 1)]
    again = lm_catalogue_queries(items, lm, per_item=4, cache_dir=tmp_path)
    assert again == (queries, rows) and lm.calls == 1  # the second training reads the cache
    assert lm_catalogue_queries(items, lm, per_item=1)[0] == ["red beet soup", "dairy free milk"]
    with pytest.raises(ValueError, match="per_item=0"):
        lm_catalogue_queries(items, lm, per_item=0)
    with pytest.raises(ValueError, match="query_writer='gpt'"):
        AlignTrainingConfig(query_writer="gpt")


def test_generated_queries_join_the_training_texts_of_their_item(grocery, image_encoder, text_encoder, tmp_path):
    from retrieval.align.features import extract_text_features
    from retrieval.align.queries import ItemFields
    from retrieval.pipeline import _with_queries

    products = grocery.products[:3]
    fields = [ItemFields(p.name, (p.coarse_name, p.category), p.description) for p in products]
    feats = extract_image_features([p.iconic_image for p in products], encoder=image_encoder, progress=False)
    texts = extract_text_features([p.description for p in products], views=2, encoder=text_encoder,
                                  cache_dir=tmp_path, progress=False)
    train = PairData(feats, np.arange(3), texts)
    assert _with_queries(train, fields, AlignTrainingConfig(), text_encoder, tmp_path, False) is train  # off by default
    wider = _with_queries(train, fields, AlignTrainingConfig(generated_queries=4), text_encoder, tmp_path, False)
    assert len(wider.texts.clean) == 3 + 12 and wider.texts.views.shape[:2] == (15, 2)
    assert wider.text_item.tolist() == [0, 1, 2] + [0] * 4 + [1] * 4 + [2] * 4
    torch.testing.assert_close(wider.texts.clean[:3], texts.clean)  # the item texts keep their rows
    assert wider.image_items.tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="generated_queries=-1 must be an int >= 0"):
        AlignTrainingConfig(generated_queries=-1)
    from retrieval.pipeline import train_retrieval

    with pytest.raises(ValueError, match="use 0 for ml100k"):  # refused before any work
        train_retrieval("ml100k", out_dir=tmp_path / "m", training=AlignTrainingConfig(generated_queries=2))


def test_lm_written_queries_join_the_template_ones(grocery, image_encoder, text_encoder, tmp_path, monkeypatch):
    from retrieval.align.features import extract_text_features
    from retrieval.align.queries import ItemFields
    from retrieval.pipeline import _with_queries

    products = grocery.products[:2]  # Golden Delicious, Granny Smith
    fields = [ItemFields(p.name, (p.coarse_name, p.category), p.description) for p in products]
    feats = extract_image_features([p.iconic_image for p in products], encoder=image_encoder, progress=False)
    texts = extract_text_features([p.description for p in products], views=0, encoder=text_encoder,
                                  cache_dir=tmp_path, progress=False)
    train = PairData(feats, np.arange(2), texts)
    lm = _ScriptedLM({"Golden": ["yellow eating apple", "sweet apple"], "Granny": ["tart baking apple", "1. 2. 3."]})
    monkeypatch.setattr("retrieval.encoders.llm.load_language_model", lambda path=None: lm)
    only_lm = _with_queries(train, fields, AlignTrainingConfig(generated_queries=2, query_writer="lm"), text_encoder,
                            tmp_path, False)
    assert only_lm.text_item.tolist() == [0, 1, 0, 0, 1]  # Granny Smith's second answer is no query
    both = _with_queries(train, fields, AlignTrainingConfig(generated_queries=2, query_writer="both"), text_encoder,
                         tmp_path, False)
    assert both.text_item.tolist() == [0, 1, 0, 0, 1, 1, 0, 0, 1] and lm.calls == 1  # cached under tmp_path
