"""`kmono video`: generate in-process (--local, tiny engine; the shapes default from another working directory)
with the progress bar and outputs; unknown prompt words as warnings (stderr, once) and in `status`; status,
list and cancel against a server; --no-wait submits and names the operation; user mistakes and hostile mask files are
one-line usage errors (exit 2)."""

from __future__ import annotations

import subprocess
import sys
import threading

import grpc
import numpy as np
import pytest
import torch

from generation.masks.synth import SyntheticObject, synthesize
from generation.masks.trajectory import Trajectory
from generation.mvideo.engine import TINY_SPEC, GeneratedVideo
from libs.cli.main import main
from libs.media import load, save
from services.video.cli import register
from services.video.client import LocalServer, VideoClient
from services.video.config import VideoServiceConfig
from tests.hostile_masks import HOSTILE, RLE_BOMB, assert_one_line, hostile_mask_files, run_capped

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


def test_generate_local_from_another_directory_runs_the_shapes_default_and_warns_of_unknown_words(
    tmp_path, monkeypatch, capsys
):
    """No --engine-path: the default engine must load whatever the working directory (a path relative to the
    repository root would not); the default --out lands in the working directory."""
    monkeypatch.chdir(tmp_path)
    prompt = "a purple circle and a crimson square"
    code = main(["video", "generate", "--prompt", prompt, "--local", "--steps", "2"], registrars=REGISTRARS)
    assert code == 0
    captured = capsys.readouterr()
    assert (
        "mvideo-" in captured.out and "32x32" in captured.out
    )  # the shapes default's size, not the tiny one
    assert (tmp_path / "out" / "video.mp4").stat().st_size > 0
    warnings = [line for line in captured.err.splitlines() if line.startswith("kmono video: warning: ")]
    assert len(warnings) == 1, captured.err  # printed once, though every later update carries it
    assert warnings[0].startswith(
        "kmono video: warning: unknown words ignored by this model: purple, crimson"
    )
    assert "(known: " in warnings[0] and "red" in warnings[0] and "circle" in warnings[0]
    # Text only: the default plans the motion from the prompt and returns it as the job's masks, to edit.
    planned = load(tmp_path / "out" / "video_masks.pb")
    assert [o.label for o in planned.objects] == ["purple circle", "crimson square"]
    assert (tmp_path / "out" / "video_side_by_side.gif").stat().st_size > 0


def test_a_prompt_the_model_reads_whole_gets_no_warning_and_status_names_unknown_words(tmp_path, capsys):
    with LocalServer(VideoServiceConfig(data_dir=tmp_path, tiny_engine=True)) as local:
        common = ["--steps", "1", "--out", str(tmp_path / "o"), "--server", local.address]
        assert main(["video", "generate", "--prompt", "a red circle", *common], registrars=REGISTRARS) == 0
        assert "warning" not in capsys.readouterr().err
        # The tiny engine's T5 pieces spell lower-case words but no CJK character.
        assert main(["video", "generate", "--prompt", "a 和 circle", *common], registrars=REGISTRARS) == 0
        captured = capsys.readouterr()
        assert "kmono video: warning: unknown words ignored by this model: 和" in captured.err
        name = captured.out.split(":")[0]
        assert main(["video", "status", name, "--server", local.address], registrars=REGISTRARS) == 0
        assert "SUCCEEDED" in (out := capsys.readouterr().out) and "unknown words: 和" in out


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


# -- hostile mask files ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", HOSTILE)
def test_a_hostile_masks_file_is_one_line_naming_it_before_anything_starts(name, tmp_path, capsys):
    path = hostile_mask_files(tmp_path)[name]
    code = main(
        ["video", "generate", "--prompt", "a ball", "--masks", str(path), "--local", "--tiny-engine"],
        registrars=REGISTRARS,
    )
    assert code == 2
    assert_one_line(capsys.readouterr().err, f"kmono video: error: --masks: cannot read {path}: ")


