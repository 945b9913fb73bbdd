"""Issue 14's target: a user's folder goes through every command with no code change.

Fast: the catalogue fingerprint and the warning for a model used on another catalogue, and folder
problems reported as one-line errors (never a traceback from torch, faiss or polars). Slow: the
whole chain on the 40-item fixture folder through the CLI (retrieval train, eval, search by text
and by photo, demo with rank train, recommend and the interactions replayed through the broker).
`data check`, rank train/recommend (tests/recsys/test_user_folder.py) and the corrupted copy
(tests/datasets/test_check.py) run in the default test run.
"""

from __future__ import annotations

import json
import shutil

import polars as pl
import pytest

from crossrec.cli import main
from crossrec_datasets import open_dataset
from retrieval.provenance import check_catalogue, training_record, write_training_record


def _copy(shop_folder, tmp_path, name: str):
    out = tmp_path / name
    shutil.copytree(shop_folder, out)
    return out


def test_fingerprint_follows_the_catalogue(shop_folder, tmp_path):
    same = _copy(shop_folder, tmp_path, "same")
    edited = _copy(shop_folder, tmp_path, "edited")
    cat = pl.read_parquet(edited / "catalogue.parquet")
    cat.with_columns(pl.when(pl.int_range(pl.len()) == 3).then(pl.lit("another text")).otherwise(pl.col("text"))
                     .alias("text")).write_parquet(edited / "catalogue.parquet")
    first = open_dataset(shop_folder).fingerprint()
    assert open_dataset(same).fingerprint() == first  # content, not the folder's path
    assert open_dataset(edited).fingerprint() != first


def test_a_model_used_on_another_catalogue_says_so(shop_folder, tmp_path, caplog):
    other = _copy(shop_folder, tmp_path, "other")
    pl.read_parquet(other / "catalogue.parquet").head(30).write_parquet(other / "catalogue.parquet")
    model = tmp_path / "model"
    model.mkdir()
    record = write_training_record(model, open_dataset(shop_folder), seconds=1.0)
    assert training_record(model) == record and record["items"] == 40
    assert check_catalogue(model, open_dataset(shop_folder)) is None
    message = check_catalogue(model, open_dataset(other))
    assert message is not None and record["catalogue_fingerprint"] in message
    assert f"crossrec retrieval train --dataset {other}" in message and message in caplog.text


