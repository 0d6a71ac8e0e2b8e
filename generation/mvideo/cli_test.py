import argparse
import dataclasses
import json

import numpy as np
import pytest

from generation.mvideo.cli import add_train_arguments, config_from_args, register
from generation.mvideo.training.config import TrainConfig, get_recipe
from generation.mvideo.training.data import ManifestDataset, read_manifest
from libs.cli.main import main
from libs.media import MaskSequence, load, read_video, save


def kmono(*argv: str) -> int:
    return main(["mvideo", *argv], registrars=[("mvideo", register)])


def test_shapes_data_then_annotate_with_the_tiny_extractor(tmp_path, capsys):
    folder = tmp_path / "clips"
    assert kmono("shapes-data", str(folder), "--num", "3", "--size", "32", "--frames", "4") == 0
    assert len(read_manifest(folder / "manifest.jsonl")) == 3
    (folder / "manifest.jsonl").unlink()
    # One caption from captions.jsonl instead of its sidecar; one video with no caption at all.
    (folder / "shapes_00000.txt").unlink()
    (folder / "captions.jsonl").write_text(
        json.dumps({"video": "shapes_00000.mp4", "caption": "a red circle"}) + "\n"
    )
    (folder / "shapes_00002.txt").unlink()

    assert kmono("annotate", str(folder), "--tiny", "--format", "npz") == 0
    entries = read_manifest(folder / "manifest.jsonl")
    assert [e.video.name for e in entries] == ["shapes_00000.mp4", "shapes_00001.mp4"]
    assert entries[0].caption == "a red circle"
    for entry in entries:
        assert entry.masks.suffix == ".npz" and entry.masks.parent == folder / "masks"
        seq = load(entry.masks)
        assert (seq.num_frames, seq.width, seq.height) == (4, 32, 32)
        assert sorted(entry.object_ids) == sorted(seq.object_ids)
    dataset = ManifestDataset(folder / "manifest.jsonl", num_frames=4, height=32, width=32, num_mask_slots=16)
    assert dataset[1]["video"].shape == (4, 3, 32, 32)
    assert "wrote" in capsys.readouterr().out


def test_annotate_usage_errors(tmp_path, capsys):
    assert kmono("annotate", str(tmp_path / "missing"), "--tiny") == 2
    (tmp_path / "empty").mkdir()
    assert kmono("annotate", str(tmp_path / "empty"), "--tiny") == 2
    assert "no captioned videos" in capsys.readouterr().err


def test_train_then_eval_from_the_command_line(tmp_path, capsys):
    out = tmp_path / "model"
    assert (
        kmono("train", "--recipe", "shapes-tiny", "--out", str(out), "--max-steps", "2", "--no-progress") == 0
    )
    assert json.loads((out / "training.json").read_text())["steps"] == 2
    assert (
        kmono(
            "eval",
            "--model",
            str(out),
            "--num-samples",
            "2",
            "--steps",
            "2",
            "--grid-samples",
            "2",
            "--out",
            str(tmp_path / "eval"),
        )
        == 0
    )
    lines = capsys.readouterr().out.strip().splitlines()
    assert (
        lines[-1].startswith("miou_masked=") and " miou_unmasked=" in lines[-1] and " color_acc=" in lines[-1]
    )
    assert (tmp_path / "eval" / "grid.gif").is_file() and (tmp_path / "eval" / "grid.png").is_file()
    assert kmono("train", "--recipe", "shapes-tiny", "--out", str(out), "--lr-schedule", "linear") == 2


def test_train_on_a_manifest_and_resume(tmp_path, capsys):
    data = tmp_path / "data"
    assert kmono("shapes-data", str(data), "--num", "3", "--size", "16", "--frames", "4") == 0
    out = tmp_path / "model"
    common = ["--recipe", "shapes-tiny", "--out", str(out), "--manifest", str(data / "manifest.jsonl")]
    assert kmono("train", *common, "--max-steps", "3", "--stop-after", "2", "--no-progress") == 0
    assert "stopped at step 2" in capsys.readouterr().out
    assert kmono("train", *common, "--max-steps", "3", "--resume", "latest", "--no-progress") == 0
    assert "after 3 steps" in capsys.readouterr().out
    assert kmono("train", *common, "--resume", str(tmp_path / "nope")) == 2


def _train_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    return parser