def test_an_rle_bomb_as_masks_is_one_line_in_a_process_with_a_memory_cap(tmp_path):
    path = hostile_mask_files(tmp_path)[RLE_BOMB]
    result = run_capped(
        ["video", "generate", "--prompt", "a ball", "--masks", str(path), "--local", "--tiny-engine"]
    )
    assert result.returncode == 2, result.stderr
    assert_one_line(result.stderr, f"kmono video: error: --masks: cannot read {path}: ")


@pytest.mark.parametrize(
    "error",
    [
        RuntimeError("encrypted"),
        KeyError("frames"),
        MemoryError("Unable to allocate"),
        RecursionError("deep"),
    ],
    ids=lambda error: type(error).__name__,
)
def test_whatever_reading_the_masks_raises_is_one_line(error, tmp_path, monkeypatch, capsys):
    def load(path):
        raise error

    monkeypatch.setattr("libs.media.load", load)
    masks = _masks(tmp_path / "ball.json")
    code = main(["video", "generate", "--prompt", "a ball", "--masks", str(masks)], registrars=REGISTRARS)
    assert code == 2
    assert_one_line(capsys.readouterr().err, f"kmono video: error: --masks: cannot read {masks}: ")


# -- --no-wait ---------------------------------------------------------------------------------------------------


class GatedEngine:
    """Holds each job at its first step until `release`."""

    spec = TINY_SPEC
    attention = "sdpa"

    def __init__(self) -> None:
        self.started, self.gate = threading.Event(), threading.Event()

    def generate(self, job, on_step, on_stage=lambda stage: None):
        on_stage("denoising")
        on_step(1, job.num_inference_steps, None)
        self.started.set()
        assert self.gate.wait(60)
        for step in range(2, job.num_inference_steps + 1):
            on_step(step, job.num_inference_steps, None)
        return GeneratedVideo(np.zeros((job.num_frames, job.height, job.width, 3), np.uint8), job.masks)


def test_no_wait_submits_prints_the_name_and_how_to_follow_it(tmp_path, capsys):
    engine = GatedEngine()
    config = VideoServiceConfig(data_dir=tmp_path, tiny_engine=True)
    with LocalServer(config, load_engines=lambda: {"mvideo": engine}) as local:
        submit = ["video", "generate", "--prompt", "a red circle", "--steps", "2", "--no-wait"]
        assert main([*submit, "--server", local.address], registrars=REGISTRARS) == 0
        captured = capsys.readouterr()
        first = captured.out.strip()
        assert first.startswith("operations/video-") and len(captured.out.splitlines()) == 1
        assert f"follow it with: kmono video status {first} --server {local.address}" in captured.err
        assert engine.started.wait(60)  # the first job holds the worker
        assert main([*submit, "--server", local.address], registrars=REGISTRARS) == 0
        second = capsys.readouterr().out.strip()

        assert main(["video", "status", second, "--server", local.address], registrars=REGISTRARS) == 0
        assert "QUEUED" in capsys.readouterr().out
        # cancelled while queued: the store ends it, and its metadata says so (not QUEUED any more)
        assert main(["video", "cancel", second, "--server", local.address], registrars=REGISTRARS) == 0
        assert f"{second}  CANCELLED" in capsys.readouterr().out
        engine.gate.set()
        with grpc.insecure_channel(local.address) as channel:
            assert VideoClient(channel).wait(first, timeout=60).HasField("response")
        assert main(["video", "status", first, "--server", local.address], registrars=REGISTRARS) == 0
        assert f"{first}  SUCCEEDED step 2/2 done" in capsys.readouterr().out


def test_no_wait_needs_a_server(capsys):
    code = main(["video", "generate", "--prompt", "a ball", "--local", "--no-wait"], registrars=REGISTRARS)
    err = capsys.readouterr().err
    assert code == 2 and "--no-wait needs a server" in err and "Traceback" not in err
