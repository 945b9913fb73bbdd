"""One contract run against every ``Recommender``: popularity, ALS, BPR and the two-stage engine."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import polars as pl
import pytest
import torch

from recsys import Filters, Recommendations, load_recommender
from recsys.candidates import (ALSConfig, ALSRecommender, ALSTrainingConfig, BPRConfig, BPRRecommender,
                               BPRTrainingConfig, PopularityRecommender)
from recsys.data import users_from_dataset
from recsys.engine import EngineConfig, EngineTrainingConfig, RankingEngine
from recsys.profiles import Interaction, ProfileStore
from crossrec_core.errors import ModelLoadError


class RecommenderContract:
    """Subclasses provide ``fitted`` (a session-scoped fitted recommender) and ``cls``."""

    cls: type

    def test_recommend_shape_and_order(self, fitted, split):
        user = int(split.train["user_id"][0])
        rec = fitted.recommend(user, k=10)
        assert isinstance(rec, Recommendations) and rec.user_id == user and not rec.cold_start
        assert rec.item_ids.shape == rec.scores.shape == (10,)
        assert len(rec.sources) == len(rec.top_feature_group) == 10
        assert np.all(np.diff(rec.scores) <= 0)
        seen = set(split.train.filter(pl.col("user_id") == user)["item_id"].to_list())
        assert not seen & set(rec.item_ids.tolist())
        assert set(rec.item_ids.tolist()) <= set(fitted.catalogue.item_ids.tolist())

    def test_unknown_user_gets_popularity_fallback(self, fitted):
        rec = fitted.recommend(10**9, k=5)
        assert rec.cold_start and "popularity" in rec.reason and len(rec.item_ids) == 5
        top = fitted.catalogue.item_ids[np.argsort(-fitted.popularity, kind="stable")[:5]]
        assert rec.item_ids.tolist() == top.tolist()

    def test_history_of_unknown_items_only_falls_back(self, fitted):
        fitted.profiles.apply([Interaction(f"unknown-item-{self.cls.__name__}", 777_777, 999_999, "click", 1.0)])
        rec = fitted.recommend(777_777, k=3)
        assert rec.cold_start and "no history in the catalogue" in rec.reason

    def test_bad_k_and_filters(self, fitted, split):
        user = int(split.train["user_id"][0])
        for k in (0, -3, 2.5, True):
            with pytest.raises(ValueError, match="k="):
                fitted.recommend(user, k=k)
        huge = fitted.recommend(user, k=10**7)
        assert "clamped" in huge.reason and len(huge.item_ids) <= 1000
        with pytest.raises(ValueError, match="unknown keys"):
            fitted.recommend(user, k=5, filters={"colour": "red"})
        with pytest.raises(ValueError, match="unknown genres"):
            fitted.recommend(user, k=5, filters={"genres": ["Cooking"]})
        horror = fitted.recommend(user, k=5, filters=Filters(genres=("Horror",)))
        col = fitted.catalogue.genre_names.index("Horror")
        assert fitted.catalogue.genres[fitted.catalogue.positions(horror.item_ids), col].all()
        only = fitted.recommend(user, k=10, filters={"include_items": [1, 2, 3, 999_999]})
        assert set(only.item_ids.tolist()) <= {1, 2, 3} and "eligible" in only.reason

    def test_new_click_reaches_the_next_recommendation(self, fitted, split):
        user = int(split.train["user_id"][1])
        before = fitted.recommend(user, k=5)
        item = int(before.item_ids[0])
        fitted.profiles.apply([Interaction(f"test-click-{self.cls.__name__}", user, item, "purchase", 2e9)])
        after = fitted.recommend(user, k=5)
        assert item not in after.item_ids.tolist()  # now seen, so filtered out

    def test_save_and_reload(self, fitted, split, tmp_path):
        fitted.save_pretrained(tmp_path / "model")
        loaded = self.cls.from_pretrained(tmp_path / "model")
        user = int(split.train["user_id"][2])
        a, b = fitted.recommend(user, k=10), loaded.recommend(user, k=10)
        assert a.item_ids.tolist() == b.item_ids.tolist()
        np.testing.assert_allclose(a.scores, b.scores, rtol=1e-4, atol=1e-5)
        # The generic loader picks the class from the saved kind.
        generic = load_recommender(tmp_path / "model")
        assert type(generic) is self.cls and generic.recommend(user, k=10).item_ids.tolist() == a.item_ids.tolist()
        with pytest.raises(ModelLoadError):
            self.cls.from_pretrained(tmp_path / "missing")


class TestPopularity(RecommenderContract):
    cls = PopularityRecommender

    @pytest.fixture(scope="class")
    def fitted(self, catalogue, split):
        return PopularityRecommender(catalogue, ProfileStore(None)).fit(split.train)


class TestALS(RecommenderContract):
    cls = ALSRecommender

    @pytest.fixture(scope="class")
    def fitted(self, catalogue, split):
        return ALSRecommender(catalogue, ProfileStore(None), ALSConfig(factors=16),
                              ALSTrainingConfig(iterations=5)).fit(split.train)


class TestBPR(RecommenderContract):
    cls = BPRRecommender

    @pytest.fixture(scope="class")
    def fitted(self, catalogue, split):
        return BPRRecommender(catalogue, ProfileStore(None), BPRConfig(factors=16),
                              BPRTrainingConfig(iterations=20)).fit(split.train)


class TestRankingEngine(RecommenderContract):
    cls = RankingEngine

    @pytest.fixture(scope="class")
    def fitted(self, engine):
        return engine

    def test_explanations(self, fitted, split):
        rec = fitted.recommend(int(split.train["user_id"][0]), k=10)
        allowed_sources = {"als", "bpr", "ann", "popularity"}
        assert all(s and set(s) <= allowed_sources for s in rec.sources)
        assert set(rec.top_feature_group) <= {"collaborative", "popularity", "genre", "ids", "demographics", "multimodal"}
        # The batched ablation agrees with scoring each ablation on its own.
        pos = fitted.catalogue.positions(rec.item_ids)
        profile = fitted.profiles.get(rec.user_id)
        sig = fitted._signals(fitted.stage, [profile])
        batch = fitted._features(fitted.stage, [profile], [pos], sig)
        full = fitted._logits(batch)
        np.testing.assert_allclose(full, rec.scores, rtol=1e-4, atol=1e-5)
        drops = np.stack([full - fitted._logits(batch, m.expand(len(pos), -1)) for m in fitted._explain_masks[1:]], axis=1)
        assert tuple(fitted._explain_groups[i] for i in drops.argmax(axis=1)) == rec.top_feature_group
        stats = fitted.train_stats
        assert stats.samples > 0 and stats.samples_per_s > 0
        assert stats.epochs == 1 and np.isfinite(stats.held_out_loss)  # held-out groups scored after the epoch

    def test_children_are_saved_by_themselves(self, fitted, split, tmp_path):
        import json

        fitted.save_pretrained(tmp_path / "m")
        modules = json.loads((tmp_path / "m" / "modules.json").read_text())
        assert [(m["name"], m["kind"]) for m in modules] == [("als", "recsys.als"), ("bpr", "recsys.bpr"),
                                                              ("ranker", "recsys.ranker")]
        # Architecture and training settings in separate files, for the engine and each child.
        config = json.loads((tmp_path / "m" / "config.json").read_text())["config"]
        training = json.loads((tmp_path / "m" / "training_config.json").read_text())["config"]
        assert "n_models" in config and "epochs" not in config and training["epochs"] == 1 and "n_models" not in training
        assert json.loads((tmp_path / "m" / "als" / "training_config.json").read_text())["config"]["iterations"] == 5
        assert not list((tmp_path / "m").rglob("*.npz")) and (tmp_path / "m" / "arrays.safetensors").is_file()
        # One profile snapshot for the engine: the children share its store.
        assert [p.parent.name for p in (tmp_path / "m").rglob("profiles.db")] == ["m"]
        user = int(split.train["user_id"][2])
        als = load_recommender(tmp_path / "m" / "als", profiles=fitted.profiles)
        np.testing.assert_allclose(als.score([user]).scores, fitted.stage.als.score([user]).scores, rtol=1e-5)

    def test_engine_saved_before_children_had_folders_loads(self, fitted, split, tmp_path):
        """The format of earlier sessions (one arrays.npz, one config.json, ranker.safetensors)."""
        import json

        from safetensors.numpy import load_file

        fitted.save_pretrained(tmp_path / "m")
        old = tmp_path / "old"
        old.mkdir()
        a = load_file(str(tmp_path / "m" / "arrays.safetensors"))
        extra = json.loads((tmp_path / "m" / "engine.json").read_text())
        bpr = load_file(str(tmp_path / "m" / "bpr" / "arrays.safetensors"))
        a.update(als_item_factors=load_file(str(tmp_path / "m" / "als" / "arrays.safetensors"))["item_factors"],
                 bpr_item_factors=bpr["item_factors"], bpr_user_ids=bpr["user_ids"], bpr_user_factors=bpr["user_factors"],
                 occupations=np.array(extra["occupations"]), mm_fingerprint=np.array(extra["mm_fingerprint"]))
        np.savez(old / "arrays.npz", **a)
        merged = {k: json.loads((tmp_path / "m" / f).read_text())["config"] for k, f in
                  (("a", "config.json"), ("t", "training_config.json"))}
        (old / "config.json").write_text(json.dumps({"kind": "recsys.engine", "format_version": 1,
                                                     "config": merged["a"] | merged["t"]}))
        for name in ("catalogue.json", "profiles.db"):
            (old / name).write_bytes((tmp_path / "m" / name).read_bytes())
        (old / "ranker.safetensors").write_bytes((tmp_path / "m" / "ranker" / "model.safetensors").read_bytes())
        loaded = RankingEngine.from_pretrained(old)
        assert loaded.config == fitted.config and loaded.training == fitted.training
        user = int(split.train["user_id"][2])
        a_, b_ = fitted.recommend(user, k=10), loaded.recommend(user, k=10)
        assert a_.item_ids.tolist() == b_.item_ids.tolist()
        np.testing.assert_allclose(a_.scores, b_.scores, rtol=1e-4, atol=1e-5)

    def test_mismatched_weights_are_refused(self, fitted, tmp_path, catalogue, features):
        from safetensors.torch import load_file, save_file

        fitted.save_pretrained(tmp_path / "m")
        weights = tmp_path / "m" / "ranker" / "model.safetensors"
        state = load_file(str(weights))
        state["members.0.dense_mlp.0.weight"] = state["members.0.dense_mlp.0.weight"][:, :3].contiguous()
        save_file(state, str(weights))
        with pytest.raises(ModelLoadError, match="feature sizes"):
            RankingEngine.from_pretrained(tmp_path / "m")
        save_file({k.removeprefix("members.0."): v for k, v in state.items() if k.startswith("members.0.")},
                  str(weights))  # an engine saved before ensembles
        with pytest.raises(ModelLoadError, match="older version"):
            RankingEngine.from_pretrained(tmp_path / "m")
        (tmp_path / "m" / "arrays.safetensors").write_bytes(b"not safetensors")
        with pytest.raises(ModelLoadError, match="arrays"):
            RankingEngine.from_pretrained(tmp_path / "m")


class TestColdStartEnsemble(RecommenderContract):
    """The engine with item-id dropout, the shared row for cold items, more cold positives and a
    seed-averaged ensemble of two rankers."""

    cls = RankingEngine

    @pytest.fixture(scope="class")
    def fitted(self, catalogue, split, features, ml_dataset, engine):
        config = replace(engine.config, n_models=2, cold_id_row=True)
        training = replace(engine.training, item_id_dropout=0.3, cold_groups=2)
        eng = RankingEngine(catalogue, users_from_dataset(ml_dataset), features, ProfileStore(None), config, training)
        return eng.fit(split.train, progress=False)

    def test_cold_items_share_the_unknown_row(self, fitted, split):
        profile = fitted.profiles.get(int(split.train["user_id"][0]))
        rows = np.arange(len(fitted.catalogue))
        batch = fitted._features(fitted.stage, [profile], [rows], fitted._signals(fitted.stage, [profile]))
        cold = fitted.stage.als.popularity < fitted.config.cold_count
        assert cold.any() and (~cold).any()
        assert np.all(batch.item_rows[cold] == 0) and np.array_equal(batch.item_rows[~cold], rows[~cold] + 1)

    def test_ensemble_averages_its_members(self, fitted, split):
        assert len(fitted.ranker.members) == 2
        profile = fitted.profiles.get(int(split.train["user_id"][0]))
        rows = np.arange(40)
        batch = fitted._features(fitted.stage, [profile], [rows], fitted._signals(fitted.stage, [profile]))
        with torch.inference_mode():
            each = [m(batch.kjt(), torch.from_numpy(batch.dense)).numpy() for m in fitted.ranker.members]
        assert not np.allclose(each[0], each[1])  # different seeds
        np.testing.assert_allclose(fitted._logits(batch), np.mean(each, axis=0), rtol=1e-5, atol=1e-6)

    def test_cold_positives_get_cold_groups(self, fitted, split, catalogue, features, ml_dataset):
        cold = fitted.stage.als.popularity < fitted.config.cold_count
        n_cold = int(cold[catalogue.positions(split.val["item_id"].to_list())].sum())
        assert n_cold > 0
        groups = {}
        for extra in (0, 2):
            eng = RankingEngine(catalogue, users_from_dataset(ml_dataset), features, fitted.profiles, fitted.config,
                                replace(fitted.training, cold_groups=extra))
            batch, labels = eng._examples(fitted.stage, split.val)
            groups[extra] = (batch.item_rows.reshape(-1, 1 + eng.training.negatives), int(labels.sum()))
        assert groups[2][1] - groups[0][1] == 2 * n_cold
        # The extra groups are cold throughout (cold items use the shared id row 0 in this config).
        assert int((groups[2][0] == 0).all(axis=1).sum()) >= 2 * n_cold


def test_engine_config_is_validated():
    for cls, bad in ((EngineTrainingConfig, {"item_id_dropout": 1.0}), (EngineConfig, {"n_models": 0}),
                     (EngineTrainingConfig, {"cold_groups": -1}), (EngineConfig, {"cold_count": -1})):
        with pytest.raises(ValueError, match=next(iter(bad))):
            cls(**bad)


def test_load_recommender_refuses_other_models(tmp_path):
    from crossrec_core.persist import save_config

    (tmp_path / "other").mkdir()
    save_config(EngineConfig(), tmp_path / "other", "retrieval.something")
    with pytest.raises(ModelLoadError, match="not a recommender"):
        load_recommender(tmp_path / "other")


def test_empty_catalogue_is_refused():
    from recsys import Catalogue
    from crossrec_core.errors import CrossrecError

    with pytest.raises(CrossrecError, match="catalogue is empty"):
        Catalogue(np.zeros(0, np.int64), np.zeros((0, 2), bool), ("a", "b"), ())
