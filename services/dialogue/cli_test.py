"""`kmono chat --local`: a one-shot question streams a cited answer, the interactive mode attaches a file and
answers from it, and `--list` shows the sessions the runs kept in the data directory."""

from __future__ import annotations

import builtins

import pytest

from libs.cli.main import main
from libs.encoders import TextEncoder
from services.dialogue.cli import register

SPECS = "Battery: 5000 mAh\nWeight: 187 g\nPrice: 2999 yuan\n"


@pytest.fixture(scope="module")
def encoder():
    return TextEncoder.from_pretrained()


def kmono_chat(*argv: str) -> int:
    return main(["chat", *argv], registrars=[("chat", register)])


def test_one_shot_interactive_and_list(tmp_path, capsys, monkeypatch, encoder):
    monkeypatch.setattr(TextEncoder, "from_pretrained", lambda *a, **k: encoder)  # load the MiniLM once
    specs = tmp_path / "Aurora X200.txt"
    specs.write_text(SPECS)
    data = ["--local", "--data-dir", str(tmp_path / "var"), "--user", "ana"]
    assert kmono_chat(*data, "--new", "--attach", str(specs), "How heavy is the Aurora X200?") == 0
    out = capsys.readouterr()
    assert "187 g" in out.out and "[1] Aurora X200 (" in out.out and "session " in out.err

    lines = iter(["/attach " + str(specs), "What is the price of the Aurora X200?", "/quit"])
    monkeypatch.setattr(builtins, "input", lambda prompt="": next(lines))
    assert kmono_chat(*data, "--new") == 0
    out = capsys.readouterr()
    assert "2999 yuan" in out.out and "attached" in out.err

    assert kmono_chat("--local", "--data-dir", str(tmp_path / "var"), "--list", "--user", "ana") == 0
    listing = capsys.readouterr().out.splitlines()
    assert len(listing) == 2 and "2 turns" in listing[0] and "2 turns" in listing[1]
    assert kmono_chat(*data, "--session", "no-such-session", "hi") == 2
    assert "NOT_FOUND" in capsys.readouterr().err
