"""`kmono mvideo ...`: generate with, train, evaluate and annotate MVideo models; generate shapes-world data.

kmono mvideo train --recipe shapes-default --out generation/mvideo/shapes/default    # the embedded default
kmono mvideo train --recipe finetune --init-from ckpt/ --manifest data/manifest.jsonl --out runs/ft --lora-rank 64
accelerate launch -m generation.mvideo.training --recipe finetune ...           # multi-GPU / multi-node
kmono mvideo eval --out out/eval                                                # committed default, 64 samples
kmono mvideo annotate clips/ --tiny                                             # clips/manifest.jsonl
kmono mvideo shapes-data out/shapes --num 16                                    # captioned videos + masks
kmono mvideo generate --prompt "a red circle" --masks circle.json --out circle.mp4 # in process, no service

`generate` runs the engine in this process (`generation.mvideo.engine`: the service's engine, without the service)
from any working directory (the default model's path is absolute). What the model will not read of the prompt
(words its tokenizer does not know, text past its window) is printed as `kmono mvideo: warning: ...` (stderr)
before it runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import types
import typing
from pathlib import Path
from typing import Any

from generation.mvideo.defaults import SHAPES_DEFAULT_PATH
from generation.mvideo.defaults.engine_file import TEXT_ONLY_MODEL, TEXT_ONLY_MODES, read_engine_defaults
from generation.mvideo.shapes.spec import SHAPES_SAMPLING
from libs.cli.main import UsageError

logger = logging.getLogger(__name__)

# TrainConfig fields whose flags are written by hand: `--out` is required, `--recipe` picks the starting config
# (among the recipes). Every other field's flag is derived from the dataclass (`train_config_flags`).
_HAND_WRITTEN_FIELDS = ("out", "recipe")


def _flag_kwargs(hint: Any, help_text: str) -> dict[str, Any] | None:
    """argparse kwargs for a field annotated `hint` (X or X | None with X a scalar, bool or tuple[scalar, ...]);
    None for other types (no flag). Every flag defaults to None: "keep the recipe's value"."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        if len(args) != 1:
            return None
        hint = args[0]
    kwargs: dict[str, Any] = {"default": None, "help": help_text.replace("%", "%%")}
    if hint is bool:
        return {**kwargs, "action": argparse.BooleanOptionalAction}
    if hint in (int, float, str):
        return {**kwargs, "type": hint}
    item, *rest = typing.get_args(hint) or (None,)
    if typing.get_origin(hint) is tuple and rest == [Ellipsis] and item in (int, float, str):
        return {**kwargs, "type": item, "nargs": "+"}
    return None


def train_config_flags() -> dict[str, dict[str, Any]]:
    """The `--field-name` flag of each TrainConfig field (bar `_HAND_WRITTEN_FIELDS`) as argparse kwargs, typed by
    the field's annotation and documented by its docstring; fields of other types (the recipe's `shapes`
    model spec) have none."""
    from generation.mvideo.training.config import TrainConfig, field_docs

    hints = typing.get_type_hints(TrainConfig)
    docs = field_docs(TrainConfig)
    flags = {}
    for field in dataclasses.fields(TrainConfig):
        if field.name in _HAND_WRITTEN_FIELDS:
            continue
        kwargs = _flag_kwargs(hints[field.name], docs.get(field.name, ""))
        if kwargs is not None:
            flags[field.name] = kwargs
    return flags


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of `kmono mvideo train` (also `python -m generation.mvideo.training`): one per TrainConfig field."""
    from generation.mvideo.training.config import RECIPES, TrainConfig, field_docs

    recipes = "; ".join(f"{name}: {r.description}" for name, r in RECIPES.items())
    parser.add_argument(
        "--recipe", default="shapes-default", choices=sorted(RECIPES), help=f"starting config ({recipes})"
    )
    parser.add_argument("--out", required=True, help=field_docs(TrainConfig).get("out"))
    parser.add_argument(
        "--resume", help="'latest' (newest checkpoint in the checkpoint folder) or a checkpoint folder"
    )
    for name, kwargs in train_config_flags().items():
        parser.add_argument("--" + name.replace("_", "-"), dest=name, **kwargs)
    parser.add_argument(
        "--freeze-text-encoder",
        dest="train_text_encoder",
        action="store_false",
        help="the same as --no-train-text-encoder",
    )


def config_from_args(args: argparse.Namespace):
    """The recipe's TrainConfig with the given flags applied."""
    from generation.mvideo.training.config import get_recipe

    config = get_recipe(args.recipe)
    changes = {}
    for name, kwargs in train_config_flags().items():
        value = getattr(args, name, None)
        if value is not None:
            changes[name] = tuple(value) if kwargs.get("nargs") == "+" else value
    changes["out"] = args.out
    return config.replace(**changes)