def test_folder_problems_are_one_line_errors(shop_folder, tmp_path, capsys):
    tiny = _copy(shop_folder, tmp_path, "tiny")
    pl.read_parquet(tiny / "catalogue.parquet").head(3).write_parquet(tiny / "catalogue.parquet")
    (tiny / "photos.parquet").unlink()
    assert main(["retrieval", "eval", "--dataset", str(tiny), "--out-dir", str(tmp_path / "ev")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("crossrec: error:") and "3 items" in err and "Traceback" not in err
    with pytest.raises(SystemExit):  # argparse names the value
        main(["retrieval", "eval", "--dataset", str(tmp_path / "nowhere")])
    assert "neither one of grocery, ml100k, all nor an existing folder" in capsys.readouterr().err


@pytest.mark.slow  # minutes: image features, alignment trainings (closed set + 2 folds x 2 models), ranker, broker
def test_the_fixture_folder_through_every_command(shop_folder, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CROSSREC_HOME", str(tmp_path / "home"))
    folder = str(shop_folder)
    assert main(["data", "check", folder]) == 0
    assert main(["retrieval", "train", "--dataset", folder, "--epochs", "2"]) == 0
    model = tmp_path / "home" / "models" / "crossclip-shop"
    assert training_record(model)["catalogue_fingerprint"] == open_dataset(folder).fingerprint()

    report_path = tmp_path / "eval.json"
    assert main(["retrieval", "eval", "--dataset", folder, "--quick", "--out-dir", str(tmp_path / "ev"),
                 "--json", str(report_path)]) == 0
    report = json.loads(report_path.read_text())
    assert report["dataset"] == "shop" and report["protocol"]["closed_set"].startswith("photo -> item")
    for block in (report["crossclip"], report["baseline"]):
        assert {"i2t", "t2i", "i2i", "i2item"} <= set(block) and 0.0 <= block["i2t"]["acc@1"] <= 1.0
    assert report["open_set"]["folds"] == 2 and "p_value" in report["open_set"]
    assert (tmp_path / "ev" / "retrieval_eval.md").is_file() and (tmp_path / "ev" / "training_curves.png").is_file()

    capsys.readouterr()
    assert main(["retrieval", "search", "glass rake", "--dataset", folder, "-k", "3", "--json", str(tmp_path / "s.json")]) == 0
    hits = json.loads((tmp_path / "s.json").read_text())["hits"]
    catalogue = set(pl.read_parquet(shop_folder / "catalogue.parquet")["item_id"])
    assert len(hits) == 3 and {h["item_id"] for h in hits} <= catalogue
    assert "no aligned model" not in capsys.readouterr().out  # the folder's own model was found
    assert main(["retrieval", "search", "glass rake", "--dataset", folder, "-k", "3", "--knowledge",
                 "--json", str(tmp_path / "k.json")]) == 0
    known = json.loads((tmp_path / "k.json").read_text())["hits"]
    assert all(h["knowledge"] is None for h in hits) and any(h["knowledge"] for h in known)  # WordNet text, asked for
    photo = pl.read_parquet(shop_folder / "photos.parquet")["image"][0]
    assert main(["retrieval", "search", "--image", str(shop_folder / photo), "--dataset", folder, "-k", "3"]) == 0

    out = tmp_path / "demo"
    assert main(["demo", "--dataset", folder, "--quick", "--no-progress", "--out-dir", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stream"]["applied"] == 2_000 and summary["stream"]["dlq"] == 1  # the one malformed message
    assert summary["new_item"]["rank_after"] is not None and (out / "report.html").is_file()
    assert main(["recommend", "--dataset", folder, "--user", "U0000003", "-k", "5"]) == 0


def test_item_vectors_a_catalogue_brings(shop_folder, tmp_path):
    import numpy as np

    from crossrec_core.errors import DataFormatError
    from crossrec_datasets.check import check_dataset

    folder = _copy(shop_folder, tmp_path, "vectors")
    assert open_dataset(folder).item_vectors() is None  # none brought: the aligned model embeds items
    raw = np.random.default_rng(0).normal(size=(40, 16)).astype(np.float32)
    np.save(folder / "item_vectors.npy", raw)
    got = open_dataset(folder).item_vectors()
    assert got.vectors.shape == (40, 16) and np.allclose(np.linalg.norm(got.vectors, axis=1), 1.0)
    assert np.allclose(got.vectors[7], raw[7] / np.linalg.norm(raw[7]))  # row i is the i-th catalogue item
    raw[3], raw[5], raw[9] = np.nan, 0.0, np.inf
    np.save(folder / "item_vectors.npy", raw)
    report = check_dataset(folder, check_images=False)
    assert {p.code: p.count for p in report.problems} == {"nonfinite_vector": 2, "zero_vector": 1} and not report.usable
    with pytest.raises(DataFormatError, match="row 4"):
        open_dataset(folder).item_vectors()
    np.save(folder / "item_vectors.npy", raw[:39])
    assert [p.code for p in check_dataset(folder, check_images=False).problems] == ["vector_rows"]
    # the same as a Parquet column, with one short and one missing vector
    (folder / "item_vectors.npy").unlink()
    column = [list(map(float, r)) for r in np.random.default_rng(1).normal(size=(40, 8))]
    column[2], column[4] = column[2][:5], None
    cat = pl.read_parquet(folder / "catalogue.parquet")
    cat.with_columns(pl.Series("embedding", column)).write_parquet(folder / "catalogue.parquet")
    counts = {p.code: p.count for p in check_dataset(folder, check_images=False).problems}
    assert counts == {"missing_vector": 1, "vector_length": 1}


def test_rank_inputs_use_the_catalogues_vectors(shop_folder, tmp_path, monkeypatch):
    import numpy as np

    from recsys.training import load_rank_inputs

    monkeypatch.setenv("CROSSREC_HOME", str(tmp_path / "home"))  # no aligned model anywhere
    folder = _copy(shop_folder, tmp_path, "ranked")
    raw = np.random.default_rng(0).normal(size=(40, 16)).astype(np.float32)
    np.save(folder / "item_vectors.npy", raw)
    data = load_rank_inputs(str(folder))
    assert data.features is not None and data.features.fused.shape == (40, 16)
    assert np.allclose(data.features.fused[0], raw[0] / np.linalg.norm(raw[0]))


def test_search_by_query_vector_against_the_catalogues_vectors(shop_folder, tmp_path, capsys, monkeypatch):
    import numpy as np

    monkeypatch.setenv("CROSSREC_HOME", str(tmp_path / "home"))  # the index is saved under the cache

    folder = _copy(shop_folder, tmp_path, "vsearch")
    raw = np.random.default_rng(0).normal(size=(40, 16)).astype(np.float32)
    np.save(folder / "item_vectors.npy", raw)
    np.save(tmp_path / "q.npy", raw[11] * 3.0)  # any scale: the query is normalised
    assert main(["retrieval", "search", "--vector", str(tmp_path / "q.npy"), "--dataset", str(folder), "-k", "2",
                 "--json", str(tmp_path / "hits.json")]) == 0
    hits = json.loads((tmp_path / "hits.json").read_text())["hits"]
    sku = pl.read_parquet(folder / "catalogue.parquet")["item_id"][11]
    assert hits[0]["item_id"] == sku and hits[0]["score"] == pytest.approx(1.0, abs=1e-5)
    np.save(tmp_path / "bad.npy", raw[11][:8])
    assert main(["retrieval", "search", "--vector", str(tmp_path / "bad.npy"), "--dataset", str(folder)]) == 2
    assert "expected 16 finite values" in capsys.readouterr().err


class _WordHashEncoder:
    """A user's own text model stand-in: hashed bag of words, L2-normalised (the ``Encoder`` surface
    ``ItemVectorSearch`` reads: modality, dim, fingerprint, encode)."""

    modality, dim, fingerprint = "text", 64, "test:word-hash:64"

    def encode(self, texts, batch_size: int = 32, progress: bool = False):
        import zlib

        import numpy as np

        out = np.zeros((len(texts), self.dim), np.float32)
        for r, text in enumerate(texts):
            for word in str(text).lower().split():
                out[r, zlib.crc32(word.encode()) % self.dim] += 1.0
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


def test_text_queries_through_the_query_encoder_of_the_catalogues_vectors(shop_folder, tmp_path, monkeypatch):
    """Vectors made by the user's model from the item texts; a text query through that model finds
    the item; the index is built once and reloaded; a query encoder of another width is refused."""
    import numpy as np

    import retrieval.search as search_mod
    from retrieval.search import ItemVectorSearch

    monkeypatch.setenv("CROSSREC_HOME", str(tmp_path / "home"))
    folder = _copy(shop_folder, tmp_path, "qenc")
    cat = pl.read_parquet(folder / "catalogue.parquet")
    texts = [f"{t} {x}" for t, x in zip(cat["title"], cat["text"])]
    encoder = _WordHashEncoder()
    np.save(folder / "item_vectors.npy", encoder.encode(texts))
    search = ItemVectorSearch(open_dataset(folder), query_encoder=encoder)
    hits = search.search_text(texts[7], k=3)
    assert hits[0].metadata["item_id"] == cat["item_id"][7] and hits[0].score == pytest.approx(1.0, abs=1e-5)
    saved = list((tmp_path / "home" / "cache" / "item_vectors").iterdir())
    assert len(saved) == 1

    def no_build(*a, **k):
        raise AssertionError("the saved index should have been loaded")

    monkeypatch.setattr(search_mod, "create_index", no_build)
    again = ItemVectorSearch(open_dataset(folder), query_encoder=encoder)
    assert [h.item_id for h in again.search_text(texts[7], k=3)] == [h.item_id for h in hits]
    with pytest.raises(ValueError, match="no query_encoder"):
        ItemVectorSearch(open_dataset(folder)).search_text("red")
    narrow = _WordHashEncoder()
    narrow.dim = 32
    with pytest.raises(ValueError, match="makes 32-d vectors; the item vectors .* are 64-d"):
        ItemVectorSearch(open_dataset(folder), query_encoder=narrow)


@pytest.mark.slow  # loads all-MiniLM-L6-v2
def test_query_encoder_checkpoint_path_through_the_cli(shop_folder, tmp_path, monkeypatch, capsys):
    """``--query-encoder DIR``: a local sentence-transformers checkpoint (the user's model, here
    all-MiniLM-L6-v2 from its folder) encodes the text query against the vectors it made."""
    import numpy as np

    from retrieval.encoders import SentenceTransformerEncoder
    from retrieval.encoders.text import minilm_path

    monkeypatch.setenv("CROSSREC_HOME", str(tmp_path / "home"))
    folder = _copy(shop_folder, tmp_path, "qenc-cli")
    cat = pl.read_parquet(folder / "catalogue.parquet")
    texts = [f"{t}. {x}" for t, x in zip(cat["title"], cat["text"])]
    np.save(folder / "item_vectors.npy", SentenceTransformerEncoder(minilm_path()).encode(texts))
    assert main(["retrieval", "search", texts[5], "--dataset", str(folder), "--query-encoder", str(minilm_path()),
                 "-k", "3", "--json", str(tmp_path / "hits.json")]) == 0
    hits = json.loads((tmp_path / "hits.json").read_text())["hits"]
    assert hits[0]["item_id"] == cat["item_id"][5] and hits[0]["score"] == pytest.approx(1.0, abs=1e-4)
    assert "text encoded by st:" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="give exactly one of a query text"):
        main(["retrieval", "search", "--dataset", str(folder), "--query-encoder", str(minilm_path())])