def test_every_train_config_field_has_a_documented_flag_that_sets_it():
    parser = _train_parser()
    actions = {action.dest: action for action in parser._actions}
    names = {field.name for field in dataclasses.fields(TrainConfig)}
    assert names - set(actions) == {"shapes"}  # the recipe's model spec, a nested dataclass
    for name in names - {"shapes"}:
        assert actions[name].help, f"--{name.replace('_', '-')} has no help (give the field a docstring)"
    samples = {int: ["7"], float: ["0.25"], str: ["x"]}
    base = get_recipe("shapes-tiny")
    for field in dataclasses.fields(TrainConfig):
        if field.name in ("shapes", "recipe"):
            continue
        flag = "--" + field.name.replace("_", "-")
        action = parser._option_string_actions[flag]
        if isinstance(action, argparse.BooleanOptionalAction):
            value = not getattr(base, field.name)
            argv = [flag if value else "--no-" + flag[2:]]
        elif action.nargs == "+":
            argv, value = [flag, "a", "b"], ("a", "b")
        else:
            kind = action.type or str
            argv = [flag, *samples[kind]]
            value = kind(argv[1])
        if field.name != "out":
            argv += ["--out", "o"]
        config = config_from_args(parser.parse_args(["--recipe", "shapes-tiny", *argv]))
        assert config == base.replace(**{"out": "o", field.name: value}), field.name  # that field alone


def test_train_flags_keep_the_recipe_unless_given():
    parser = _train_parser()
    config = config_from_args(parser.parse_args(["--recipe", "shapes-default", "--out", "o"]))
    assert config == get_recipe("shapes-default").replace(out="o")
    freeze = parser.parse_args(["--recipe", "shapes-default", "--out", "o", "--freeze-text-encoder"])
    assert config_from_args(freeze).train_text_encoder is False
    assert config_from_args(parser.parse_args(["--out", "o", "--no-progress"])).progress is False


def test_generate_from_another_directory_with_the_default_model_warns_of_unknown_words(
    tmp_path, monkeypatch, capsys
):
    """The default --model is absolute (any working directory); the warning comes before the video, on stderr."""
    monkeypatch.chdir(tmp_path)
    assert (
        kmono("generate", "--prompt", "a purple circle, a crimson square", "--steps", "2", "--threads", "1")
        == 0
    )
    captured = capsys.readouterr()
    frames, fps = read_video(tmp_path / "video.mp4")
    assert frames.shape[1:] == (32, 32, 3) and f"wrote video.mp4 ({len(frames)} frames 32x32" in captured.out
    warnings = [line for line in captured.err.splitlines() if "warning" in line]
    assert len(warnings) == 1
    assert warnings[0].startswith(
        "kmono mvideo: warning: unknown words ignored by this model: purple, crimson (known: "
    )
    assert "red" in warnings[0] and "square" in warnings[0]
    # No masks: the default plans the motion from the prompt and writes the plan for the user to edit.
    layout = load(tmp_path / "video.layout.json")
    assert [o.label for o in layout.objects] == ["purple circle", "crimson square"]
    assert (layout.num_frames, layout.width) == (
        len(frames),
        32,
    ) and "wrote video.layout.json" in captured.out


def test_generate_tiny_with_masks_and_a_prompt_it_reads_whole(tmp_path, capsys):
    masks = tmp_path / "ball.json"
    save(MaskSequence.from_id_maps(np.zeros((9, 32, 32), np.int32), None, 8), masks)
    out = tmp_path / "o" / "v.mp4"
    assert kmono("generate", "--tiny", "--prompt", "a red circle", "--masks", str(masks), "--steps", "1",
                 "--out", str(out)) == 0  # fmt: skip
    assert read_video(out)[0].shape == (9, 32, 32, 3)
    assert "warning" not in capsys.readouterr().err
    # --out naming a folder puts video.mp4 inside it
    assert kmono("generate", "--tiny", "--prompt", "a red circle", "--masks", str(masks), "--steps", "1",
                 "--out", str(tmp_path / "folder")) == 0  # fmt: skip
    assert read_video(tmp_path / "folder" / "video.mp4")[0].shape == (9, 32, 32, 3)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--prompt", "  "], "--prompt is empty"),
        (["--prompt", "a ball", "--model", "/nonexistent"], "no MVideo pipeline at /nonexistent"),
        (["--prompt", "a ball", "--tiny", "--frames", "6"], "num_frames must be 1 + k * 4"),
        (["--prompt", "a ball", "--tiny", "--masks", "/nonexistent.json"], "--masks: cannot read"),
    ],
)
def test_generate_mistakes_are_one_line_usage_errors(argv, message, capsys):
    assert kmono("generate", *argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
