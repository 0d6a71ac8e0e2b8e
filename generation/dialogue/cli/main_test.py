"""`kmono dialogue eval` end to end on small held-out sets: every part prints its table and lands in the JSON and
the PNG; the committed memory's recall with memory beats recall without it."""

import argparse
import json

import pytest

from generation.dialogue.cli import register


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="kmono")
    register(parser.add_subparsers())
    args = parser.parse_args(["dialogue", *argv])
    return args.func(args)


def test_eval_prints_every_part_and_writes_json_and_png(tmp_path, capsys):
    argv = ["eval", "--seeds", "101", "--sessions", "2", "--dialogues", "20", "--stories", "2"]
    assert run([*argv, "--out-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for title in ("Knowledge-grounded Q&A", "Contextformer memory", "Dual chain-of-thought"):
        assert title in out
    report = json.loads((tmp_path / "dialogue_eval.json").read_text())
    assert set(report) == {"knowledge", "memory", "dcot"}
    assert report["knowledge"]["seeds"] == [101]
    assert report["memory"]["with_memory"]["recall_mean"] > report["memory"]["window_only"]["recall_mean"]
    assert report["dcot"]["questions_per_seed"] == 6
    assert (tmp_path / "dialogue_eval.png").read_bytes()[:4] == b"\x89PNG"


def test_eval_of_one_part_leaves_the_others_out(tmp_path, capsys):
    assert run(["eval", "--parts", "dcot", "--seeds", "0", "--stories", "1", "--out-dir", str(tmp_path)]) == 0
    assert "Knowledge-grounded" not in capsys.readouterr().out
    assert list(json.loads((tmp_path / "dialogue_eval.json").read_text())) == ["dcot"]


def test_eval_of_a_missing_memory_says_how_to_train_one(tmp_path):
    with pytest.raises(SystemExit, match="kmono dialogue train-memory --out"):
        run(["eval", "--parts", "memory", "--memory-model", str(tmp_path), "--out-dir", str(tmp_path)])
