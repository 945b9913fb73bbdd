"""Contract tests of ``retrieval.index``: one mixin run against Flat, IVF and HNSW."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from crossrec_core.errors import EmbeddingDimensionError, IncompatibleIndexError, ModelLoadError, UnknownIdError
from retrieval.index import FaissIndex, IndexConfig, SearchResult, choose_index_type, create_index, recall_at_k
from crossrec_core.reports import Report
from retrieval.index_bench import ClusteredVectors, run_index_benchmark

DIM = 32
N = 3000


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    """``N`` clustered vectors ``(N, DIM)`` and their ids (spread out, negatives included)."""
    rng = np.random.default_rng(7)
    vectors = ClusteredVectors(DIM, seed=7, n_centres=50).sample(N, rng)
    ids = np.unique(rng.integers(-2**62, 2**62, N + 10))[:N]  # -1 is practically never drawn
    return rng.permutation(ids), vectors


class IndexContract:
    """Behaviour every index type must show; subclasses set ``kind``."""

    kind: str

    @classmethod
    def build(cls, data, **params) -> FaissIndex:
        ids, vectors = data
        index = create_index(DIM, expected_size=len(ids), kind=cls.kind, fingerprint="model-a", **params)
        index.add(ids, vectors, [{"n": i} for i in range(len(ids))])
        return index

    @pytest.fixture(scope="class")
    @classmethod
    def built(cls, data) -> FaissIndex:
        return cls.build(data)

    def test_type_size_and_membership(self, built, data):
        ids, _ = data
        assert built.config.index_type == self.kind
        assert len(built) == len(ids)
        assert int(ids[5]) in built and -1 not in built and "x" not in built
        assert sorted(built.ids().tolist()) == sorted(ids.tolist())

    def test_finds_itself_with_metadata(self, built, data):
        ids, vectors = data
        result = built.search(vectors[:50], 5)
        assert isinstance(result, SearchResult)
        assert result.ids.shape == (50, 5) and result.ids.dtype == np.int64
        assert result.scores.shape == (50, 5) and result.scores.dtype == np.float32
        assert (result.ids[:, 0] == ids[:50]).mean() >= 0.95
        assert np.allclose(result.scores[result.ids[:, 0] == ids[:50], 0], 1.0, atol=1e-4)
        assert np.all(np.diff(result.scores, axis=1) <= 1e-6)  # best first
        meta = result.hit_metadata()
        assert meta[0][0] == {"n": 0}

    def test_recall_reaches_target_on_unseen_queries(self, built, data):
        ids, vectors = data
        queries = ClusteredVectors(DIM, seed=7, n_centres=50).sample(200, np.random.default_rng(99))
        exact = vectors @ queries.T
        truth = ids[np.argsort(-exact, axis=0)[:10].T]
        assert recall_at_k(built.search(queries, 10).ids, truth) >= 0.9

    def test_upsert_replaces_vector_and_metadata(self, data):
        ids, vectors = data
        index = self.build(data)
        target = int(ids[10])
        index.add(np.array([target]), vectors[20:21], [{"moved": True}])
        assert len(index) == len(ids)
        result = index.search(vectors[20:21], 2)
        assert target in result.ids[0] and int(ids[20]) in result.ids[0]
        assert index.search(vectors[10:11], 1).ids[0, 0] != target
        assert {"moved": True} in result.hit_metadata()[0]

    def test_remove_never_returns_removed(self, data):
        ids, vectors = data
        index = self.build(data, max_dead_fraction=0.5)  # keep tombstones (no compaction) for the selector path
        gone = ids[:300]
        assert index.remove(gone) == 300
        assert len(index) == len(ids) - 300 and int(gone[0]) not in index
        found = index.search(vectors[:300], 10).ids
        assert not np.isin(found, gone).any()
        assert (found[:, 0] != -1).all()
        with pytest.raises(UnknownIdError, match=str(int(gone[0]))):
            index.remove(gone[:1])
        assert index.remove(np.concatenate([gone[:2], ids[300:301]]), missing_ok=True) == 1
        index.compact()
        assert not np.isin(index.search(vectors[:301], 10).ids, ids[:301]).any()
        assert len(index) == len(ids) - 301

    def test_save_load_round_trip(self, built, data, tmp_path):
        _, vectors = data
        built.save(tmp_path / "ix")
        loaded = FaissIndex.load(tmp_path / "ix", expected_fingerprint="model-a", expected_dim=DIM)
        assert loaded.config == built.config
        before, after = built.search(vectors[:100], 10), loaded.search(vectors[:100], 10)
        np.testing.assert_array_equal(before.ids, after.ids)
        np.testing.assert_allclose(before.scores, after.scores, rtol=1e-6)
        assert after.hit_metadata()[0][0] == before.hit_metadata()[0][0]
        saved = json.loads((tmp_path / "ix" / "config.json").read_text())
        assert saved["kind"] == "FaissIndex" and saved["config"]["fingerprint"] == "model-a"
        assert saved["config"]["index_type"] == self.kind and saved["config"]["metric"] == "cosine"

    def test_load_with_tombstones(self, data, tmp_path):
        ids, vectors = data
        index = self.build(data, max_dead_fraction=0.5)
        index.remove(ids[:100])
        index.save(tmp_path / "ix")
        loaded = FaissIndex.load(tmp_path / "ix")
        assert len(loaded) == len(ids) - 100
        assert not np.isin(loaded.search(vectors[:100], 10).ids, ids[:100]).any()

    def test_fingerprint_or_dim_mismatch_raises(self, built, tmp_path):
        built.save(tmp_path / "ix")
        with pytest.raises(IncompatibleIndexError, match="model-b"):
            FaissIndex.load(tmp_path / "ix", expected_fingerprint="model-b")
        with pytest.raises(IncompatibleIndexError, match="expected_dim=64"):
            FaissIndex.load(tmp_path / "ix", expected_dim=64)

    def test_wrong_dim_raises(self, built):
        with pytest.raises(EmbeddingDimensionError, match="width 16"):
            built.search(np.ones((2, 16), np.float32), 3)
        with pytest.raises(EmbeddingDimensionError):
            built.add(np.array([1]), np.ones((1, DIM + 1), np.float32))

    def test_truncated_or_corrupt_file_raises_model_load_error(self, built, tmp_path):
        built.save(tmp_path / "ix")
        file = tmp_path / "ix" / "index.faiss"
        file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])
        with pytest.raises(ModelLoadError, match="index.faiss"):
            FaissIndex.load(tmp_path / "ix")
        sums = json.loads((tmp_path / "ix" / "checksums.json").read_text())
        sums["index.faiss"] = hashlib.sha256(file.read_bytes()).hexdigest()  # FAISS itself meets the truncation
        (tmp_path / "ix" / "checksums.json").write_text(json.dumps(sums))
        with pytest.raises(ModelLoadError, match="cannot read"):
            FaissIndex.load(tmp_path / "ix")
        (tmp_path / "ix" / "checksums.json").unlink()
        with pytest.raises(ModelLoadError, match="checksums.json"):
            FaissIndex.load(tmp_path / "ix")

    def test_failed_save_leaves_old_index_intact(self, built, data, tmp_path, monkeypatch):
        _, vectors = data
        built.save(tmp_path / "ix")
        before = FaissIndex.load(tmp_path / "ix").search(vectors[:20], 5).ids
        bigger = self.build(data)
        bigger.add(np.array([123456789]), vectors[:1])

        def fail(*args, **kwargs):
            raise OSError("disk full")

        monkeypatch.setattr(np, "save", fail)  # dies after index.faiss was written
        with pytest.raises(OSError, match="disk full"):
            bigger.save(tmp_path / "ix")
        monkeypatch.undo()
        loaded = FaissIndex.load(tmp_path / "ix")
        assert len(loaded) == len(built) and 123456789 not in loaded
        np.testing.assert_array_equal(loaded.search(vectors[:20], 5).ids, before)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["ix"]  # no temporary directory left

    def test_empty_index_round_trip(self, data, tmp_path):
        _, vectors = data
        create_index(np.int64(DIM), expected_size=len(vectors), kind=self.kind).save(tmp_path / "ix")
        loaded = FaissIndex.load(tmp_path / "ix")
        assert len(loaded) == 0 and loaded.search(vectors[:2], 3).ids.shape == (2, 0)
        loaded.add(np.arange(1500), vectors[:1500])  # an IVF saved untrained trains now
        assert loaded.search(vectors[:1], 1).ids[0, 0] == 0

    def test_k_clamped_and_validated(self, data):
        ids, vectors = data
        index = create_index(DIM, expected_size=10, kind=self.kind)
        assert index.search(vectors[:2], 5).ids.shape == (2, 0)
        index.add(ids[:5], vectors[:5])
        result = index.search(vectors[:2], 50)
        assert result.ids.shape == (2, 5)
        assert sorted(result.ids[0].tolist()) == sorted(ids[:5].tolist())
        for bad in (0, -3, 2.5, True):
            with pytest.raises(ValueError, match="k="):
                index.search(vectors[:2], bad)


class TestFlat(IndexContract):
    kind = "flat"


class TestIVF(IndexContract):
    kind = "ivf"

    def test_trained_and_tuned_on_first_add(self, built):
        c = built.config
        assert 1 <= c.nprobe <= c.nlist <= N // 39
        assert c.tuned_recall is not None and c.tuned_recall >= c.recall_target


class TestHNSW(IndexContract):
    kind = "hnsw"

    def test_tuned_on_first_add(self, built):
        assert built.config.tuned_recall is not None and built.config.tuned_recall >= 0.95


def test_add_validates_input(data):
    ids, vectors = data
    index = create_index(DIM, expected_size=100, kind="flat")
    with pytest.raises(ValueError, match="repeats"):
        index.add(np.array([1, 2, 1]), vectors[:3])
    with pytest.raises(ValueError, match="NaN"):
        index.add(np.array([1, 2]), np.array([vectors[0], np.full(DIM, np.nan)], np.float32))
    with pytest.raises(ValueError, match="all zero"):
        index.add(np.array([1]), np.zeros((1, DIM), np.float32))
    with pytest.raises(TypeError, match="dtype"):
        index.add(np.array([1.5]), vectors[:1])
    with pytest.raises(TypeError, match="floating"):
        index.add(np.array([1]), np.ones((1, DIM), np.int32))
    with pytest.raises(ValueError, match="must match"):
        index.add(np.array([1, 2]), vectors[:3])
    with pytest.raises(ValueError, match="reserved"):
        index.add(np.array([-1]), vectors[:1])
    with pytest.raises(TypeError, match="JSON"):
        index.add(np.array([1]), vectors[:1], [{"x": object()}])
    with pytest.raises(ValueError, match="metadata"):
        index.add(np.array([1]), vectors[:1], [{}, {}])
    assert len(index) == 0  # nothing half-added


def test_vectors_are_normalised(data):
    ids, vectors = data
    index = create_index(DIM, expected_size=10, kind="flat")
    index.add(ids[:3], vectors[:3] * 7.0)
    result = index.search(vectors[:1].astype(np.float64) * 0.1, 1)
    assert result.ids[0, 0] == ids[0] and abs(result.scores[0, 0] - 1.0) < 1e-5


def test_factory_choice_by_size_and_target():
    assert choose_index_type(1_000) == "flat"
    assert choose_index_type(200_000) == "hnsw"
    assert choose_index_type(5_000_000) == "ivf"
    assert choose_index_type(5_000_000, recall_target=0.999) == "flat"
    assert create_index(8, expected_size=100).config.index_type == "flat"
    big = create_index(8, expected_size=2_000_000, fingerprint="m")
    assert big.config.index_type == choose_index_type(2_000_000) and big.fingerprint == "m"
    assert create_index(8, expected_size=1_000_000, kind="ivf").config.nlist == 4096
    with pytest.raises(ValueError, match="kind="):
        create_index(8, expected_size=10, kind="annoy")
    with pytest.raises(ValueError, match="unknown index params"):
        create_index(8, expected_size=10, nprobes=3)
    with pytest.raises(ValueError, match="dim="):
        IndexConfig(dim=0)


def test_load_rejects_missing_and_foreign_directories(tmp_path):
    with pytest.raises(FileNotFoundError):
        FaissIndex.load(tmp_path / "nothing")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.json").write_text(json.dumps({"kind": "Encoder", "config": {}}))
    with pytest.raises(ModelLoadError, match="Encoder"):
        FaissIndex.load(tmp_path / "other")


def test_tune_on_real_queries(data):
    ids, vectors = data
    index = create_index(DIM, expected_size=len(ids), kind="ivf")
    index.add(ids, vectors)
    queries = ClusteredVectors(DIM, seed=7, n_centres=50).sample(100, np.random.default_rng(5))
    recall = index.tune(queries, recall_target=0.99)
    assert recall >= 0.99 or index.config.nprobe == index.config.nlist
    assert index.config.tuned_recall == round(recall, 4)


def test_recall_at_k_counts_shared_ids():
    truth = np.array([[1, 2, 3], [4, 5, -1]])
    assert recall_at_k(np.array([[3, 9, 1], [5, -1, -1]]), truth) == pytest.approx(3 / 5)


@pytest.mark.gpu
def test_gpu_search_matches_cpu(data):
    import faiss

    if faiss.get_num_gpus() == 0:
        pytest.skip("no GPU visible to faiss")
    ids, vectors = data
    cpu = create_index(DIM, expected_size=len(ids), kind="flat", use_gpu=False)
    gpu = create_index(DIM, expected_size=len(ids), kind="flat", use_gpu=True)
    for index in (cpu, gpu):
        index.add(ids, vectors)
        index.remove(ids[:10])
    assert gpu.on_gpu
    np.testing.assert_array_equal(cpu.search(vectors[:50], 5).ids, gpu.search(vectors[:50], 5).ids)


def test_benchmark_quick(tmp_path):
    report = run_index_benchmark(sizes=(3000,), dim=DIM, n_queries=50, progress=False)
    assert [(r.size, r.kind) for r in report.rows] == [(3000, "flat"), (3000, "ivf"), (3000, "hnsw")]
    flat = report.rows[0]
    assert flat.recall_at_k == 1.0 and report.speedup(flat) == 1.0
    assert all(r.memory_bytes > 3000 * DIM * 4 and r.batch_qps > 0 and r.single_qps > 0 for r in report.rows)
    assert isinstance(report, Report)  # the one report shape shared with every eval and bench
    report.to_json(tmp_path / "bench.json")
    saved = json.loads((tmp_path / "bench.json").read_text())
    assert saved["rows"][1]["kind"] == "ivf" and "speedup_vs_flat" in saved["rows"][1]
    assert report.to_markdown().count("\n| 3,000 |") == 3


def test_cli_bench_writes_json(tmp_path, capsys):
    import argparse

    from crossrec.cli_index import add_bench_arguments, run_bench_from_args

    parser = argparse.ArgumentParser()
    add_bench_arguments(parser)
    args = parser.parse_args(["--json", str(tmp_path / "b.json"), "--sizes", "2000", "--kinds", "flat,hnsw",
                              "--dim", "16", "--queries", "20"])
    assert run_bench_from_args(args) == 0
    saved = json.loads((tmp_path / "b.json").read_text())
    assert [r["kind"] for r in saved["rows"]] == ["flat", "hnsw"] and saved["dim"] == 16
    assert "| 2,000 | hnsw |" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        parser.parse_args(["--json", "x", "--kinds", "annoy"])
    # Real embeddings from a .npy file set the width; a file of the wrong shape is refused.
    np.save(tmp_path / "base.npy", np.random.default_rng(0).normal(size=(50, 12)).astype(np.float32))
    args = parser.parse_args(["--json", str(tmp_path / "r.json"), "--sizes", "500", "--kinds", "flat",
                              "--queries", "10", "--base", str(tmp_path / "base.npy")])
    assert run_bench_from_args(args) == 0 and json.loads((tmp_path / "r.json").read_text())["dim"] == 12
    zero_row = np.random.default_rng(1).normal(size=(4, 12)).astype(np.float32)
    zero_row[2] = 0.0
    np.save(tmp_path / "zero.npy", zero_row)
    with pytest.raises(ValueError, match=r"base rows \[2\]"):
        run_bench_from_args(parser.parse_args(["--json", "x", "--base", str(tmp_path / "zero.npy")]))
    np.save(tmp_path / "flat.npy", np.zeros(5, np.float32))
    with pytest.raises(SystemExit, match="expected a non-empty float"):
        run_bench_from_args(parser.parse_args(["--json", "x", "--base", str(tmp_path / "flat.npy")]))
