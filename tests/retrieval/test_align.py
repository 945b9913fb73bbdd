"""Aligned models on a real slice: features, training, persistence, the item embedder."""

from __future__ import annotations

import dataclasses
import json
import random

import numpy as np
import pytest
import torch

from retrieval.align.embedder import ItemEmbedder, load_item_embedder
from retrieval.align.features import CACHE_STAGE, augment_text, extract_image_features, lift_features
from retrieval.align.model import (
    AlignConfig, AlignedModel, AlignTrainingConfig, AttentionPool, ResidualAdapter, split_settings,
)
from retrieval.align.train import PairData, model_image_inputs, train_aligned
from crossrec_core.errors import ModelLoadError
from retrieval.evaluate import EvalOptions, _fold_summary, markdown_table, paired_stats, score_model
from retrieval.metrics import retrieval_metrics


def test_image_features_skip_and_count_bad_images(grocery, image_encoder, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff broken")
    paths = [grocery.products[0].iconic_image, bad, None, grocery.products[1].iconic_image]
    feats = extract_image_features(paths, views=1, encoder=image_encoder, progress=False)
    assert feats.ok.tolist() == [True, False, False, True]
    assert set(feats.errors) == {1, 2} and "broken.jpg" in feats.errors[1]
    assert feats.clean.shape == (4, 96, 14, 14) and feats.views.shape == (4, 1, 96, 14, 14)
    assert feats.stage == CACHE_STAGE
    assert float(feats.clean[1].abs().sum()) == 0.0


def test_feature_cache_round_trip(grocery, image_encoder, tmp_path):
    paths = [p.iconic_image for p in grocery.products[:2]]
    first = extract_image_features(paths, encoder=image_encoder, cache_dir=tmp_path, progress=False)
    assert len(list(tmp_path.glob("*.pt"))) == 1
    second = extract_image_features(paths, encoder=image_encoder, cache_dir=tmp_path, progress=False)
    assert torch.equal(first.clean, second.clean)


def test_augment_text_keeps_first_sentence_and_varies():
    text = "Golden Delicious. Sweet and mellow. Good for desserts. Grown in Sweden."
    variants = {augment_text(text, random.Random(s)) for s in range(10)}
    assert all(v.startswith("Golden") for v in variants) and len(variants) > 1


def test_adapter_starts_as_identity():
    z = torch.randn(4, 16)
    torch.testing.assert_close(ResidualAdapter(16, 8)(z), z)


def test_crossclip_learns_and_beats_chance(tiny_crossclip, slice_data, image_encoder):
    hist = tiny_crossclip.history
    assert hist[-1]["loss"] < hist[0]["loss"]
    metrics = score_model(tiny_crossclip.model, image_encoder, slice_data["test"].images, slice_data["test"].image_text,
                          slice_data["texts"], np.arange(len(slice_data["products"])))
    assert set(metrics) == {"i2t", "t2i"}
    assert metrics["i2t"]["acc@1"] > 1 / len(slice_data["products"])


def test_save_reload_identical_and_digest(tiny_crossclip, tmp_path, slice_data):
    model = tiny_crossclip.model
    model.save_pretrained(tmp_path / "m")
    again = AlignedModel.from_pretrained(tmp_path / "m")
    assert again.config == model.config and again.digest() == model.digest()
    with torch.inference_mode():
        torch.testing.assert_close(again.encode_text(slice_data["texts"].clean), model.encode_text(slice_data["texts"].clean))


def test_from_pretrained_errors(tmp_path, tiny_crossclip):
    with pytest.raises(ModelLoadError, match="no config.json"):
        AlignedModel.from_pretrained(tmp_path)
    tiny_crossclip.model.save_pretrained(tmp_path / "m")
    (tmp_path / "m" / "model.safetensors").write_bytes(b"truncated")
    with pytest.raises(ModelLoadError, match="safetensors"):
        AlignedModel.from_pretrained(tmp_path / "m")


def test_from_pretrained_rejects_mismatched_weights(tmp_path, tiny_crossclip):
    tiny_crossclip.model.save_pretrained(tmp_path / "m")
    other = AlignedModel(AlignConfig.baseline(embed_dim=8))
    other.save_pretrained(tmp_path / "o")
    (tmp_path / "o" / "model.safetensors").replace(tmp_path / "m" / "model.safetensors")
    with pytest.raises(ModelLoadError, match="does not fit"):
        AlignedModel.from_pretrained(tmp_path / "m")


def test_baseline_trains_without_backbone(slice_data, image_encoder):
    res = train_aligned(AlignConfig.baseline(embed_dim=16), slice_data["train"], None,
                        AlignTrainingConfig.baseline(epochs=2, batch_size=8), encoder=image_encoder, progress=False)
    assert res.model.top is None and res.best_epoch == 2 and len(res.history) == 2


def test_pair_data_checks_lengths(slice_data):
    with pytest.raises(ValueError, match="image_text has 1 entries"):
        PairData(slice_data["train"].images, np.array([0]), slice_data["texts"])


def test_item_embedder_handles_missing_modalities(tiny_crossclip, grocery, tmp_path):
    embedder = ItemEmbedder(tiny_crossclip.model)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"nope")
    p = grocery.products
    out = embedder.embed([p[0].description, None, p[2].description], [p[0].iconic_image, p[1].iconic_image, bad])
    assert out.image_ok.tolist() == [True, True, False] and out.text_ok.tolist() == [True, False, True]
    np.testing.assert_allclose(np.linalg.norm(out.fused, axis=1), 1.0, atol=1e-4)
    np.testing.assert_allclose(out.fused[2], out.text[2], atol=1e-5)  # no image: the text stands in
    with pytest.raises(ValueError, match="neither a usable text nor a decodable image"):
        embedder.embed([None], [bad])
    with pytest.raises(ValueError, match="texts has 2 entries but images has 1"):
        embedder.embed(["a", "b"], [None])


