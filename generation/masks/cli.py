"""`kmono masks ...`: extract, draw, edit, compose, render and inspect mask sequences from the shell.

Registered through the `kmono.cli` entry-point group (`masks = "generation.masks.cli:register"`). Files are
read and written by extension with `libs.media.load` / `save` (.json COCO RLE, .npz, .pb, .zip or a directory
of PNG id maps). User mistakes (missing files, bad values, out-of-range keyframes) end with one line on
stderr and exit code 2 (`libs.cli.main.UsageError`), never a traceback.

Mask files may come from anyone, so whatever reading one raises (a bad CRC or an encrypted member in a zip, an
NPZ whose `fps` is no scalar, JSON nested too deeply, an RLE that would decode to gigabytes: zipfile, numpy,
RecursionError, MemoryError, ...) is caught here, at the CLI boundary, and reported as one line naming the file
(`--log-level DEBUG` shows the traceback); so is running out of memory or recursion depth in any subcommand (a
file that loads but is too large to edit or render). Other exceptions outside reading are bugs and keep their
traceback.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import sys
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from generation.masks import edit as ops
from generation.masks.compose import Layer, compose
from generation.masks.synth import SHAPES, MaskTemplate, SyntheticObject, synthesize
from generation.masks.trajectory import INTERPOLATIONS, FieldError, Trajectory
from libs.cli.flags import non_negative_int, positive_float, positive_int
from libs.cli.main import UsageError, add_subcommand
from libs.media import (
    MaskSequence,
    iter_masks,
    iter_overlay,
    iter_video_frames,
    load,
    probe_video,
    save,
    write_video,
)

logger = logging.getLogger(__name__)

_FORMATS = "Mask files: .json (COCO RLE), .npz, .pb, .zip or a directory of PNG id maps."


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `kmono masks` and its subcommands."""
    parser = subparsers.add_parser(
        "masks",
        help="extract, draw, edit, compose, render and inspect mask sequences",
        description="Mask sequences: per-frame object masks (MVideo's motion condition). " + _FORMATS,
        epilog="Every subcommand has its own --help with an example, e.g. `kmono masks edit --help`.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="masks_command", metavar="SUBCOMMAND", required=True)
    for add in (_add_extract, _add_synth, _add_edit, _add_compose, _add_render, _add_info):
        add(commands)


def _subparser(
    commands: argparse._SubParsersAction, name: str, summary: str, example: str
) -> argparse.ArgumentParser:
    return add_subcommand(commands, name, summary, example, description=f"{summary}.\n\n{_FORMATS}")


# -- shared helpers ---------------------------------------------------------------------------------------------


def error_reason(exc: BaseException, limit: int = 300) -> str:
    """Why reading or rendering an input failed, as one short line (exception type named unless it is a plain
    ValueError/OSError, whose messages are written for users)."""
    text = " ".join(str(exc).split())
    if isinstance(exc, MemoryError):
        text = f"too large to decode ({text or 'out of memory'})"
    elif isinstance(exc, RecursionError):
        text = "nested too deeply"
    elif not isinstance(exc, ValueError | OSError) or not text:
        text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _load(path: str) -> MaskSequence:
    try:
        return load(path)
    except FileNotFoundError:
        raise UsageError(f"no such mask file: {path}") from None
    except Exception as exc:  # anything a hostile file makes a decoder raise: see the module docstring
        logger.debug("reading %s failed", path, exc_info=True)
        raise UsageError(f"cannot read masks from {path}: {error_reason(exc)}") from None


def _guarded(run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """`run` with running out of memory or recursion depth (an input too large for what was asked) reported as
    one line naming the inputs, not a traceback."""

    @functools.wraps(run)
    def guarded(args: argparse.Namespace) -> int:
        try:
            return run(args)
        except (MemoryError, RecursionError) as exc:
            logger.debug("%s failed", run.__name__, exc_info=True)
            inputs = [getattr(args, name) for name in ("input", "video") if getattr(args, name, None)]
            inputs += getattr(args, "inputs", None) or []
            raise UsageError(
                f"cannot process {', '.join(map(str, inputs)) or 'the input'}: {error_reason(exc)}"
            ) from None

    return guarded


def _save(seq: MaskSequence, path: str) -> None:
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        save(seq, path)
    except (ValueError, OSError) as exc:
        raise UsageError(f"cannot write {path}: {exc}") from None
    labels = ", ".join(f"{o.id}:{o.label or '-'}" for o in seq.objects) or "none"
    print(
        f"wrote {path}: {seq.num_frames} frames {seq.width}x{seq.height} @ {seq.fps:g} fps, objects {labels}"
    )


def _size(text: str) -> tuple[int, int]:
    """`WxH` -> (width, height)."""
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT like 128x96, got {text!r}") from None
    if width <= 0 or height <= 0:
        raise argparse.ArgumentTypeError(f"width and height must be > 0, got {text!r}")
    return width, height


def _int_list(text: str, what: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"{what}: expected comma-separated integers, got {text!r}") from None


def _trajectory(specs: Sequence[str], interpolation: str, flag: str) -> Trajectory:
    try:
        return Trajectory.parse(specs, interpolation)  # type: ignore[arg-type]
    except FieldError as exc:
        raise UsageError(f"{flag} {' '.join(specs)}: {exc}") from None


# -- extract ----------------------------------------------------------------------------------------------------


def _add_extract(commands: argparse._SubParsersAction) -> None:
    parser = _subparser(
        commands,
        "extract",
        "Extract the masks of the objects a text query names from a video (GroundingDINO + SAM2)",
        '  kmono masks extract walk.mp4 --query "a dog. a person." -o masks.json --redetect-every 20\n'
        '  kmono masks extract walk.mp4 --query "a dog." -o masks.json --tiny     # random tiny models (tests)\n'
        "  kmono masks render masks.json --video walk.mp4 -o check.mp4 --side-by-side",
    )
    parser.add_argument("video", help="the reference video (MP4, MOV, MKV, GIF)")
    parser.add_argument(
        "--query",
        "-q",
        required=True,
        help='objects to find, lower-case phrases ending in ".", e.g. "a dog."',
    )
    parser.add_argument(
        "-o", "--output", required=True, help="where to write the masks (.json, .npz, .pb, ...)"
    )
    models = parser.add_argument_group("models")
    models.add_argument(
        "--tiny", action="store_true", help="use tiny random models (tests; the masks mean nothing)"
    )
    models.add_argument("--model-grounding", default="IDEA-Research/grounding-dino-tiny",
                        help="GroundingDINO hub id or local directory (default: %(default)s)")  # fmt: skip
    models.add_argument("--model-sam2", default="facebook/sam2.1-hiera-tiny",
                        help="SAM2 hub id or local directory (default: %(default)s)")  # fmt: skip
    models.add_argument(
        "--device", default=None, help="torch device, e.g. cuda, cuda:1, cpu (default: cuda if available)"
    )
    models.add_argument("--dtype", choices=["auto", "float32", "bfloat16", "float16"], default="auto",
                        help="weights dtype (auto: bfloat16 on CUDA, float32 on CPU)")  # fmt: skip
    models.add_argument(
        "--threads", type=positive_int, default=None, help="CPU threads for torch (default: torch's)"
    )
    tracking = parser.add_argument_group("tracking")
    tracking.add_argument("--redetect-every", type=non_negative_int, default=20,
                          help="detect again every N frames to pick up new objects; 0: first frame only (default: 20)")  # fmt: skip
    tracking.add_argument("--window", type=non_negative_int, default=100,
                          help="frames per SAM2 session (bounded memory on long videos); 0: one session (default: 100)")  # fmt: skip
    tracking.add_argument(
        "--reverse", action="store_true", help="also track backwards from each object's first detection"
    )
    tracking.add_argument(
        "--box-threshold", type=float, default=0.35, help="detection confidence (default: 0.35)"
    )
    tracking.add_argument(
        "--text-threshold", type=float, default=0.25, help="label confidence (default: 0.25)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=_guarded(_run_extract))


def _run_extract(args: argparse.Namespace) -> int:
    if not Path(args.video).is_file():
        raise UsageError(f"no such video file: {args.video}")
    if not args.query.strip():
        raise UsageError('--query is empty; name the objects, e.g. --query "a dog."')
    try:
        info = probe_video(args.video)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    from generation.masks import load_extractor  # loads torch and transformers: seconds

    try:
        extractor = load_extractor(
            tiny=args.tiny,
            grounding=args.model_grounding,
            sam2=args.model_sam2,
            device=args.device,
            dtype=args.dtype,
            threads=args.threads,
        )
    except (OSError, ValueError, RuntimeError) as exc:
        raise UsageError(
            f"cannot load the models ({exc}); pass local model directories, or --tiny for random tiny models"
        ) from None
    from tqdm.auto import tqdm

    bar = tqdm(total=info.num_frames, unit="frame", desc="masks", disable=args.quiet, file=sys.stderr)
    try:
        seq = extractor.extract(
            args.video,
            args.query,
            box_threshold=args.box_threshold,
            text_threshold=args.text_threshold,
            redetect_every=args.redetect_every or None,
            window=args.window or None,
            reverse=args.reverse,
            progress=bar,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    finally:
        bar.close()
    _save(seq, args.output)
    return 0


# -- synth ------------------------------------------------------------------------------------------------------


def _add_synth(commands: argparse._SubParsersAction) -> None:
    parser = _subparser(
        commands,
        "synth",
        "Draw a mask sequence of one shape moving along a keyframed path (no video needed)",
        "  kmono masks synth --shape circle --shape-size 12 --path 0:10,10 15:50,40 --frames 16 --fps 8 \\\n"
        "      --size 64x48 --label ball -o ball.json\n"
        "  kmono masks synth --template dog.json:1@0 --path 0:20,30 23:100,30 --smooth --size 128x64 -o dog.json\n"
        "  # several objects: draw each, then `kmono masks compose ball.json dog.json -o scene.json`\n"
        "Keyframes are FRAME:X,Y (or FRAME:VALUE for --scale-path and --rotate-path), frames 0-based; values\n"
        "hold before the first and after the last keyframe.",
    )
    shape = parser.add_mutually_exclusive_group(required=True)
    shape.add_argument("--shape", choices=SHAPES, help="the shape to draw")
    shape.add_argument("--template", metavar="FILE:ID@FRAME",
                       help="use the mask of object ID in frame FRAME of a mask file as the shape")  # fmt: skip
    parser.add_argument("--shape-size", metavar="W[xH]",
                        help="diameter / side, or WxH for an ellipse or a template (template default: its own)")  # fmt: skip
    parser.add_argument(
        "--path", nargs="+", required=True, metavar="FRAME:X,Y", help="centre keyframes in pixels"
    )
    parser.add_argument("--scale-path", nargs="+", metavar="FRAME:FACTOR", help="size multiplier keyframes")
    parser.add_argument(
        "--rotate-path", nargs="+", metavar="FRAME:DEGREES", help="counter-clockwise rotation keyframes"
    )
    parser.add_argument(
        "--interpolation",
        choices=INTERPOLATIONS,
        default="linear",
        help="between keyframes (default: linear)",
    )
    parser.add_argument(
        "--smooth",
        action="store_const",
        const="smooth",
        dest="interpolation",
        help="= --interpolation smooth",
    )
    parser.add_argument("--label", default=None, help="object label (default: the shape's name)")
    parser.add_argument(
        "--size", type=_size, default=(256, 256), metavar="WxH", help="frame size (default: 256x256)"
    )
    parser.add_argument("--frames", type=positive_int, default=16, help="number of frames (default: 16)")
    parser.add_argument("--fps", type=positive_float, default=8.0, help="frames per second (default: 8)")
    parser.add_argument("-o", "--output", required=True, help="where to write the masks")
    parser.set_defaults(func=_guarded(_run_synth))


def _parse_template(spec: str) -> MaskTemplate:
    path, sep, rest = spec.rpartition(":")
    object_text, at, frame_text = rest.partition("@")
    if not sep or not path:
        raise UsageError(f"--template: expected FILE:ID@FRAME (e.g. dog.json:1@0), got {spec!r}")
    try:
        object_id, frame = int(object_text), int(frame_text) if at else 0
    except ValueError:
        raise UsageError(
            f"--template: expected FILE:ID@FRAME with integers ID and FRAME, got {spec!r}"
        ) from None
    try:
        return MaskTemplate.from_sequence(_load(path), object_id, frame)
    except FieldError as exc:
        raise UsageError(f"--template {spec}: {exc.reason}") from None


def _shape_size(text: str | None) -> tuple[float | None, float | None]:
    if text is None:
        return None, None
    try:
        parts = [float(v) for v in text.lower().split("x")]
    except ValueError:
        raise UsageError(f"--shape-size: expected a number or WxH, got {text!r}") from None
    if len(parts) not in (1, 2):
        raise UsageError(f"--shape-size: expected a number or WxH, got {text!r}")
    return parts[0], parts[1] if len(parts) == 2 else None


def _run_synth(args: argparse.Namespace) -> int:
    shape: Any = _parse_template(args.template) if args.template else args.shape
    width, height = _shape_size(args.shape_size)
    if args.shape and width is None:
        raise UsageError(f"--shape-size is required for a {args.shape} (its diameter or side in pixels)")
    interpolation = args.interpolation
    obj = SyntheticObject(
        shape,
        _trajectory(args.path, interpolation, "--path"),
        width=width,
        height=height,
        scale=_trajectory(args.scale_path, interpolation, "--scale-path") if args.scale_path else 1.0,
        rotation=_trajectory(args.rotate_path, interpolation, "--rotate-path") if args.rotate_path else 0.0,
        label=args.label,
    )
    flags = {"center": "--path", "scale": "--scale-path", "rotation": "--rotate-path", "width": "--shape-size",
             "height": "--shape-size"}  # fmt: skip
    try:
        seq = synthesize([obj], width=args.size[0], height=args.size[1], num_frames=args.frames, fps=args.fps)
    except FieldError as exc:
        part = exc.field.removeprefix("objects[0].").split(".")[0]
        raise UsageError(
            f"{flags.get(part, part)}: {exc.field.removeprefix('objects[0].')}: {exc.reason}"
        ) from None
    _save(seq, args.output)
    return 0


# -- edit -------------------------------------------------------------------------------------------------------


class _Op(argparse.Action):
    """Append (flag, values) to `namespace.ops`, keeping the order the flags were given in."""

    def __call__(
        self, parser: Any, namespace: argparse.Namespace, values: Any, option_string: str | None = None
    ):
        ops_so_far = list(getattr(namespace, self.dest, None) or [])
        ops_so_far.append((option_string, values))
        setattr(namespace, self.dest, ops_so_far)


class _Flag(_Op):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, nargs=0, **kwargs)


def _add_edit(commands: argparse._SubParsersAction) -> None:
    parser = _subparser(
        commands,
        "edit",
        "Edit a mask sequence: the edit flags are applied in the order given",
        "  kmono masks edit masks.json -o out.json --select 1,2 --translate 10,0 --speed 2 --reverse \\\n"
        "      --dilate 2 --relabel 1=dog\n"
        "  kmono masks edit masks.json -o out.json --only 1 --smooth --translate 0:0,0 24:80,-10 --only all --fps 24\n"
        "Negative constants need '=': --translate=-10,0 (keyframes like 0:-10,0 need nothing).",
    )
    parser.add_argument("input", help="the mask file to edit")
    parser.add_argument("-o", "--output", required=True, help="where to write the result")
    objects = parser.add_argument_group("objects")
    objects.add_argument(
        "--select",
        action=_Op,
        dest="ops",
        metavar="IDS|LABELS",
        help="keep only these objects, e.g. 1,2 or dog",
    )
    objects.add_argument("--drop", action=_Op, dest="ops", metavar="IDS|LABELS", help="remove these objects")
    objects.add_argument(
        "--relabel", action=_Op, dest="ops", metavar="ID=LABEL[,...]", help="rename objects, e.g. 1=dog,2=cat"
    )
    objects.add_argument("--only", action=_Op, dest="ops", metavar="IDS|all",
                         help="limit the following geometry and morphology edits to these object ids")  # fmt: skip
    geometry = parser.add_argument_group("geometry (about each object's box centre, clipped to the frame)")
    geometry.add_argument("--interpolation", action=_Op, dest="ops", choices=INTERPOLATIONS,
                          help="how the following keyframed edits fill frames between keyframes (default linear)")  # fmt: skip
    geometry.add_argument("--smooth", action=_Flag, dest="ops", help="= --interpolation smooth")
    geometry.add_argument("--translate", action=_Op, dest="ops", nargs="+", metavar="DX,DY|FRAME:DX,DY",
                          help="move by a constant offset or along offset keyframes")  # fmt: skip
    geometry.add_argument(
        "--scale", action=_Op, dest="ops", nargs="+", metavar="F|FRAME:F", help="resize by a factor"
    )
    geometry.add_argument("--rotate", action=_Op, dest="ops", nargs="+", metavar="DEG|FRAME:DEG",
                          help="rotate counter-clockwise by degrees")  # fmt: skip
    geometry.add_argument(
        "--dilate", action=_Op, dest="ops", metavar="RADIUS", help="grow masks by a disk (pixels)"
    )
    geometry.add_argument(
        "--erode", action=_Op, dest="ops", metavar="RADIUS", help="shrink masks by a disk (pixels)"
    )
    time = parser.add_argument_group("time")
    time.add_argument(
        "--trim", action=_Op, dest="ops", metavar="START:END", help="keep frames [START, END); END optional"
    )
    time.add_argument(
        "--speed", action=_Op, dest="ops", metavar="S", help="play S times as fast at the same fps"
    )
    time.add_argument("--reverse", action=_Flag, dest="ops", help="play backwards")
    time.add_argument("--loop", action=_Op, dest="ops", metavar="N", help="repeat N times")
    time.add_argument(
        "--boomerang", action=_Op, dest="ops", metavar="N", help="N plays alternating forward and back"
    )
    time.add_argument(
        "--loop-frames", action=_Op, dest="ops", metavar="N", help="repeat up to exactly N frames"
    )
    time.add_argument(
        "--fps", action=_Op, dest="ops", metavar="FPS", help="resample to FPS keeping the duration"
    )
    time.add_argument("--time-warp", action=_Op, dest="ops", nargs="+", metavar="FRAME:SOURCE",
                      help="output frame FRAME shows source frame SOURCE, interpolated between keyframes")  # fmt: skip
    parser.set_defaults(func=_guarded(_run_edit), ops=None)


def _number(text: str, flag: str, kind: Callable[[str], Any] = float) -> Any:
    try:
        return kind(text)
    except ValueError:
        what = "an integer" if kind is int else "a number"
        raise UsageError(f"{flag}: expected {what}, got {text!r}") from None


def _constant_or_path(values: list[str], interpolation: str, flag: str, dims: int) -> Any:
    if len(values) == 1 and ":" not in values[0]:
        parts = values[0].split(",")
        if len(parts) != dims:
            raise UsageError(f"{flag}: expected {'DX,DY' if dims == 2 else 'one number'}, got {values[0]!r}")
        numbers = [_number(p, flag) for p in parts]
        return tuple(numbers) if dims == 2 else numbers[0]
    return _trajectory(values, interpolation, flag)


def _ids_or_labels(text: str) -> tuple[list[int], list[str]]:
    ids, labels = [], []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            ids.append(int(part))
        except ValueError:
            labels.append(part)
    return ids, labels


def _edit_steps(op_flags: list[tuple[str, Any]]) -> list[tuple[str, Callable[[MaskSequence], MaskSequence]]]:
    """(description, step) for each flag, in order; --only and --interpolation change the later steps."""
    steps: list[tuple[str, Callable[[MaskSequence], MaskSequence]]] = []
    only: list[int] | None = None
    interpolation = "linear"
    for flag, value in op_flags:
        shown = f"{flag} {' '.join(value) if isinstance(value, list) else value or ''}".strip()
        step: Callable[[MaskSequence], MaskSequence] | None = None
        if flag == "--select":
            step = partial(
                ops.select_objects, **dict(zip(("object_ids", "labels"), _ids_or_labels(value), strict=True))
            )
        elif flag == "--drop":
            step = partial(
                ops.drop_objects, **dict(zip(("object_ids", "labels"), _ids_or_labels(value), strict=True))
            )
        elif flag == "--relabel":
            labels = {}
            for pair in value.split(","):
                key, eq, label = pair.partition("=")
                if not eq:
                    raise UsageError(f"--relabel: expected ID=LABEL, got {pair!r}")
                labels[_number(key, "--relabel", int)] = label
            step = partial(ops.relabel_objects, labels=labels)
        elif flag == "--only":
            only = None if value.strip().lower() == "all" else _int_list(value, "--only")
        elif flag in ("--interpolation", "--smooth"):
            interpolation = value or "smooth"
        elif flag == "--translate":
            step = partial(
                ops.translate, offset=_constant_or_path(value, interpolation, flag, 2), object_ids=only
            )
        elif flag == "--scale":
            step = partial(
                ops.scale, factor=_constant_or_path(value, interpolation, flag, 1), object_ids=only
            )
        elif flag == "--rotate":
            step = partial(
                ops.rotate, degrees=_constant_or_path(value, interpolation, flag, 1), object_ids=only
            )
        elif flag in ("--dilate", "--erode"):
            fn = ops.dilate if flag == "--dilate" else ops.erode
            step = partial(fn, radius_pixels=_number(value, flag, int), object_ids=only)
        elif flag == "--trim":
            start, sep, end = value.partition(":")
            step = partial(
                ops.trim,
                start_frame=_number(start or "0", flag, int),
                end_frame=_number(end, flag, int) if sep and end else None,
            )
        elif flag == "--speed":
            step = partial(ops.retime, speed=_number(value, flag))
        elif flag == "--reverse":
            step = ops.reverse
        elif flag in ("--loop", "--boomerang"):
            step = partial(ops.loop, repeat_count=_number(value, flag, int), ping_pong=flag == "--boomerang")
        elif flag == "--loop-frames":
            step = partial(ops.loop, target_num_frames=_number(value, flag, int))
        elif flag == "--fps":
            step = partial(ops.resample_fps, fps=_number(value, flag))
        elif flag == "--time-warp":
            step = partial(ops.time_warp, source_frames=_trajectory(value, interpolation, flag))
        if step is not None:
            steps.append((shown, step))
    return steps


def _run_edit(args: argparse.Namespace) -> int:
    if not args.ops:
        raise UsageError("no edits given; add flags like --select 1 --translate 10,0 (see --help)")
    steps = _edit_steps(args.ops)
    seq = _load(args.input)
    for shown, step in steps:
        try:
            seq = step(seq)
        except FieldError as exc:
            raise UsageError(f"{shown}: {exc}") from None
    _save(seq, args.output)
    return 0


# -- compose ----------------------------------------------------------------------------------------------------


def _add_compose(commands: argparse._SubParsersAction) -> None:
    parser = _subparser(
        commands,
        "compose",
        "Stack several mask sequences into one; later arguments cover earlier ones",
        "  kmono masks compose background.json dog.json ball.json -o scene.json --size 256x256 --fps 8\n"
        "  kmono masks compose a.json b.json -o ab.json --start 0,12 --keep-ids\n"
        "Each input is resized (nearest neighbour) and resampled to the output size and fps (default: the first\n"
        "input's). Object ids are renumbered 1..n in argument order (--keep-ids: only colliding ids change);\n"
        "the mapping is printed.",
    )
    parser.add_argument("inputs", nargs="+", help="mask files, bottom layer first")
    parser.add_argument("-o", "--output", required=True, help="where to write the result")
    parser.add_argument(
        "--size", type=_size, metavar="WxH", help="output frame size (default: the first input's)"
    )
    parser.add_argument("--fps", type=positive_float, help="output fps (default: the first input's)")
    parser.add_argument(
        "--frames", type=positive_int, help="output length (default: up to the last input's end)"
    )
    parser.add_argument(
        "--start", metavar="F1,F2,...", help="output frame at which each input starts (default: 0)"
    )
    parser.add_argument("--keep-ids", action="store_true", help="keep object ids unless they collide")
    parser.set_defaults(func=_guarded(_run_compose))


def _run_compose(args: argparse.Namespace) -> int:
    starts = _int_list(args.start, "--start") if args.start else [0] * len(args.inputs)
    if len(starts) != len(args.inputs):
        raise UsageError(f"--start: give one start frame per input ({len(args.inputs)}), got {len(starts)}")
    layers = [
        Layer(_load(path), z_order=i, start_frame=s)
        for i, (path, s) in enumerate(zip(args.inputs, starts, strict=True))
    ]
    width, height = args.size or (None, None)
    try:
        result = compose(
            layers,
            width=width,
            height=height,
            fps=args.fps,
            num_frames=args.frames,
            keep_object_ids=args.keep_ids,
        )
    except FieldError as exc:
        flags = {"width": "--size", "height": "--size", "fps": "--fps", "num_frames": "--frames"}
        where = flags.get(exc.field, exc.field)
        if exc.field.startswith("layers["):
            index = int(exc.field[len("layers[") : exc.field.index("]")])
            where = f"{args.inputs[index]} ({'--start' if 'start_frame' in exc.field else 'input'})"
        raise UsageError(f"{where}: {exc.reason}") from None
    for mapping in result.mappings:
        print(f"{args.inputs[mapping.layer_index]}: object {mapping.source_object_id} -> {mapping.object_id}")
    _save(result.sequence, args.output)
    return 0


# -- render -----------------------------------------------------------------------------------------------------


def _add_render(commands: argparse._SubParsersAction) -> None:
    parser = _subparser(
        commands,
        "render",
        "Render masks as a video: coloured masks on black, or over the video they came from",
        "  kmono masks render masks.json --video walk.mp4 -o check.mp4 --side-by-side\n"
        "  kmono masks render ball.json -o ball.gif",
    )
    parser.add_argument("input", help="the mask file")
    parser.add_argument("--video", help="draw the masks over this video (same size and frame count)")
    parser.add_argument("-o", "--output", required=True, help="the video to write (.mp4, .mov, .mkv, .gif)")
    parser.add_argument(
        "--side-by-side", action="store_true", help="the source video on the left (needs --video)"
    )
    parser.add_argument("--alpha", type=float, default=0.5, help="mask opacity over the video (default: 0.5)")
    parser.add_argument("--no-labels", action="store_true", help="do not write object labels")
    parser.set_defaults(func=_guarded(_run_render))


def _run_render(args: argparse.Namespace) -> int:
    seq = _load(args.input)
    if args.side_by_side and not args.video:
        raise UsageError("--side-by-side needs --video (the source to show beside the masks)")
    if not 0.0 <= args.alpha <= 1.0:
        raise UsageError(f"--alpha must be in [0, 1], got {args.alpha}")
    try:
        if args.video:
            if not Path(args.video).is_file():
                raise UsageError(f"no such video file: {args.video}")
            info = probe_video(args.video)
            if (info.width, info.height) != (seq.width, seq.height):
                raise UsageError(
                    f"the video is {info.width}x{info.height} but the masks are {seq.width}x{seq.height}; "
                    "resize the masks first (kmono masks compose IN --size WxH -o OUT)"
                )
            frames = iter_overlay(
                iter_video_frames(args.video, max_frames=seq.num_frames),
                seq,
                alpha=args.alpha,
                labels=not args.no_labels,
                side_by_side=args.side_by_side,
            )
        else:
            frames = iter_masks(seq, labels=not args.no_labels)
        write_video(args.output, frames, seq.fps)
    except UsageError:
        raise
    except Exception as exc:  # the masks (or the video) may be hostile: one line, never a traceback
        logger.debug("rendering %s failed", args.output, exc_info=True)
        raise UsageError(f"cannot render {args.output} from {args.input}: {error_reason(exc)}") from None
    print(f"wrote {args.output}: {seq.num_frames} frames @ {seq.fps:g} fps")
    return 0


# -- info -------------------------------------------------------------------------------------------------------


def _add_info(commands: argparse._SubParsersAction) -> None:
    parser = _subparser(
        commands,
        "info",
        "Describe a mask file: frames, size, fps, objects, frames each object is visible in, mean area",
        "  kmono masks info masks.json\n  kmono masks info masks.json --json | jq .objects",
    )
    parser.add_argument("input", help="the mask file")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(func=_guarded(_run_info))


def describe(seq: MaskSequence) -> dict[str, Any]:
    """The facts `kmono masks info` prints, as a JSON-able dict."""
    objects = []
    for obj in seq.objects:
        visible = [t for t in range(seq.num_frames) if seq.visible(t, obj.id)]
        areas = [seq.area(t, obj.id) for t in visible]
        objects.append(
            {
                "id": obj.id,
                "label": obj.label,
                "score": obj.score,
                "frames_visible": len(visible),
                "first_frame": visible[0] if visible else None,
                "last_frame": visible[-1] if visible else None,
                "mean_area": round(sum(areas) / len(areas), 2) if areas else 0.0,
            }
        )
    return {
        "num_frames": seq.num_frames,
        "width": seq.width,
        "height": seq.height,
        "fps": seq.fps,
        "duration_seconds": round(seq.duration, 4),
        "objects": objects,
    }


def _run_info(args: argparse.Namespace) -> int:
    facts = describe(_load(args.input))
    if args.json:
        print(json.dumps(facts, indent=2))
        return 0
    print(f"{args.input}: {facts['num_frames']} frames, {facts['width']}x{facts['height']}, "
          f"{facts['fps']:g} fps ({facts['duration_seconds']:g} s), {len(facts['objects'])} objects")  # fmt: skip
    if facts["objects"]:
        print(f"{'id':>5}  {'label':<16} {'score':>5}  {'visible':>9}  {'first-last':>10}  {'mean area':>9}")
    for o in facts["objects"]:
        span = f"{o['first_frame']}-{o['last_frame']}" if o["frames_visible"] else "-"
        print(f"{o['id']:>5}  {o['label'] or '-':<16} {o['score']:>5.2f}  "
              f"{o['frames_visible']:>4}/{facts['num_frames']:<4}  {span:>10}  {o['mean_area']:>9.1f}")  # fmt: skip
    return 0
