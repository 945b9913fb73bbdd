"""``crossrec demo``: argument validation (fast) and one quick end-to-end run (slow: it trains)."""

from __future__ import annotations

import argparse
import json

import pytest

from crossrec.cli_demo import add_parser
from crossrec.demo import NEW_ITEM_ID, DemoOptions, ranker_dir, run_demo
from streaming.broker import Broker, BrokerConfig


def parse(argv):
    parser = argparse.ArgumentParser(prog="crossrec")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_parser_defaults_and_options():
    args = parse(["demo"])
    assert (args.data_dir, args.out_dir, args.quick, args.retrain, args.events, args.user) == \
        (None, "runs/demo", False, False, None, None)
    args = parse(["demo", "--quick", "--retrain", "--events", "300", "--user", "7", "--out-dir", "o", "--data-dir", "d"])
    assert (args.quick, args.retrain, args.events, args.user, args.out_dir, args.data_dir) == (True, True, 300, 7, "o", "d")


@pytest.mark.parametrize("argv", [["demo", "--events", "0"], ["demo", "--events", "many"], ["demo", "--user", "-3"],
                                  ["demo", "--unknown"]])
def test_parser_rejects_bad_arguments(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        parse(argv)
    assert exc.value.code == 2
    assert "error" in capsys.readouterr().err


@pytest.mark.parametrize("kwargs, names", [
    ({"events": 0}, "events=0"), ({"events": True}, "events=True"), ({"events": 2.5}, "events=2.5"),
    ({"user_id": -1}, "user_id=-1"), ({"out_dir": " "}, "out_dir=' '"),
    ({"quick": True, "full_training": True}, "quick=True and full_training=True"),
])
def test_options_name_the_bad_value(kwargs, names):
    with pytest.raises(ValueError, match=names):
        DemoOptions(**kwargs)


def test_missing_data_dir_fails_before_any_work(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match="data_dir"):
        DemoOptions(data_dir=str(missing))
    assert not missing.exists()


def test_quick_mode_shrinks_the_work():
    full, quick = DemoOptions(), DemoOptions(quick=True)
    assert quick.n_events < full.n_events
    assert DemoOptions(quick=True, events=123).n_events == 123


def test_ranker_dir_follows_crossrec_home(tmp_path, monkeypatch):
    monkeypatch.setenv("CROSSREC_HOME", str(tmp_path))
    assert ranker_dir() == tmp_path / "models" / "ranker-ml100k"


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """One quick demo into a fresh CROSSREC_HOME: trains every model, then streams."""
    home, out = tmp_path_factory.mktemp("home"), tmp_path_factory.mktemp("demo")
    mp = pytest.MonkeyPatch()
    mp.setenv("CROSSREC_HOME", str(home))
    lines: list[str] = []
    try:
        report = run_demo(DemoOptions(out_dir=str(out), quick=True, events=3000, progress=False), echo=lines.append)
        yield report, out, lines, home
    finally:
        mp.undo()


@pytest.mark.slow
@pytest.mark.broker
def test_quick_demo_end_to_end(quick_run):
    report, out, lines, _ = quick_run
    assert [s.name for s in report.steps][0].startswith("retrieval") and len(report.steps) == 6
    assert all("trained" in s.note for s in report.steps[:3])  # a fresh home: every model was trained
    text, image = report.searches
    assert text.space == "item" and len(text.hits) == 5 and image.space == "text" and image.target_id is not None
    st = report.stream
    assert st.published == 3000 and st.applied == 3000 and st.consumed == 3001 and st.dlq == 1 and st.lag == 0
    c = report.change
    assert c.after and c.clicked_item not in [i.item_id for i in c.after]  # clicked: now seen and excluded
    assert [i.item_id for i in c.after] != [i.item_id for i in c.before]
    assert report.new_item.rank_before is None and report.new_item.rank_after is not None
    assert report.new_item.hits_after[report.new_item.rank_after - 1].item_id == NEW_ITEM_ID
    # creatives: the demo's user first (their top items after the click), then two more users, and a trailer
    assert report.creatives and report.creatives[0].user_id == c.user_id
    assert [cr.item_id for cr in report.creatives[:2]] == [i.item_id for i in c.after[:2]]
    assert len({cr.user_id for cr in report.creatives}) == 3 and not any(cr.cache_hit for cr in report.creatives)
    assert all((out / "creatives" / str(cr.user_id) / str(cr.item_id) / "poster.png").is_file() for cr in report.creatives)
    assert report.trailer is not None and (out / "creatives" / str(c.user_id)).is_dir()
    page = (out / "report.html").read_text()
    assert "<h2>Creatives</h2>" in page and "trailer.mp4" in page
    saved = json.loads((out / "summary.json").read_text())
    assert saved["stream"]["applied"] == st.applied and len(saved["creatives"]) == len(report.creatives)
    assert not Broker(BrokerConfig(data_dir=str(out / "broker"))).status().running
    assert "summary" in report.summary() and any("broker up" in line for line in lines)
    assert any("template copy" in line for line in lines)  # the console says which lighter settings
    assert [line for line in lines if line.startswith("\n[")][-1].startswith("\n[6/6]")


@pytest.mark.slow
@pytest.mark.broker
def test_second_run_reuses_models_and_creatives(quick_run, monkeypatch):
    first, out, _, home = quick_run
    monkeypatch.setenv("CROSSREC_HOME", str(home))
    lines: list[str] = []
    again = run_demo(DemoOptions(out_dir=str(out), quick=True, events=3000, progress=False), echo=lines.append)
    assert all("reused" in s.note for s in again.steps[:3])
    assert [(c.user_id, c.item_id) for c in again.creatives] == [(c.user_id, c.item_id) for c in first.creatives]
    assert all(c.cache_hit for c in again.creatives) and again.trailer.reused  # same slice: same profile versions
    assert [c.headline for c in again.creatives] == [c.headline for c in first.creatives]


class _Interrupt(KeyboardInterrupt):
    pass


@pytest.mark.slow
@pytest.mark.broker
def test_interrupted_demo_reuses_models_and_stops_its_broker(quick_run, tmp_path, monkeypatch):
    monkeypatch.setenv("CROSSREC_HOME", str(quick_run[3]))
    lines: list[str] = []

    def echo(line: str) -> None:
        lines.append(line)
        if "broker up" in line:
            raise _Interrupt  # Ctrl-C right after the broker started

    with pytest.raises(_Interrupt):
        run_demo(DemoOptions(out_dir=str(tmp_path), quick=True, events=500, progress=False), echo=echo)
    assert sum("reusing" in line for line in lines) == 3  # no model was retrained
    status = Broker(BrokerConfig(data_dir=str(tmp_path / "broker"))).status()
    assert status.tansu_pid is None and status.weed_pid is None and not status.running