def test_load_item_embedder_refuses_untrained_unless_asked(tmp_path, monkeypatch):
    from retrieval.align.embedder import UntrainedModelError, UntrainedModelWarning

    monkeypatch.setenv("CROSSREC_HOME", str(tmp_path))
    with pytest.raises(UntrainedModelError, match="crossrec retrieval train --dataset grocery"):
        load_item_embedder()
    with pytest.warns(UntrainedModelWarning, match="crossrec retrieval train --dataset grocery"):
        embedder = load_item_embedder(allow_untrained=True)
    assert not embedder.trained and embedder.embed_text(["apple"]).vectors.shape == (1, embedder.dim)


def test_retrieval_metrics_ranks():
    scores = np.array([[0.9, 0.1, 0.5], [0.2, 0.8, 0.9]])
    relevant = np.array([[True, False, False], [True, False, False]])
    m = retrieval_metrics(scores, relevant)
    assert (m.acc1, m.mrr, m.n) == (0.5, pytest.approx((1 + 1 / 3) / 2), 2)
    with pytest.raises(ValueError, match="no relevant"):
        retrieval_metrics(scores, np.zeros_like(relevant))


def test_paired_stats_direction():
    stats = paired_stats([0.30, 0.35, 0.40, 0.32, 0.38], [0.45, 0.47, 0.55, 0.44, 0.50])
    assert stats["p_value"] < 0.01 and stats["cohens_d"] > 1 and stats["mean_diff"] > 0


def test_open_set_seeds_are_averaged_per_fold_and_reported(tmp_path):
    with pytest.raises(ValueError, match="seeds=0"):
        EvalOptions(seeds=0, cache_dir=str(tmp_path))
    runs = [{"i2t": {"acc@1": 0.4, "mrr": 0.5, "n": 7}}, {"i2t": {"acc@1": 0.6, "mrr": 0.7, "n": 7}}]
    assert _fold_summary(runs, spread=False) == {"i2t": {"acc@1": pytest.approx(0.5), "mrr": pytest.approx(0.6), "n": 7}}
    block = {t: {"acc@1": 0.5, "acc@1_std": 0.1} for t in ("i2t", "t2i", "i2i")}
    report = {"open_set": {"folds": 5, "baseline": block, "crossclip": block, "p_value": 0.01, "cohens_d": 2.0,
                           "seeds": {"n": 2, "per_seed_i2t_acc@1": {"baseline": [0.38, 0.39], "crossclip": [0.47, 0.45]}}}}
    assert "| open set image→text acc@1 of each of 2 training seeds | 38.0%, 39.0% | 47.0%, 45.0% |" in markdown_table(report)