def run_train(args: argparse.Namespace) -> int:
    from generation.mvideo.training.trainer import train

    try:
        config = config_from_args(args)
        config.validate()
    except ValueError as e:
        raise UsageError(str(e)) from e
    if args.resume not in (None, "latest") and not Path(args.resume).is_dir():
        raise UsageError(f"no checkpoint folder at {args.resume}")
    result = train(config, resume=args.resume)
    if not result.is_main_process:
        return 0
    if result.out is not None:
        print(
            f"exported {result.out} after {result.step} steps in {result.wall_seconds / 60:.1f} min "
            f"(last loss {result.last_loss:.4f})"
        )
    else:
        print(f"stopped at step {result.step}; checkpoint {result.checkpoint} (resume with --resume latest)")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    import torch

    from generation.mvideo.shapes.evaluation import EvalConfig, evaluate, save_grid
    from generation.mvideo.shapes.model import load_shapes_default
    from generation.mvideo.shapes.motions import HELD_OUT_FAMILIES

    if args.threads:
        torch.set_num_threads(args.threads)
    if min(args.num_samples, args.steps, args.batch_size, args.family_samples or 1) < 1:
        raise UsageError("--num-samples, --steps, --batch-size and --family-samples must be >= 1")
    families = HELD_OUT_FAMILIES
    if args.families is not None:
        families = () if args.families == "none" else tuple(f for f in args.families.split(",") if f)
        unknown = sorted(set(families) - set(HELD_OUT_FAMILIES))
        if unknown:
            raise UsageError(
                f"unknown motion families {unknown}; choose from {', '.join(HELD_OUT_FAMILIES)} or none"
            )
    try:
        pipe = load_shapes_default(args.model)
    except FileNotFoundError as e:
        raise UsageError(str(e)) from e
    saved = read_engine_defaults(args.model or SHAPES_DEFAULT_PATH) or {}
    config = EvalConfig(
        text_only=args.text_only or saved.get("text_only", TEXT_ONLY_MODEL),
        num_samples=args.num_samples,
        seed=args.seed,
        first_sample=args.first_sample,
        num_inference_steps=args.steps,
        batch_size=args.batch_size,
        guidance_scale=args.guidance_scale,
        mask_guidance_scale=args.mask_guidance_scale,
        extras=not args.no_extras,
        families=families,
        **({"family_samples": args.family_samples} if args.family_samples else {}),
    )
    report = evaluate(pipe, config)
    if args.out:
        paths = save_grid(report, args.out, num=args.grid_samples)
        (Path(args.out) / "metrics.json").write_text(json.dumps(report.metrics(), indent=2) + "\n")
        print("wrote " + ", ".join(str(p) for p in paths))
    print(report.table())
    print(report.summary_line())
    return 0


def run_annotate(args: argparse.Namespace) -> int:
    from generation.masks import MaskExtractor
    from generation.mvideo.training.annotate import annotate_folder

    if args.tiny:
        extractor = MaskExtractor.tiny(seed=args.seed)
    else:
        kwargs = {}
        if args.grounding_dino:
            kwargs["grounding_dino"] = args.grounding_dino
        if args.sam2:
            kwargs["sam2"] = args.sam2
        extractor = MaskExtractor.from_pretrained(**kwargs)
    try:
        entries = annotate_folder(
            args.folder,
            extractor,
            manifest=args.out,
            masks_dir=args.masks_dir,
            query=args.query,
            mask_format=args.format,
            progress=lambda n, total, video: print(f"[{n}/{total}] {video}", file=sys.stderr),
            box_threshold=args.box_threshold,
            text_threshold=args.text_threshold,
            redetect_every=args.redetect_every,
        )
    except (ValueError, FileNotFoundError) as e:
        raise UsageError(str(e)) from e
    manifest = args.out or str(Path(args.folder) / "manifest.jsonl")
    print(f"wrote {manifest} ({len(entries)} videos)")
    return 0


