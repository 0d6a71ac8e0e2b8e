import json
import os
import subprocess
import sys
from pathlib import Path

from libs.cli.main import build_parser, main
from libs.modelstore.cli import register
from libs.modelstore.testing import write_transformers_folder

REPO_ROOT = Path(__file__).absolute().parents[2]  # not resolved: under Bazel this is the runfiles tree
REGISTRARS = [("models", register)]
_MAIN = "import sys; from libs.cli.main import main; sys.exit(main())"


def _kmono(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`kmono models ...` in a fresh interpreter, through the installed entry points, as an operator runs it."""
    return subprocess.run(
        [sys.executable, "-c", _MAIN, "models", *args],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT), **(env or {})},
    )


def test_pull_verify_list_end_to_end(tmp_path):
    models = str(tmp_path / "models")
    pulled = _kmono("pull", "mvideo", "--dir", models)
    assert pulled.returncode == 0, pulled.stderr
    assert f"staged mvideo -> {models}/mvideo (diffusers" in pulled.stdout
    assert (
        f"kmono serve video --engine-path {models}/mvideo (or KMONO_VIDEO_ENGINE_PATH={models}/mvideo)"
        in pulled.stdout
    )

    verified = _kmono("verify", "--dir", models)
    assert verified.returncode == 0 and verified.stdout.startswith("ok mvideo:"), verified.stderr

    weights = tmp_path / "models" / "mvideo" / "transformer" / "diffusion_pytorch_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    (tmp_path / "models" / "mvideo" / "scheduler" / "scheduler_config.json").unlink()
    damaged = _kmono("verify", "--dir", models, "mvideo")
    assert damaged.returncode == 1
    assert "mvideo: transformer/diffusion_pytorch_model.safetensors: sha256 mismatch" in damaged.stderr
    assert "mvideo: scheduler/scheduler_config.json: missing" in damaged.stderr
    assert "Traceback" not in damaged.stderr

    listed = _kmono("list", "--dir", models, "--json")
    assert listed.returncode == 0, listed.stderr
    rows = {row["name"]: row for row in json.loads(listed.stdout)}
    assert rows["mvideo"]["state"] == "damaged" and rows["sam2"]["state"] == "not staged"
    assert {"command": "kmono serve masks", "flag": "--model-sam2", "env": "KMONO_MASKS_SAM2_MODEL"} in rows[
        "sam2"
    ]["uses"]


def test_unreachable_hub_is_one_line_and_exit_1(tmp_path):
    result = _kmono("pull", "sam2", "--dir", str(tmp_path), env={"HF_HUB_OFFLINE": "1"})
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("kmono models: error: sam2: cannot reach the Hugging Face hub")
    assert "kmono models pull sam2 --from ./sam2.1-hiera-tiny --dir" in lines[0]


def test_pull_a_local_directory_through_main(tmp_path, capsys):
    source = write_transformers_folder(tmp_path / "grounding-dino-tiny")  # named like the hub repository
    models = tmp_path / "models"
    assert main(["models", "pull", str(source), "--dir", str(models)], registrars=REGISTRARS) == 0
    out = capsys.readouterr().out
    assert f"staged grounding-dino -> {models}/grounding-dino (transformers" in out
    assert "KMONO_MASKS_GROUNDING_MODEL=" in out
    assert main(["models", "verify", "--dir", str(models), "grounding-dino"], registrars=REGISTRARS) == 0
    assert main(["models", "list", "--dir", str(models)], registrars=REGISTRARS) == 0
    assert "grounding-dino  [transformers]  ok: 5 files" in capsys.readouterr().out


def test_usage_errors_exit_2(tmp_path, capsys):
    assert main(["models", "pull", "no-such-model", "--dir", str(tmp_path)], registrars=REGISTRARS) == 2
    assert "is not a catalogue name" in capsys.readouterr().err
    assert (
        main(
            ["models", "pull", "sam2", "mvideo", "--name", "x", "--dir", str(tmp_path)], registrars=REGISTRARS
        )
        == 2
    )


def test_verify_of_an_empty_directory_fails(tmp_path, capsys):
    assert main(["models", "verify", "--dir", str(tmp_path)], registrars=REGISTRARS) == 1
    assert "nothing staged under" in capsys.readouterr().err


def test_help_teaches_with_examples():
    parser = build_parser(REGISTRARS)
    models = parser._subparsers._group_actions[0].choices["models"]
    text = models.format_help()
    assert "kmono models pull grounding-dino sam2 --dir /models" in text
    assert "--from /mnt/usb/" in text and "KMONO_MODELS_DIR" in text
    pull = models._subparsers._group_actions[0].choices["pull"].format_help()
    assert "--revision" in pull and "examples:" in pull