def test_mirrored_view_is_cached_apart_and_follows_subsets(grocery, image_encoder, tmp_path):
    paths = [p.iconic_image for p in grocery.products[:3]]
    plain = extract_image_features(paths, encoder=image_encoder, cache_dir=tmp_path, progress=False)
    feats = extract_image_features(paths, mirror=True, encoder=image_encoder, cache_dir=tmp_path, progress=False)
    assert plain.mirrored is None and len(list(tmp_path.glob("*.pt"))) == 2
    assert torch.equal(feats.clean, plain.clean) and feats.mirrored.shape == feats.clean.shape
    assert not torch.equal(feats.mirrored, feats.clean)
    assert torch.equal(feats.subset(np.array([2, 0])).mirrored, feats.mirrored[[2, 0]])


def test_mirror_view_joins_the_training_views(slice_data, image_encoder):
    images = slice_data["train"].images
    feats = dataclasses.replace(images, mirrored=images.clean.flip(-1))
    config, training = AlignConfig(), AlignTrainingConfig(image_views=1)
    clean, views = model_image_inputs(config, feats, image_encoder, training)
    assert views.shape[1] == 2 and torch.equal(views[:, 1], lift_features(feats, image_encoder, config.split_stage).mirrored)
    no_mirror = dataclasses.replace(training, mirror_view=False)
    assert model_image_inputs(config, feats, image_encoder, no_mirror)[1].shape[1] == 1
    assert model_image_inputs(config, feats, image_encoder, AlignTrainingConfig.baseline())[1] is None
    assert model_image_inputs(config, feats, image_encoder)[1] is None  # no training: no views


def test_test_time_flip_needs_mirrored_queries(tiny_crossclip, slice_data, image_encoder):
    test, products = slice_data["test"], np.arange(len(slice_data["products"]))
    args = (tiny_crossclip.model, image_encoder)
    with pytest.raises(ValueError, match="mirror=True"):
        score_model(*args, test.images, test.image_text, slice_data["texts"], products, test_time_flip=True)
    same = dataclasses.replace(test.images, mirrored=test.images.clean)  # its own mirror: scores unchanged
    flipped = score_model(*args, same, test.image_text, slice_data["texts"], products, test_time_flip=True)
    plain = score_model(*args, test.images, test.image_text, slice_data["texts"], products)
    assert flipped["i2t"]["mrr"] == pytest.approx(plain["i2t"]["mrr"], abs=1e-6)


def test_heads_form_an_ensemble_in_one_vector(tiny_crossclip, slice_data, image_encoder, tmp_path):
    with pytest.raises(ValueError, match="heads=3"):
        AlignConfig(embed_dim=32, heads=3)
    config = dataclasses.replace(tiny_crossclip.model.config, heads=4)
    res = train_aligned(config, slice_data["train"], None, dataclasses.replace(tiny_crossclip.training, epochs=2),
                        encoder=image_encoder, progress=False)
    model = res.model
    assert len(model.image_extra) == 3 and np.isfinite(res.history[-1]["loss"])
    with torch.inference_mode():
        zt = model.encode_text(slice_data["texts"].clean)
        zi = model.encode_image(lift_features(slice_data["test"].images, image_encoder, config.split_stage).clean)
    torch.testing.assert_close(zt.norm(dim=-1), torch.ones(len(zt)))
    # the cosine of the concatenated vectors is the mean of the heads' cosines
    torch.testing.assert_close(model.head_similarities(zi, zt).mean(0), zi @ zt.T)
    model.save_pretrained(tmp_path / "m")
    assert AlignedModel.from_pretrained(tmp_path / "m").digest() == model.digest()