def run_shapes_data(args: argparse.Namespace) -> int:
    from generation.mvideo.shapes.world import ShapesWorld
    from generation.mvideo.training.data import ManifestEntry, write_manifest
    from libs.media import save, write_video

    if args.num < 1:
        raise UsageError("--num must be >= 1")
    out = Path(args.out)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    world = ShapesWorld(height=args.size, width=args.size, num_frames=args.frames)
    entries = []
    for i in range(args.num):
        sample = world.sample(args.seed + i, args.split)
        video = out / f"shapes_{i:05d}.mp4"
        write_video(video, sample.video, sample.fps, crf=0)
        video.with_suffix(".txt").write_text(sample.caption + "\n")
        masks = out / "masks" / f"shapes_{i:05d}.json"
        save(sample.masks, masks)
        entries.append(ManifestEntry(video=video, caption=sample.caption, masks=masks))
    write_manifest(out / "manifest.jsonl", entries)
    print(f"wrote {args.num} videos, captions and masks, and {out / 'manifest.jsonl'}")
    return 0


def run_generate(args: argparse.Namespace) -> int:
    from generation.mvideo.engine import load_mvideo_engine
    from generation.mvideo.jobs import VideoLimits, VideoRequest, plan
    from libs.errors import FieldError
    from libs.media import load, save, write_video

    if not args.prompt.strip():
        raise UsageError("--prompt is empty: say what the video shows, e.g. 'a red circle'")
    masks = None
    if args.masks is not None:
        try:
            masks = load(args.masks)
        except Exception as exc:  # whatever a bad file makes a decoder raise: one line, never a traceback
            from generation.masks.cli import error_reason

            logger.debug("reading %s failed", args.masks, exc_info=True)
            raise UsageError(f"--masks: cannot read {args.masks}: {error_reason(exc)}") from None
    try:
        engine = load_mvideo_engine(path=args.model, tiny=args.tiny, torch_threads=args.threads)
    except FileNotFoundError as exc:
        raise UsageError(str(exc)) from None
    request = VideoRequest(
        prompt=args.prompt,
        negative_prompt=args.negative_prompt,
        masks=masks,
        num_frames=args.frames or None,
        num_inference_steps=args.steps or None,
        seed=args.seed,
        preview_every=0,
    )
    try:
        job = plan(request, engine.spec, VideoLimits())
    except FieldError as exc:
        raise UsageError(str(exc)) from None
    for warning in engine.check_prompt(job).warnings:
        print(f"kmono mvideo: warning: {warning}", file=sys.stderr)
    out = Path(args.out)
    if out.is_dir() or not out.suffix:  # a folder: the video goes inside it (checked before the slow part)
        out = out / "video.mp4"
    video = engine.generate(job, lambda step, total, preview: None)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_video(out, video.frames, job.fps)
    frames, height, width = video.frames.shape[:3]
    print(f"wrote {out} ({frames} frames {width}x{height} at {job.fps:g} fps, seed {args.seed})")
    if masks is None and video.masks is not None:  # the engine planned the motion from the prompt
        layout = out.with_name(out.stem + ".layout.json")
        save(video.masks, layout)
        print(
            f"wrote {layout}: the layout planned from the prompt; edit it (kmono masks edit) and pass it back "
            "with --masks to change the motion and keep the words"
        )
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "mvideo",
        help="MVideo: generate, train, evaluate, annotate data, shapes-world data",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="mvideo_command", metavar="COMMAND", required=True)

    train = commands.add_parser(
        "train",
        help="train or fine-tune an MVideo pipeline (accelerate; recipes)",
        description="Train with accelerate on one CPU/GPU; for several GPUs or nodes run "
        "`accelerate launch [--multi_gpu ...] -m generation.mvideo.training` with the same flags "
        "(configure with `accelerate config`).",
    )
    add_train_arguments(train)
    train.set_defaults(func=run_train)

    evaluate = commands.add_parser(
        "eval",
        help="mask-following IoU, binding, text-only colours and clean frames of a shapes-world model",
        description="Generate held-out shapes-world captions + masks with and without the mask condition "
        "(same seeds), segment the objects, report mean IoU and colour accuracy; then (unless --no-extras) "
        "per-frame and pair-union IoU, shifted masks, binding with shuffled slot order, text-only colours and "
        "presence, mask-only IoU and background noise, and per-frame mIoU on each held-out motion family. The "
        "last line reads `miou_masked=<float> miou_unmasked=<float> color_acc=<float>` followed by the new "
        "key=value pairs.",
    )
    evaluate.add_argument(
        "--model", help="shapes-world MVideoPipeline folder (default: the committed default)"
    )
    evaluate.add_argument("--num-samples", type=int, default=64)
    evaluate.add_argument(
        "--steps",
        type=int,
        default=SHAPES_SAMPLING["num_inference_steps"],
        help="DDIM steps (default: %(default)s)",
    )
    evaluate.add_argument("--seed", type=int, default=0, help="noise seed of the first sample")
    evaluate.add_argument(
        "--first-sample",
        type=int,
        default=0,
        help="first held-out sample (default 0: samples 0..N-1; e.g. 1000 for a validation range)",
    )
    evaluate.add_argument("--batch-size", type=int, default=16)
    evaluate.add_argument("--guidance-scale", type=float, default=1.0, help="text guidance (off at <= 1)")
    evaluate.add_argument("--mask-guidance-scale", type=float, default=1.0)
    evaluate.add_argument("--grid-samples", type=int, default=6, help="samples in the side-by-side grid")
    evaluate.add_argument("--out", help="folder for grid.gif, grid.png and metrics.json")
    evaluate.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    evaluate.add_argument(
        "--no-extras",
        action="store_true",
        help="only today's three measures (no shifted masks, binding, text-only, mask-only, noise, families)",
    )
    evaluate.add_argument(
        "--families",
        help="comma-separated held-out motion families to score (fast, zigzag, ...), or 'none' "
        "(default: every held-out family)",
    )
    evaluate.add_argument(
        "--family-samples", type=int, help="held-out samples per motion family (default: 32)"
    )
    evaluate.add_argument(
        "--text-only",
        choices=TEXT_ONLY_MODES,
        help="how the text-only mode is measured: 'layout' plans masks from the caption first, 'model' drops "
        "the masks (default: what the model folder's engine.json says; the mask-dropped scores are always "
        "reported too, as color_acc_unmasked and text_presence_unmasked)",
    )
    evaluate.set_defaults(func=run_eval)

    annotate = commands.add_parser(
        "annotate",
        help="build a training manifest from a folder of captioned videos with the mask extractor",
        description="Captions from captions.jsonl or sidecar <video>.txt; masks by GroundingDINO + SAM2 with the "
        "caption's noun phrases (or --query) as the query.",
    )
    annotate.add_argument("folder")
    annotate.add_argument("--out", help="manifest path (default: FOLDER/manifest.jsonl)")
    annotate.add_argument("--masks-dir", help="mask folder (default: masks/ beside the manifest)")
    annotate.add_argument("--query", help="extractor query for every video, e.g. 'person. dog.'")
    annotate.add_argument("--format", default="json", choices=["json", "npz", "pb", "zip"], help="mask codec")
    annotate.add_argument(
        "--tiny", action="store_true", help="tiny random extractor (tests; masks are noise)"
    )
    annotate.add_argument("--seed", type=int, default=0, help="seed of the tiny extractor")
    annotate.add_argument("--grounding-dino", help="GroundingDINO folder or hub id")
    annotate.add_argument("--sam2", help="SAM2 folder or hub id")
    annotate.add_argument("--box-threshold", type=float, default=0.35)
    annotate.add_argument("--text-threshold", type=float, default=0.25)
    annotate.add_argument("--redetect-every", type=int, default=20)
    annotate.set_defaults(func=run_annotate)

    shapes = commands.add_parser(
        "shapes-data",
        help="write shapes-world videos (MP4), captions (.txt), exact masks and a manifest",
    )
    shapes.add_argument("out")
    shapes.add_argument("--num", type=int, default=16)
    shapes.add_argument("--seed", type=int, default=0)
    shapes.add_argument("--split", default="train")
    shapes.add_argument("--size", type=int, default=32)
    shapes.add_argument("--frames", type=int, default=8)
    shapes.set_defaults(func=run_shapes_data)

    generate = commands.add_parser(
        "generate",
        help="generate one video in this process (no service) and write it as MP4",
        description="Runs the MVideo engine in this process; prompt words the model does not know are warned "
        "about (stderr). For a service, progress and overlays: `kmono video generate`.",
    )
    generate.add_argument("--prompt", required=True, help="what the video shows")
    generate.add_argument("--negative-prompt", default="", help="what it must not show")
    generate.add_argument(
        "--masks", type=Path, help="mask sequence file to follow (.json COCO, .npz, .pb, .zip)"
    )
    generate.add_argument(
        "--model",
        default=str(SHAPES_DEFAULT_PATH),
        help="MVideo pipeline folder (default: the committed shapes-world default)",
    )
    generate.add_argument("--tiny", action="store_true", help="tiny random MVideo instead of --model (tests)")
    generate.add_argument("--frames", type=int, default=0, help="0: the masks' or one clip of the model")
    generate.add_argument("--steps", type=int, default=0, help="denoising steps; 0: the model's default")
    generate.add_argument("--seed", type=int, default=0, help="noise seed (default: %(default)s)")
    generate.add_argument(
        "--out",
        default="video.mp4",
        help="output video (.mp4, .gif, ...) or a folder for video.mp4 (default: %(default)s)",
    )
    generate.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    generate.set_defaults(func=run_generate)
