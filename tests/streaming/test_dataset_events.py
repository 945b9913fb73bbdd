"""A dataset folder replays as user events (the CLI's `stream replay --source FOLDER`)."""

from __future__ import annotations

import argparse

import polars as pl

from streaming.replay import dataset_events, movielens_events


def test_folder_interactions_as_events(shop_folder):
    events = dataset_events(str(shop_folder))
    raw = pl.read_parquet(shop_folder / "interactions.parquet")
    assert len(events) == raw.height and {e.kind for e in events} == set(raw["kind"].unique())
    assert all(e.event_id.startswith("shop:") for e in events)
    assert [e.timestamp for e in events] == sorted(e.timestamp for e in events)
    assert all((e.value is not None) == (e.kind == "rating") for e in events)
    assert len({e.event_id for e in events}) == len(events) or raw.select("user_id", "item_id", "timestamp").is_duplicated().any()


def test_movielens_events_unchanged():
    events = movielens_events(limit=50)
    assert events[0].event_id.startswith("ml100k:") and all(e.kind == "rating" and e.value for e in events)


def test_cli_accepts_a_folder_source(shop_folder):
    from crossrec.cli_stream import add_parser

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    assert parser.parse_args(["stream", "replay", "--source", str(shop_folder)]).source == str(shop_folder)
    assert parser.parse_args(["stream", "replay", "--source", "shoppers"]).source == "shoppers"
