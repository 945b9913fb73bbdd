"""``crossrec data check``: a clean folder passes; a corrupted copy has every problem counted."""

from __future__ import annotations

import json
import shutil

import polars as pl
import pytest

from crossrec.cli import main
from crossrec_datasets.check import check_dataset


def test_clean_folder_is_usable(shop_folder, tmp_path, capsys):
    report = check_dataset(shop_folder)
    assert report.usable and report.problems == ()
    assert report.rows == {"catalogue": 40, "photos": 40, "interactions": 2_000, "users": 30}
    assert main(["data", "check", str(shop_folder), "--json", str(tmp_path / "r.json")]) == 0
    assert json.loads((tmp_path / "r.json").read_text())["usable"] is True


@pytest.fixture()
def corrupted(shop_folder, tmp_path):
    folder = tmp_path / "bad"
    shutil.copytree(shop_folder, folder)
    cat = pl.read_parquet(folder / "catalogue.parquet")
    cat = pl.concat([cat, cat.head(1)]).with_columns(                            # one id twice (an added row)
        pl.when(pl.int_range(pl.len()).is_in([3, 4])).then(pl.lit("")).otherwise(pl.col("title")).alias("title"),
        pl.when(pl.int_range(pl.len()).is_in([3, 4])).then(pl.lit("")).otherwise(pl.col("text")).alias("text"),
        pl.when(pl.int_range(pl.len()) == 5).then(pl.lit("cheap")).otherwise(pl.col("price").cast(pl.Utf8)).alias("price"),
    )
    cat.write_parquet(folder / "catalogue.parquet")
    (folder / cat["image"][6]).write_bytes(b"\x89PNG\r\n\x1a\n truncated")       # corrupt image
    (folder / cat["image"][7]).unlink()                                          # missing image
    inter = pl.read_parquet(folder / "interactions.parquet")
    row = pl.int_range(pl.len())
    inter = inter.with_columns(
        pl.when(row < 3).then(pl.lit("SKU-GONE")).otherwise(pl.col("item_id")).alias("item_id"),
        pl.when((row >= 10) & (row < 14)).then(pl.col("timestamp") * 1000).otherwise(pl.col("timestamp")).alias("timestamp"),
        pl.when((row >= 20) & (row < 22)).then(pl.lit("like")).otherwise(pl.col("kind")).alias("kind"),
    )
    inter.write_parquet(folder / "interactions.parquet")
    photos = pl.read_parquet(folder / "photos.parquet")
    photos.with_columns(pl.when(pl.int_range(pl.len()) == 0).then(pl.lit("SKU-X")).otherwise(pl.col("item_id"))
                        .alias("item_id")).write_parquet(folder / "photos.parquet")
    users = pl.read_parquet(folder / "users.parquet").with_columns(pl.lit("Zoë").alias("name"))
    (folder / "users.parquet").unlink()
    users.write_csv(folder / "users.csv")
    raw = (folder / "users.csv").read_bytes().replace("Zoë".encode(), "Zoë".encode("latin-1"))
    (folder / "users.csv").write_bytes(raw)                                      # 30 lines not UTF-8
    return folder


def test_corrupted_copy_every_problem_counted(corrupted, tmp_path, capsys):
    report = check_dataset(corrupted)
    found = {(p.table, p.code): p for p in report.problems}
    expected = {
        ("catalogue", "duplicate_id"): 1, ("catalogue", "empty_text"): 2, ("catalogue", "wrong_type"): 1,
        ("catalogue", "corrupt_image"): 1, ("catalogue", "missing_image"): 1, ("photos", "unknown_item"): 1,
        ("users", "encoding"): 30, ("interactions", "bad_timestamp"): 4, ("interactions", "bad_kind"): 2,
        ("interactions", "unknown_item"): 3,
    }
    for key, count in expected.items():
        assert key in found, f"{key} not reported: {report.format()}"
        assert found[key].count == count, (key, found[key])
        assert found[key].examples
    assert "SKU-GONE" in found[("interactions", "unknown_item")].examples[0]
    assert not report.usable
    assert "row 6: price='cheap'" in found[("catalogue", "wrong_type")].examples[0]
    assert main(["data", "check", str(corrupted), "--json", str(tmp_path / "bad.json")]) == 1
    out = capsys.readouterr().out
    assert "NOT usable" in out and "duplicate_id" in out
    assert len(json.loads((tmp_path / "bad.json").read_text())["problems"]) == len(report.problems)


def test_unreadable_file_and_missing_folder(tmp_path, shop_folder):
    folder = tmp_path / "w"
    shutil.copytree(shop_folder, folder)
    (folder / "interactions.parquet").write_text("user_id,item_id\nu,i\n")  # CSV text under a .parquet name
    report = check_dataset(folder, check_images=False)
    (p,) = [p for p in report.problems if p.code == "unreadable"]
    assert p.table == "interactions" and "interactions.parquet cannot be read as parquet" in p.message and p.error
    assert not check_dataset(tmp_path / "nope").usable