def test_single_head_keeps_checkpoint_names(tmp_path):
    model = AlignedModel(AlignConfig(embed_dim=16, adapter_hidden=8, fusion=False, heads=1, trainable_stages=0,
                                     image_pool="mean"))
    assert {"image_proj.weight", "text_proj.weight", "image_adapter.down.weight"} <= set(model.state_dict())
    assert not any("extra" in n or "pool" in n for n in model.state_dict())
    # a checkpoint from before `heads` and `image_pool` existed loads with one head and mean pooling
    model.save_pretrained(tmp_path / "m")
    config_file = tmp_path / "m" / "config.json"
    payload = json.loads(config_file.read_text())
    del payload["config"]["heads"], payload["config"]["image_pool"]
    config_file.write_text(json.dumps(payload))
    assert AlignedModel.from_pretrained(tmp_path / "m").digest() == model.digest()


def test_architecture_and_training_configs_saved_apart_and_old_mixed_files_load(tmp_path):
    config = AlignConfig(embed_dim=16, adapter_hidden=8, fusion=False, heads=2, trainable_stages=0)
    model = AlignedModel(config)
    training = AlignTrainingConfig(epochs=7, lr=5e-4, image_views=2)
    model.save_pretrained(tmp_path / "m", training=training)
    saved = json.loads((tmp_path / "m" / "config.json").read_text())["config"]
    assert "epochs" not in saved and "image_views" not in saved and saved["embed_dim"] == 16
    assert AlignedModel.load_training_config(tmp_path / "m") == training
    assert AlignedModel.from_pretrained(tmp_path / "m").config == config
    # a model saved before the split (session 7 and before): one config.json with both kinds of fields
    model.save_pretrained(tmp_path / "old")
    assert AlignedModel.load_training_config(tmp_path / "old") is None
    old = tmp_path / "old" / "config.json"
    payload = json.loads(old.read_text())
    payload["config"].update(epochs=30, lr=1e-3, image_views=4, mirror_view=True, text_views=6, seed=0,
                             text_loss_weight=0.6, select_epoch_on_val=False)
    old.write_text(json.dumps(payload))
    loaded = AlignedModel.from_pretrained(tmp_path / "old")
    assert loaded.config == config and loaded.digest() == model.digest()
    assert AlignedModel.load_training_config(tmp_path / "old") == AlignTrainingConfig(epochs=30, image_views=4)
    payload["config"]["wings"] = 2
    old.write_text(json.dumps(payload))
    with pytest.raises(ModelLoadError, match="wings"):
        AlignedModel.from_pretrained(tmp_path / "old")
    arch, train = split_settings({"embed_dim": 8, "epochs": 2})
    assert arch == {"embed_dim": 8} and train == {"epochs": 2}
    with pytest.raises(ValueError, match="wings"):
        split_settings({"wings": 2})


def test_numpy_text_tower_gives_the_models_text_vectors(tiny_crossclip, slice_data):
    feats = slice_data["texts"].clean
    for model in (tiny_crossclip.model, AlignedModel(AlignConfig.baseline(embed_dim=16))):  # with and without adapters
        with torch.inference_mode():
            expected = model.encode_text(feats).numpy()
        got = model.text_tower()(feats.numpy())
        assert got.dtype == np.float32 and got.shape == expected.shape
        np.testing.assert_allclose(got, expected, atol=1e-5)


def test_last_epoch_kept_unless_selecting_on_val(tiny_crossclip, slice_data, image_encoder):
    assert tiny_crossclip.best_epoch == tiny_crossclip.training.epochs
    training = dataclasses.replace(tiny_crossclip.training, select_epoch_on_val=True)
    res = train_aligned(tiny_crossclip.model.config, slice_data["train"], slice_data["test"], training,
                        encoder=image_encoder, progress=False)
    accs = [h["val_i2t_acc@1"] for h in res.history]
    assert res.best_epoch == int(np.argmax(accs)) + 1


