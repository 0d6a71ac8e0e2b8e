"""`kmono video`: generate in-process (--local, tiny engine) with the progress bar and outputs; status, list and
cancel against a server; user mistakes are one-line usage errors (exit 2)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from generation.masks.synth import SyntheticObject, synthesize
from generation.masks.trajectory import Trajectory
from libs.cli.main import main
from libs.media import save
from services.video.cli import register
from services.video.client import LocalServer
from services.video.config import VideoServiceConfig

torch.set_num_threads(1)
REGISTRARS = [("video", register)]


def _masks(path):
    seq = synthesize(
        [SyntheticObject("circle", Trajectory([(0, (8, 8)), (8, (24, 20))]), width=10, height=10, label="ball")],
        width=32, height=32, num_frames=9, fps=8,
    )  # fmt: skip
    save(seq, path)
    return path


def test_generate_local_writes_video_overlay_and_gif(tmp_path, capsys):
    masks = _masks(tmp_path / "ball.json")
    code = main(
        ["video", "generate", "--prompt", "a red circle", "--masks", str(masks), "--local", "--tiny-engine",
         "--steps", "2", "--seed", "5", "--out", str(tmp_path / "out"), "--name", "ball"],
        registrars=REGISTRARS,
    )  # fmt: skip
    assert code == 0
    captured = capsys.readouterr()
    assert "seed 5" in captured.out and "2/2" in captured.err  # the tqdm bar went to the end
    for name in ("ball.mp4", "ball_overlay.mp4", "ball_masks.pb", "ball_side_by_side.gif"):
        assert (tmp_path / "out" / name).stat().st_size > 0


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--masks", "/nonexistent.json"], "no such file"),
        (["--reference-video", "/nonexistent.mp4"], "needs --query"),
        (["--query", "ball."], "goes with --reference-video"),
        (["--server", "127.0.0.1:1"], "no video service"),
    ],
)
def test_user_mistakes_are_one_line_usage_errors(argv, message, capsys):
    code = main(["video", "generate", "--prompt", "a ball", *argv], registrars=REGISTRARS)
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err


def test_against_a_server_invalid_requests_name_the_field_and_status_list_cancel_work(tmp_path, capsys):
    with LocalServer(VideoServiceConfig(data_dir=tmp_path, tiny_engine=True)) as local:
        code = main(
            ["video", "generate", "--prompt", "a ball", "--frames", "5000", "--server", local.address],
            registrars=REGISTRARS,
        )
        assert code == 2 and "INVALID_ARGUMENT: num_frames" in capsys.readouterr().err
        code = main(
            ["video", "generate", "--prompt", "a red circle", "--steps", "1", "--out", str(tmp_path / "o"),
             "--server", local.address],
            registrars=REGISTRARS,
        )  # fmt: skip
        assert code == 0
        name = capsys.readouterr().out.split(":")[0]
        assert main(["video", "status", name, "--server", local.address], registrars=REGISTRARS) == 0
        assert "SUCCEEDED" in capsys.readouterr().out
        assert main(["video", "list", "--server", local.address], registrars=REGISTRARS) == 0
        assert name in capsys.readouterr().out
        assert (
            main(
                ["video", "cancel", "operations/video-nope", "--server", local.address], registrars=REGISTRARS
            )
            == 2
        )
        assert "NOT_FOUND" in capsys.readouterr().err


def test_kmono_help_does_not_import_torch():
    code = (
        "import sys, argparse; from services.video.cli import register; p = argparse.ArgumentParser(); "
        "register(p.add_subparsers()); p.parse_args(['video', 'list']); "
        "assert 'torch' not in sys.modules and 'grpc' not in sys.modules, sorted(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
