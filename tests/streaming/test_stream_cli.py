import argparse
import json

import pytest

from crossrec.cli_stream import add_parser
from streaming.features import OnlineFeatureStore


def _run(argv) -> int:
    parser = argparse.ArgumentParser(prog="crossrec")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_broker_status_of_an_empty_dir_exits_1(tmp_path, capsys):
    assert _run(["broker", "status", "--data-dir", str(tmp_path)]) == 1
    assert json.loads(capsys.readouterr().out)["healthy"] is False


def test_bad_arguments_are_refused():
    with pytest.raises(SystemExit):
        _run(["stream", "replay", "--rate", "0"])
    with pytest.raises(SystemExit):
        _run(["stream", "replay", "--rate", "5", "--speed", "5"])


@pytest.mark.broker
def test_replay_then_consume(broker, tmp_path, capsys):
    common = ["--bootstrap", broker.bootstrap, "--topic-prefix", "cli-test"]
    assert _run(["stream", "replay", *common, "--limit", "200"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["sent"] == 200
    assert _run(["stream", "consume", *common, "--store", str(tmp_path / "p.db"), "--features", str(tmp_path / "f.db"),
                 "--workers", "2", "--idle-timeout", "3"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert (stats["consumed"], stats["applied"], stats["dlq"]) == (200, 200, 0)
    top = OnlineFeatureStore(tmp_path / "f.db").top_items("rating", 1000)
    assert sum(n for _, n in top) == 200
