"""One dataset interface over the named data sets, a user's folder and RecBole atomic files."""

from __future__ import annotations

import json
import shutil

import polars as pl
import pytest

from crossrec_core.errors import DataFormatError, DatasetNotFoundError, UnknownIdError
from crossrec_datasets import IdMap, Positives, RecBoleDataset, open_dataset
from crossrec_datasets.schema import CatalogueRow, InteractionRow, polars_schema


def test_folder_dataset(shop_folder):
    ds = open_dataset(str(shop_folder))
    cat = ds.catalogue().collect()
    assert cat.height == 40 and cat.schema["item_id"] == pl.Utf8
    assert all(pl.Series(cat["image"]).map_elements(lambda p: __import__("os").path.isabs(p), return_dtype=pl.Boolean))
    inter = ds.interactions().collect()
    assert inter.height == 2_000 and inter.schema["timestamp"] == pl.Int64
    assert ds.photos().collect().height == 40 and ds.users().collect().height == 30
    # string SKUs get dense int64 ids that map back to the user's ids
    assert not ds.items.identity and len(ds.items) == 40
    internal = ds.items.internal(["SKU0000003", "SKU0000000"])
    assert internal == [3, 0] and ds.items.external(internal) == ["SKU0000003", "SKU0000000"]
    mapped = inter.with_columns(ds.items.to_internal("item_id").alias("item"))
    assert mapped["item"].null_count() == 0 and mapped["item"].dtype == pl.Int64
    with pytest.raises(UnknownIdError, match="item_id='nope'"):
        ds.items.internal(["nope"])


def test_positives_setting(shop_folder):
    inter = open_dataset(shop_folder).interactions().collect()
    default = inter.filter(Positives().expr())
    assert set(default["kind"].unique()) <= {"purchase", "click", "rating"}
    assert (default.filter(pl.col("kind") == "rating")["value"] >= 4).all()
    only_purchases = inter.filter(Positives(kinds=("purchase",), min_rating=None).expr())
    assert set(only_purchases["kind"].unique()) == {"purchase"}
    with pytest.raises(ValueError):
        Positives(kinds=("like",))


def test_id_map_round_trip(tmp_path):
    m = IdMap.build("item", pl.Series(["b", "a", "c", "a"]))
    m.save(tmp_path / "items.parquet")
    back = IdMap.load(tmp_path / "items.parquet")
    assert back.internal(["a", "c"]) == [0, 2] and not back.identity
    assert IdMap.build("item", pl.Series([10, 3])).internal(["10"]) == [10]  # integer ids stay as they are


def test_schema_is_pydantic_and_json_schema():
    schema = InteractionRow.model_json_schema()
    assert set(schema["required"]) == {"user_id", "item_id", "timestamp", "kind"}
    assert polars_schema("catalogue")["price"] == pl.Float64 and "item_id" in CatalogueRow.model_fields
    json.dumps(schema)


def test_named_datasets():
    ml = open_dataset("ml100k")
    assert ml.items.identity and ml.catalogue().collect().height == 1682
    assert ml.interactions().collect().filter(ml.positives.expr()).height == 99_815  # every rating, as published
    g = open_dataset("grocery")
    assert g.catalogue().collect().height == 81 and g.photos().collect().height == 5_421
    assert g.interactions().collect().height == 0
    # the item texts the aligned model reads are the loaders' own (same cached features, same figures)
    from crossrec_datasets import load_grocery, load_movielens

    assert ml.item_texts() == load_movielens().item_texts()
    assert g.item_texts() == [p.description for p in load_grocery().products]


def test_mixed_formats_and_missing_columns(tmp_path, shop_folder):
    folder = tmp_path / "mixed"
    shutil.copytree(shop_folder, folder)
    pl.read_parquet(folder / "catalogue.parquet").drop("image").write_csv(folder / "catalogue.csv")
    with pytest.raises(DataFormatError, match="catalogue.csv, catalogue.parquet|catalogue.parquet, catalogue.csv"):
        open_dataset(folder)
    (folder / "catalogue.csv").unlink()
    pl.read_parquet(folder / "interactions.parquet").drop("kind").write_parquet(folder / "interactions.parquet")
    with pytest.raises(DataFormatError, match=r"interactions.parquet: missing required column\(s\) \['kind'\]"):
        open_dataset(folder).interactions()
    with pytest.raises(DatasetNotFoundError, match="neither a data set name"):
        open_dataset(tmp_path / "nowhere")


def test_recbole_atomic_files(tmp_path):
    (tmp_path / "toy.inter").write_text("user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
                                        "u1\ti1\t5\t100\nu1\ti2\t3\t200\nu2\ti1\t4\t150\n")
    (tmp_path / "toy.item").write_text("item_id:token\tmovie_title:token_seq\tgenre:token_seq\n"
                                       "i1\tAlien\tHorror SciFi\ni2\tHeat\tCrime\n")
    (tmp_path / "toy.user").write_text("user_id:token\tage:token\nu1\t30\nu2\t41\n")
    ds = open_dataset(tmp_path)
    assert isinstance(ds, RecBoleDataset) and ds.name == "toy"
    cat = ds.catalogue().collect()
    assert cat["title"].to_list() == ["Alien", "Heat"] and cat["category"].to_list() == ["Horror", "Crime"]
    inter = ds.interactions().collect()
    assert inter["kind"].unique().to_list() == ["rating"] and inter["timestamp"].to_list() == [100, 200, 150]
    assert inter.filter(ds.positives.expr()).height == 2  # ratings >= 4
    assert ds.users().collect().height == 2
