"""`crossrec creative` end to end on grocery (shopper-simulator user, a toy language model whose
garbage output exercises the template fallback), `verify`, and the errors."""

from __future__ import annotations

import json

import pytest

from crossrec.cli import main
from crossrec.creative import user_taste
from generation.catalogue import grocery_items
from test_llm import toy_lm_dir  # noqa: F401  (fixture)


@pytest.fixture()
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("CROSSREC_HOME", str(tmp_path / "home"))
    return tmp_path


def test_shopper_user_taste():
    items = grocery_items()
    taste = user_taste("grocery", "3", items)
    assert taste.liked and taste.profile_version > 0 and "shopper" in taste.source
    assert user_taste("grocery", "3", items) == taste  # the simulator is seeded
    explicit = user_taste("grocery", None, items, liked=["1", "2"])
    assert [e.item.item_id for e in explicit.liked] == ["1", "2"] and explicit.profile_version is None


def test_creative_make_verify_and_errors(home, toy_lm_dir, capsys):  # noqa: F811
    out = home / "out"
    argv = ["creative", "--dataset", "grocery", "--user", "3", "--item", "5", "--out", str(out), "--lm", str(toy_lm_dir),
            "--variants", "2", "--json", str(home / "report.json")]
    assert main(argv) == 0
    copy = json.loads((out / "copy.json").read_text())
    assert copy["source"] == "template" and "LM candidates failed" in copy["fallback_reason"]
    report = json.loads((home / "report.json").read_text())
    assert report["taste"]["liked"] > 0 and not report["cache_hit"]
    assert main(argv) == 0 and json.loads((home / "report.json").read_text())["cache_hit"]
    capsys.readouterr()
    assert main(["creative", "verify", str(out / "poster.png")]) == 0
    assert "made by crossrec" in capsys.readouterr().out
    photo = next(i for i in grocery_items().values()).image
    assert main(["creative", "verify", str(photo)]) == 0
    assert "not ours" in capsys.readouterr().out
    assert main(["creative", "--dataset", "grocery", "--user", "999", "--item", "5", "--out", str(out)]) == 2
    assert main(["creative", "--dataset", "grocery", "--item", "nope", "--out", str(out)]) == 2
    assert main(["creative", "--lm", str(home / "missing"), "--item", "5", "--dataset", "grocery", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "999" in err and "'nope'" in err and "missing" in err
    # a poster scorer that is not a saved model: refused before the eval starts, nothing written
    assert main(["creative", "eval", "--quick", "--json", str(home / "eval.json"),
                 "--poster-scorer", str(home / "no-model")]) == 2
    assert "no-model" in capsys.readouterr().err and not (home / "eval.json").exists()
