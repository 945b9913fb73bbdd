from __future__ import annotations

import argparse
import json

import pytest

from crossrec.cli_rank import add_parser


def parse(argv):
    parser = argparse.ArgumentParser(prog="crossrec")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_parser_registers_the_commands(tmp_path):
    assert parse(["rank", "eval", "--dataset", "ml100k", "--json", "x.json"]).json == "x.json"
    assert parse(["rank", "train", "--no-multimodal"]).no_multimodal
    assert parse(["rank", "train", "--n-models", "2"]).n_models == 2
    assert parse(["rank", "eval", "--json", "x.json", "--seeds", "3"]).seeds == 3
    assert parse(["rank", "bench", "--json", "b.json"]).rank_command == "bench"
    with pytest.raises(SystemExit):
        parse(["rank", "eval", "--dataset", "ml1m", "--json", "x.json"])  # neither a name nor a folder
    assert parse(["rank", "eval", "--dataset", str(tmp_path), "--json", "x.json"]).dataset == str(tmp_path)


def test_recommend_command_reads_a_saved_engine(engine, split, tmp_path, capsys):
    engine.save_pretrained(tmp_path / "model")
    user = int(split.train["user_id"][0])
    args = parse(["recommend", "--user", str(user), "-k", "5", "--model", str(tmp_path / "model"),
                  "--json", str(tmp_path / "rec.json")])
    assert args.func(args) == 0
    out = json.loads((tmp_path / "rec.json").read_text())
    expected = engine.recommend(user, k=5)
    assert out["item_ids"] == expected.item_ids.tolist() and not out["cold_start"]
    args = parse(["recommend", "--user", "999999", "-k", "3", "--model", str(tmp_path / "model")])
    assert args.func(args) == 0
    assert "popularity fallback" in capsys.readouterr().out
