"""`kmono mvideo ...`: train, evaluate and annotate MVideo models; generate shapes-world data.

kmono mvideo train --recipe shapes-default --out generation/mvideo/shapes/default    # the embedded default
kmono mvideo train --recipe finetune --init-from ckpt/ --manifest data/manifest.jsonl --out runs/ft --lora-rank 64
accelerate launch -m generation.mvideo.training --recipe finetune ...           # multi-GPU / multi-node
kmono mvideo eval --out out/eval                                                # committed default, 64 samples
kmono mvideo annotate clips/ --tiny                                             # clips/manifest.jsonl
kmono mvideo shapes-data out/shapes --num 16                                    # captioned videos + masks
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from generation.mvideo.shapes.spec import SHAPES_SAMPLING
from libs.cli.main import UsageError

logger = logging.getLogger(__name__)

# Flags of `train` that map one-to-one onto TrainConfig fields (flag --max-steps -> field max_steps).
_TRAIN_FIELDS: dict[str, tuple[type, str]] = {
    "manifest": (
        str,
        "JSONL manifest of (video, caption, masks) (default: the recipe's data, e.g. the shapes world)",
    ),
    "init_from": (
        str,
        "MVideoPipeline folder or hub id to fine-tune (default: the recipe's model from scratch)",
    ),
    "seed": (int, "random seed (model init, data order, noise)"),
    "max_steps": (int, "optimizer steps"),
    "batch_size": (int, "videos per process and micro-batch"),
    "gradient_accumulation_steps": (int, "micro-batches per optimizer step"),
    "learning_rate": (float, "peak AdamW learning rate"),
    "lr_warmup_steps": (int, "linear warmup steps"),
    "lr_schedule": (str, "constant | cosine"),
    "weight_decay": (float, "AdamW weight decay"),
    "max_grad_norm": (float, "gradient clipping norm (0: off)"),
    "ema_decay": (float, "EMA decay of the exported weights (0: no EMA)"),
    "p_text_drop": (float, "probability of dropping a sample's caption (text guidance)"),
    "p_mask_drop": (float, "probability of dropping a sample's mask, independently (mask guidance)"),
    "consistency_weight": (float, "lambda of the consistency loss"),
    "consistency_teacher": (str, "auto | base | ema | none (see generation/mvideo/training/losses.py)"),
    "object_loss_weight": (float, "extra loss weight inside the condition masks (0: plain MSE)"),
    "object_loss_dilation": (int, "cells the object loss weight extends past the masks"),
    "binding_loss_weight": (
        float,
        "weight of the attention binding loss (mask slot k -> k-th phrase); 0: off",
    ),
    "timestep_bias": (float, "1: uniform timesteps; > 1 favours high noise"),
    "lora_rank": (int, "LoRA rank on the transformer attention projections (0: full fine-tuning)"),
    "lora_alpha": (float, "LoRA alpha (default: the rank)"),
    "num_frames": (int, "frames per training clip (manifest data)"),
    "height": (int, "training height (manifest data)"),
    "width": (int, "training width (manifest data)"),
    "frame_stride": (int, "take every n-th frame of a manifest video"),
    "num_workers": (int, "data-loader worker processes"),
    "num_threads": (int, "torch CPU threads (0: torch's default; 1 is steadier on a shared CPU)"),
    "checkpoint_dir": (str, "checkpoint folder (default: OUT/checkpoints)"),
    "checkpoint_every": (int, "save a resumable checkpoint every N steps (0: never)"),
    "keep_checkpoints": (int, "checkpoints kept (oldest removed)"),
    "log_every": (int, "update the loss on the progress bar every N steps"),
    "stop_after": (int, "stop after this step with a checkpoint and no export (split a run; resume later)"),
}


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of `kmono mvideo train` (also `python -m generation.mvideo.training`)."""
    from generation.mvideo.training.config import RECIPES

    recipes = "; ".join(f"{name}: {r.description}" for name, r in RECIPES.items())
    parser.add_argument(
        "--recipe", default="shapes-default", choices=sorted(RECIPES), help=f"starting config ({recipes})"
    )
    parser.add_argument("--out", required=True, help="folder of the exported MVideoPipeline")
    parser.add_argument(
        "--resume", help="'latest' (newest checkpoint in the checkpoint folder) or a checkpoint folder"
    )
    for name, (kind, help_text) in _TRAIN_FIELDS.items():
        parser.add_argument("--" + name.replace("_", "-"), dest=name, type=kind, default=None, help=help_text)
    text = parser.add_mutually_exclusive_group()
    text.add_argument("--train-text-encoder", dest="train_text_encoder", action="store_true", default=None)
    text.add_argument("--freeze-text-encoder", dest="train_text_encoder", action="store_false")
    parser.add_argument("--no-progress", action="store_true", help="log lines instead of a progress bar")


def config_from_args(args: argparse.Namespace):
    """The recipe's TrainConfig with the given flags applied."""
    from generation.mvideo.training.config import get_recipe

    config = get_recipe(args.recipe)
    changes = {name: getattr(args, name) for name in _TRAIN_FIELDS if getattr(args, name, None) is not None}
    if args.train_text_encoder is not None:
        changes["train_text_encoder"] = args.train_text_encoder
    changes["out"] = args.out
    if args.no_progress:
        changes["progress"] = False
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

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.num_samples < 1 or args.steps < 1 or args.batch_size < 1:
        raise UsageError("--num-samples, --steps and --batch-size must be >= 1")
    try:
        pipe = load_shapes_default(args.model)
    except FileNotFoundError as e:
        raise UsageError(str(e)) from e
    config = EvalConfig(
        num_samples=args.num_samples,
        seed=args.seed,
        first_sample=args.first_sample,
        num_inference_steps=args.steps,
        batch_size=args.batch_size,
        guidance_scale=args.guidance_scale,
        mask_guidance_scale=args.mask_guidance_scale,
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


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "mvideo",
        help="MVideo: train, evaluate, annotate data, shapes-world data",
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
        help="mask-following IoU and prompt-colour accuracy of a shapes-world model",
        description="Generate held-out shapes-world captions + masks with and without the mask condition "
        "(same seeds), segment the objects, report mean IoU and colour accuracy. The last line reads "
        "`miou_masked=<float> miou_unmasked=<float> color_acc=<float>`.",
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