def test_attention_pool_starts_as_mean_pooling_and_learns(slice_data, image_encoder, tmp_path):
    tokens = torch.randn(3, 49, 40)
    pooled = AttentionPool(40, 8, queries=2)(tokens)
    assert pooled.shape == (3, 2, 40)
    torch.testing.assert_close(pooled, tokens.mean(dim=1, keepdim=True).expand(-1, 2, -1))
    with pytest.raises(ValueError, match="image_pool='max'"):
        AlignConfig(image_pool="max")
    config = AlignConfig(image_pool="attention", pool_key_dim=8, embed_dim=32, heads=2, adapter_hidden=16, fusion=False)
    training = AlignTrainingConfig(epochs=3, batch_size=6, lr=3e-3, image_views=1, text_views=2)
    model = train_aligned(config, slice_data["train"], None, training, encoder=image_encoder, progress=False).model
    assert float(model.pool.query.detach().abs().sum()) > 0  # the heads' queries moved away from uniform weights
    x = lift_features(slice_data["test"].images, image_encoder, config.split_stage).clean
    with torch.inference_mode():
        z = model.encode_image(x)
    torch.testing.assert_close(z.norm(dim=-1), torch.ones(len(z)))
    model.save_pretrained(tmp_path / "m")
    reloaded = AlignedModel.from_pretrained(tmp_path / "m")
    with torch.inference_mode():
        torch.testing.assert_close(reloaded.encode_image(x), z)


def test_frozen_stages_through_onnx_runtime_match_torch(grocery, image_encoder):
    """The ONNX Runtime path of the frozen MobileNetV2 stages gives torch's features (float32
    rounding), from the image and from cached stage features alike."""
    from retrieval.encoders.image import load_images

    x = load_images([p.path for p in grocery.split("val")[:5]]).tensors
    for start, stop in ((0, CACHE_STAGE), (CACHE_STAGE, 19)):
        with torch.inference_mode():
            ref = image_encoder.model.features[start:stop](x.contiguous())
        got = image_encoder.frozen(x, start, stop)
        assert got is not None and got.shape == ref.shape
        assert torch.allclose(got, ref, atol=1e-3 * float(ref.abs().max()))
        x = ref


def test_view_loss_keeps_images_apart_and_is_off_by_default(slice_data, image_encoder, tiny_configs):
    """The image<->image term between two views of an image: off by default and refused without a
    second view; off, training stays deterministic; on, it trains, and a photo's augmented view
    finds the photo at least as often as without it."""
    config, training = tiny_configs
    assert training.view_loss_weight == 0.0
    with pytest.raises(ValueError, match="view_loss_weight"):
        dataclasses.replace(training, view_loss_weight=-1.0)
    with pytest.raises(ValueError, match="needs a second view"):
        AlignTrainingConfig.baseline(view_loss_weight=1.0)
    on = dataclasses.replace(training, view_loss_weight=1.0, image_views=1, mirror_view=False)
    off = dataclasses.replace(on, view_loss_weight=0.0)
    runs = {w: train_aligned(config, slice_data["train"], None, t, encoder=image_encoder, progress=False)
            for w, t in ((1.0, on), (0.0, off))}
    again = train_aligned(config, slice_data["train"], None, off, encoder=image_encoder, progress=False)
    assert [h["loss"] for h in again.history] == [h["loss"] for h in runs[0.0].history]
    assert runs[1.0].history[-1]["loss"] < runs[1.0].history[0]["loss"]
    clean, views = model_image_inputs(config, slice_data["train"].images, image_encoder, on)

    def view_finds_photo(model) -> float:
        with torch.no_grad():
            a, b = model.eval().encode_image(clean), model.encode_image(views[:, 0])
        return float(np.mean(np.argmax((a @ b.T).numpy(), axis=1) == np.arange(len(a))))

    assert view_finds_photo(runs[1.0].model) >= view_finds_photo(runs[0.0].model)  # 1.0 vs 0.94 when written
