"""`kmono masks ...` end to end: synth -> edit -> compose -> info -> render, extract with tiny models, help texts
and one-line errors for bad input, hostile mask files included (tests/hostile_masks.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from generation.masks import edit
from generation.masks.cli import register
from generation.masks.testing import moving_boxes
from libs.cli.main import build_parser, main
from libs.media import load, probe_video, save, write_video
from tests.hostile_masks import HOSTILE, RLE_BOMB, assert_one_line, hostile_mask_files, run_capped

REGISTRARS = [("masks", register)]
REPO_ROOT = Path(__file__).resolve().parents[1]


def run(argv: list[str]) -> int:
    return main(["masks", *argv], registrars=REGISTRARS)


@pytest.fixture
def masks_file(tmp_path) -> Path:
    path = tmp_path / "boxes.json"
    save(moving_boxes(), path)
    return path


def test_synth_draws_a_ball_along_its_path(tmp_path, capsys):
    out = tmp_path / "ball.json"
    code = run(["synth", "--shape", "circle", "--shape-size", "8", "--path", "0:10,10", "15:50,40",
                "--frames", "16", "--fps", "8", "--size", "64x48", "--label", "ball", "-o", str(out)])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    seq = load(out)
    assert (seq.num_frames, seq.width, seq.height, seq.fps) == (16, 64, 48, 8.0)
    assert seq.objects[0].label == "ball"
    box = seq.box(15, 1)
    assert ((box.x0 + box.x1) / 2, (box.y0 + box.y1) / 2) == (50, 40)
    assert "wrote" in capsys.readouterr().out


def test_synth_with_a_template_and_smooth_scale(tmp_path, masks_file):
    out = tmp_path / "dog.npz"
    code = run(["synth", "--template", f"{masks_file}:1@0", "--path", "0:16,12", "--scale-path", "0:1", "3:2",
                "--smooth", "--frames", "4", "--size", "32x24", "-o", str(out)])  # fmt: skip
    assert code == 0
    seq = load(out)
    assert seq.objects[0].label == "dog" and seq.area(0, 1) == 24 and seq.area(3, 1) == 96


def test_edit_applies_flags_in_order(tmp_path, masks_file, capsys):
    out = tmp_path / "edited.json"
    code = run(["edit", str(masks_file), "-o", str(out), "--select", "1,2", "--translate", "3,1", "--speed", "2",
                "--reverse", "--dilate", "1", "--relabel", "1=puppy"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    source = moving_boxes()
    expected = edit.dilate(edit.reverse(edit.retime(edit.translate(source, (3, 1)), 2)), 1)
    expected = edit.relabel_objects(expected, {1: "puppy"})
    assert load(out) == expected

    order_matters = tmp_path / "other.json"
    assert run(["edit", str(masks_file), "-o", str(order_matters), "--reverse", "--speed", "2"]) == 0
    assert load(order_matters) == edit.retime(edit.reverse(source), 2)


def test_edit_only_and_keyframes_and_negative_constants(tmp_path, masks_file):
    out = tmp_path / "moved.json"
    code = run(["edit", str(masks_file), "-o", str(out), "--only", "1", "--smooth", "--translate", "0:0,0",
                "5:4,-2", "--only", "all", "--translate=-1,0", "--trim", "1:4", "--loop", "2", "--fps", "16"])  # fmt: skip
    assert code == 0
    source = moving_boxes()
    from generation.masks.trajectory import Trajectory

    expected = edit.translate(source, Trajectory([(0, (0, 0)), (5, (4, -2))], "smooth"), object_ids=[1])
    expected = edit.resample_fps(edit.loop(edit.trim(edit.translate(expected, (-1, 0)), 1, 4), 2), 16)
    assert load(out) == expected


def test_compose_stacks_inputs_in_argument_order_and_prints_the_mapping(tmp_path, masks_file, capsys):
    ball = tmp_path / "ball.json"
    run(["synth", "--shape", "square", "--shape-size", "6", "--path", "0:5,5", "--frames", "3", "--fps", "8",
         "--size", "32x24", "-o", str(ball)])  # fmt: skip
    capsys.readouterr()
    out = tmp_path / "scene.json"
    assert (
        run(["compose", str(masks_file), str(ball), "-o", str(out), "--start", "0,2", "--size", "64x48"]) == 0
    )
    printed = capsys.readouterr().out
    assert f"{ball}: object 1 -> 3" in printed
    seq = load(out)
    assert (seq.width, seq.height, seq.num_frames) == (64, 48, 6)
    assert seq.object_ids == (1, 2, 3) and not seq.visible(1, 3) and seq.visible(2, 3)


def test_info_prints_a_table_and_json(masks_file, capsys):
    assert run(["info", str(masks_file)]) == 0
    text = capsys.readouterr().out
    assert "6 frames, 32x24, 8 fps" in text and "dog" in text and "5/6" in text
    assert run(["info", str(masks_file), "--json"]) == 0
    facts = json.loads(capsys.readouterr().out)
    assert facts["objects"][1] == {
        "id": 2, "label": "ball", "score": 0.8, "frames_visible": 5, "first_frame": 0, "last_frame": 4,
        "mean_area": 25.0,
    }  # fmt: skip


def test_render_on_black_and_over_a_video(tmp_path, masks_file):
    gif = tmp_path / "masks.gif"
    assert run(["render", str(masks_file), "-o", str(gif)]) == 0
    assert probe_video(gif).num_frames == 6
    video = tmp_path / "video.mp4"
    write_video(video, np.full((6, 24, 32, 3), 90, np.uint8), fps=8)
    side = tmp_path / "side.mp4"
    assert run(["render", str(masks_file), "--video", str(video), "-o", str(side), "--side-by-side"]) == 0
    info = probe_video(side)
    assert (info.width, info.height, info.num_frames) == (64, 24, 6)


def test_extract_with_tiny_models_writes_a_sequence_of_the_video(tmp_path, capsys):
    video = tmp_path / "clip.mp4"
    frames = np.zeros((4, 48, 64, 3), np.uint8)
    for t in range(4):
        frames[t, 10:30, 5 + 4 * t : 25 + 4 * t] = (200, 60, 40)
    write_video(video, frames, fps=8)
    out = tmp_path / "masks.json"
    code = run(["extract", str(video), "--query", "a red ball.", "-o", str(out), "--tiny", "--threads", "1",
                "--window", "0", "--redetect-every", "0", "--quiet"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    seq = load(out)
    assert (seq.num_frames, seq.width, seq.height, seq.fps) == (4, 64, 48, 8.0)


@pytest.mark.parametrize("command", ["extract", "synth", "edit", "compose", "render", "info"])
def test_every_subcommand_explains_itself_with_an_example(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        run([command, "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert "examples:" in text and f"kmono masks {command}" in text


def test_masks_help_lists_the_subcommands():
    parser = build_parser(REGISTRARS)
    text = parser._subparsers._group_actions[0].choices["masks"].format_help()
    for command in ("extract", "synth", "edit", "compose", "render", "info"):
        assert command in text


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["info", "missing.json"], "no such mask file: missing.json"),
        (["edit", "{masks}", "-o", "{tmp}/o.json"], "no edits given"),
        (
            ["edit", "{masks}", "-o", "{tmp}/o.json", "--select", "7"],
            "--select 7: object_ids[0]: unknown object id 7",
        ),
        (["edit", "{masks}", "-o", "{tmp}/o.json", "--select", "cat"], "no object is labelled 'cat'"),
        (
            ["edit", "{masks}", "-o", "{tmp}/o.json", "--translate", "0:0,0", "9:1,1"],
            "frame 9 is out of range",
        ),
        (["edit", "{masks}", "-o", "{tmp}/o.json", "--translate", "1"], "--translate: expected DX,DY"),
        (["edit", "{masks}", "-o", "{tmp}/o.json", "--trim", "4:2"], "end_frame: must be > start_frame (4)"),
        (["edit", "{masks}", "-o", "{tmp}/o.json", "--speed", "0"], "--speed 0: speed: must be > 0"),
        (
            ["edit", "{masks}", "-o", "{tmp}/o.json", "--speed", "fast"],
            "--speed: expected a number, got 'fast'",
        ),
        (["edit", "{masks}", "-o", "{tmp}/o.json", "--dilate", "0"], "radius_pixels: must be >= 1"),
        (["edit", "{masks}", "-o", "{tmp}/o.txt", "--reverse"], "cannot write"),
        (["synth", "--shape", "circle", "--path", "0:1,1", "-o", "{tmp}/o.json"], "--shape-size is required"),
        (
            [
                "synth",
                "--shape",
                "circle",
                "--shape-size",
                "4",
                "--path",
                "0:1,1",
                "20:3,3",
                "--frames",
                "8",
                "-o",
                "{tmp}/o.json",
            ],
            "--path: center.keyframes[1].frame_index: frame 20 is out of range",
        ),  # fmt: skip
        (
            ["synth", "--template", "{masks}:9@0", "--path", "0:1,1", "-o", "{tmp}/o.json"],
            "unknown object id 9",
        ),
        (
            ["compose", "{masks}", "{masks}", "-o", "{tmp}/o.json", "--start", "0"],
            "one start frame per input",
        ),
        (["render", "{masks}", "-o", "{tmp}/o.mp4", "--side-by-side"], "--side-by-side needs --video"),
        (
            ["render", "{masks}", "--video", "{tmp}/small.mp4", "-o", "{tmp}/o.mp4"],
            "the video is 16x16 but the masks are 32x24",
        ),
        (
            ["extract", "{tmp}/none.mp4", "--query", "a dog.", "-o", "{tmp}/o.json", "--tiny"],
            "no such video file",
        ),
        (
            ["extract", "{masks}", "--query", "a dog.", "-o", "{tmp}/o.json", "--tiny"],
            "cannot read video file",
        ),
        (["extract", "{tmp}/small.mp4", "--query", " ", "-o", "{tmp}/o.json", "--tiny"], "--query is empty"),
    ],
)
def test_user_errors_are_one_line_with_exit_code_2(argv, message, tmp_path, masks_file, capsys):
    write_video(tmp_path / "small.mp4", np.zeros((2, 16, 16, 3), np.uint8), fps=4)
    argv = [a.format(masks=masks_file, tmp=tmp_path) for a in argv]
    assert run(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "Traceback" not in err
    assert len(err.splitlines()) == 1 and err.startswith("kmono masks: error:")


def test_argparse_rejects_malformed_flags(capsys):
    with pytest.raises(SystemExit) as exit_:
        run(
            [
                "synth",
                "--shape",
                "circle",
                "--shape-size",
                "4",
                "--path",
                "0:1,1",
                "--size",
                "big",
                "-o",
                "x.json",
            ]
        )
    assert exit_.value.code == 2
    assert "expected WIDTHxHEIGHT" in capsys.readouterr().err


def test_a_real_process_prints_one_line_and_exits_2(tmp_path):
    script = (
        "import sys; from libs.cli.main import main; from generation.masks.cli import register; "
        "sys.exit(main(sys.argv[1:], registrars=[('masks', register)]))"
    )
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            script,
            "masks",
            "edit",
            str(tmp_path / "nope.json"),
            "-o",
            "x.json",
            "--reverse",
        ],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=120,
    )
    assert result.returncode == 2
    assert (
        result.stderr.strip().splitlines()[-1]
        == f"kmono masks: error: no such mask file: {tmp_path / 'nope.json'}"
    )
    assert "Traceback" not in result.stderr


# -- hostile mask files --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", HOSTILE)
@pytest.mark.parametrize("command", ["info", "render"])
def test_a_hostile_mask_file_is_one_line_naming_it_with_exit_code_2(command, name, tmp_path, capsys):
    path = hostile_mask_files(tmp_path)[name]
    argv = [command, str(path)] + (["-o", str(tmp_path / "out.gif")] if command == "render" else [])
    assert run(argv) == 2
    assert_one_line(capsys.readouterr().err, f"kmono masks: error: cannot read masks from {path}: ")
    assert not (tmp_path / "out.gif").exists()


@pytest.mark.parametrize("command", ["info", "render"])
def test_an_rle_bomb_is_one_line_naming_it_in_a_process_with_a_memory_cap(command, tmp_path):
    path = hostile_mask_files(tmp_path)[RLE_BOMB]
    argv = ["masks", command, str(path)] + (["-o", str(tmp_path / "out.gif")] if command == "render" else [])
    result = run_capped(argv)
    assert result.returncode == 2, result.stderr
    assert_one_line(result.stderr, f"kmono masks: error: cannot read masks from {path}: ")


@pytest.mark.parametrize(
    "error",
    [
        RuntimeError("File 'sequence.json' is encrypted, password required for extraction"),
        NotImplementedError("That compression method is not supported"),
        zipfile.BadZipFile("Bad CRC-32 for file '00000.png'"),
        EOFError("No data left in file"),
        TypeError("only length-1 arrays can be converted to Python scalars"),
        KeyError("frames"),
        RecursionError("maximum recursion depth exceeded"),
        MemoryError("Unable to allocate 4.00 GiB\nfor an array"),
        Exception("line one\nline two"),
    ],
    ids=lambda error: type(error).__name__,
)
def test_whatever_reading_a_mask_file_raises_is_one_line(error, masks_file, monkeypatch, capsys):
    """The CLI's own guard, whatever the loader of the day raises (the loader is hardened separately)."""

    def load(path):
        raise error

    monkeypatch.setattr("generation.masks.cli.load", load)
    for argv in (["info", str(masks_file)], ["edit", str(masks_file), "-o", "x.json", "--reverse"]):
        assert run(argv) == 2
        assert_one_line(capsys.readouterr().err, f"kmono masks: error: cannot read masks from {masks_file}: ")


def test_running_out_of_memory_past_reading_is_one_line_too(tmp_path, masks_file, monkeypatch, capsys):
    def too_big(*args, **kwargs):
        raise MemoryError("Unable to allocate 12.0 GiB for an array")

    monkeypatch.setattr("generation.masks.cli.write_video", too_big)
    assert run(["render", str(masks_file), "-o", str(tmp_path / "o.gif")]) == 2
    assert_one_line(
        capsys.readouterr().err,
        f"kmono masks: error: cannot render {tmp_path / 'o.gif'} from {masks_file}: too large",
    )
    monkeypatch.setattr("generation.masks.cli.describe", too_big)
    assert run(["info", str(masks_file)]) == 2
    assert_one_line(
        capsys.readouterr().err, f"kmono masks: error: cannot process {masks_file}: too large to decode"
    )
