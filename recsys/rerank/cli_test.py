import json

from libs.cli.main import main
from recsys.rerank.cli import register
from recsys.rerank.models import load_model_folder


def kmono(*argv: str) -> int:
    return main(list(argv), registrars=[("rerank", register)])


def test_train_then_eval_prints_the_table_and_writes_json_and_plots(tmp_path, capsys):
    model = tmp_path / "model"
    assert kmono("rerank", "train", "--preset", "tiny", "--out", str(model)) == 0
    assert load_model_folder(model).version == "dual-rerank-seed0"
    assert "trained dual-rerank-seed0" in capsys.readouterr().out
    out = tmp_path / "eval"
    argv = ["--model", str(model), "--parts", "simulator", "--seeds", "0", "--requests", "16"]
    assert kmono("rerank", "eval", *argv, "--out-dir", str(out)) == 0
    printed = capsys.readouterr().out
    assert "score-and-sort" in printed and "Claims of the issue" in printed
    results = json.loads((out / "rerank_eval.json").read_text())
    assert results["simulator"]["grid"]["optimum"]["pct"][0] == 100.0
    assert (out / "rerank_pages.png").stat().st_size > 0
