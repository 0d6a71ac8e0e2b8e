import json
import sys

import pyarrow.parquet as pq

from libs.cli.main import main
from libs.encoders.cli import register

REGISTRARS = [("encode", register)]


def _manifest(tmp_path, lines):
    path = tmp_path / "m.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    return path


def test_encode_subcommand_writes_parquet_and_resumes(tmp_path, capsys):
    manifest = _manifest(
        tmp_path, [{"id": f"s{i}", "transcript": "hello world", "comments": ["wow"]} for i in range(3)]
    )
    out = tmp_path / "emb.parquet"
    argv = [
        "encode",
        str(manifest),
        "--out",
        str(out),
        "--tiny",
        "--no-progress",
        "--cache-dir",
        str(tmp_path / "c"),
    ]
    assert main(argv, registrars=REGISTRARS) == 0
    assert pq.read_table(out).num_rows == 3
    assert "3 encoded" in capsys.readouterr().err
    assert main(argv, registrars=REGISTRARS) == 0
    assert "0 encoded, 3 already there" in capsys.readouterr().err
    assert pq.read_table(out).num_rows == 3


def test_usage_errors_exit_2_with_one_line(tmp_path, capsys):
    manifest = _manifest(tmp_path, [{"id": "a", "video": "missing.mp4"}])
    out = str(tmp_path / "o.parquet")
    assert main(["encode", str(manifest), "--out", out], registrars=REGISTRARS) == 2
    assert "--vision-model is required" in capsys.readouterr().err
    assert main(["encode", str(tmp_path / "nope.jsonl"), "--out", out, "--tiny"], registrars=REGISTRARS) == 2
    assert "manifest not found" in capsys.readouterr().err
    assert (
        main(
            ["encode", str(manifest), "--out", out, "--tiny", "--no-progress", "--no-cache"],
            registrars=REGISTRARS,
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "manifest line 1 (id 'a'): video: no such file" in err and "--on-error skip" in err
    assert (
        main(["encode", str(manifest), "--out", out, "--tiny", "--speech-tokens", "1"], registrars=REGISTRARS)
        == 2
    )


def test_cli_module_does_not_import_torch():
    import subprocess

    code = "import sys, libs.encoders.cli, libs.encoders; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
