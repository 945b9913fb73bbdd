"""The top-level handler: the engine's errors become one line and exit 2; a bug is not disguised."""

from __future__ import annotations

import pytest

from crossrec.cli import main


def test_bad_input_is_one_line(tmp_path, capsys):
    assert main(["recommend", "--model", str(tmp_path / "none"), "--user", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("crossrec: error:") and len(err.strip().splitlines()) == 1


def test_a_type_error_is_a_bug_not_a_user_error(monkeypatch):
    import crossrec.cli_data as cli_data

    def broken(args):
        raise TypeError("unsupported operand")

    monkeypatch.setattr(cli_data, "_synth", broken)
    with pytest.raises(TypeError, match="unsupported operand"):
        main(["data", "synth", "--out", "x", "--items", "1", "--users", "1", "--interactions", "1"])
