"""Evaluation of a shapes-world MVideo: do generated objects follow the condition masks and the prompt colours?

    report = evaluate(load_shapes_default(), EvalConfig(num_samples=64))
    report.summary_line()               # "miou_masked=0.6537 miou_unmasked=0.0063 color_acc=1.0000"
    save_grid(report, "out/eval")       # grid.png / grid.gif: condition | generated masked | generated unmasked

Protocol (our choices):

- **Samples.** `num_samples` held-out shapes-world samples (`split="eval"`, seeds 0..N-1: never seen in
  training; `first_sample` shifts the range, e.g. to choose sampling settings on samples the report never
  uses); each caption and mask sequence is generated twice with the same initial noise (generator seeded
  `seed + i`): with the mask condition, and with it dropped (`mask_video=None`, same model, same settings).
- **Colour-agnostic segmentation.** Per frame, the background is fitted as a plane per RGB channel (a + b x +
  c y, which covers solid and gradient backgrounds) by least squares, refitted twice on the pixels within
  `inlier_threshold` of the previous fit; the foreground is every pixel farther than `fg_threshold` (RGB
  distance in [0, 1] units) from the fit. Object colours are all farther than 0.35 from every background.
- **IoU** of a video = |fg AND M| / |fg OR M| over all frames, M = the union of the condition masks; `miou_*`
  averages it over videos (`miou_masked`: generated with masks, `miou_unmasked`: mask condition dropped,
  `miou_random_masks`: the masked generation against another sample's masks, a baseline for "draws objects
  somewhere"). By colour (`miou_color_*`): per object, the foreground pixels whose nearest object colour is the
  captioned one against that object's mask, averaged over objects, then over videos.
- **Prompt-colour accuracy** (`color_acc`, masked generations): an object counts as right when at least a
  quarter of its mask's pixels are foreground and their median colour's nearest object colour is the captioned
  one. `color_acc_unmasked`: an object counts as right when at least a quarter of its mask area (summed over the
  frames) of foreground pixels has the captioned colour as nearest object colour, anywhere in the frame.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from generation.mvideo.pipelines import MVideoPipeline
from generation.mvideo.pipelines.pipeline_mvideo import vae_compression
from generation.mvideo.shapes.segment import COLOR_NAMES, foreground, iou, nearest_color
from generation.mvideo.shapes.spec import SHAPES_SAMPLING
from generation.mvideo.shapes.world import ShapesSample, ShapesWorld
from libs.media import write_video

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvalConfig:
    num_samples: int = 64
    seed: int = 0
    first_sample: int = 0
    """Index of the first held-out sample; the default set is 0..N-1 (choose settings on another range)."""
    num_inference_steps: int = SHAPES_SAMPLING["num_inference_steps"]
    batch_size: int = 16
    guidance_scale: float = 1.0
    mask_guidance_scale: float = 1.0
    split: str = "eval"
    fg_threshold: float = 0.2
    inlier_threshold: float = 0.12


@dataclass
class EvalReport:
    """Metrics (see the module docstring) and the videos behind them."""

    miou_masked: float
    miou_unmasked: float
    miou_random_masks: float
    miou_color_masked: float
    miou_color_unmasked: float
    color_acc: float
    color_acc_unmasked: float
    num_samples: int
    samples: list[ShapesSample] = field(default_factory=list, repr=False)
    masked: np.ndarray | None = field(default=None, repr=False)  # (N, T, H, W, 3) float in [0, 1]
    unmasked: np.ndarray | None = field(default=None, repr=False)

    def metrics(self) -> dict[str, float]:
        return {
            "miou_masked": self.miou_masked,
            "miou_unmasked": self.miou_unmasked,
            "miou_random_masks": self.miou_random_masks,
            "miou_color_masked": self.miou_color_masked,
            "miou_color_unmasked": self.miou_color_unmasked,
            "color_acc": self.color_acc,
            "color_acc_unmasked": self.color_acc_unmasked,
            "num_samples": float(self.num_samples),
        }

    def table(self) -> str:
        rows = [
            ("", "with masks", "mask dropped"),
            ("mIoU (colour-agnostic)", f"{self.miou_masked:.4f}", f"{self.miou_unmasked:.4f}"),
            (
                "mIoU (by captioned colour)",
                f"{self.miou_color_masked:.4f}",
                f"{self.miou_color_unmasked:.4f}",
            ),
            ("prompt-colour accuracy", f"{self.color_acc:.4f}", f"{self.color_acc_unmasked:.4f}"),
            ("mIoU vs another sample's masks", f"{self.miou_random_masks:.4f}", "-"),
        ]
        width = max(len(r[0]) for r in rows)
        return "\n".join(f"{a:<{width}}  {b:>12}  {c:>12}" for a, b, c in rows)

    def summary_line(self) -> str:
        return f"miou_masked={self.miou_masked:.4f} miou_unmasked={self.miou_unmasked:.4f} color_acc={self.color_acc:.4f}"


def score_video(video: np.ndarray, sample: ShapesSample, config: EvalConfig) -> dict[str, float]:
    """Per-video metrics of one generated video (T, H, W, 3) in [0, 1] against its condition."""
    fg = foreground(video, config.fg_threshold, config.inlier_threshold)
    masks = sample.id_maps > 0
    colors = nearest_color(video)  # (T, H, W)
    color_ious, right_in_mask, right_anywhere = [], [], []
    for k, obj in enumerate(sample.objects, start=1):
        target = COLOR_NAMES.index(obj.color)
        obj_mask = sample.id_maps == k
        by_color = fg & (colors == target)
        color_ious.append(iou(by_color, obj_mask))
        area = int(obj_mask.sum())
        inside = obj_mask & fg
        ok = inside.sum() >= 0.25 * area and area > 0
        if ok:
            median = np.median(video[inside], axis=0)
            ok = int(nearest_color(median)) == target
        right_in_mask.append(float(ok))
        right_anywhere.append(float(by_color.sum() >= 0.25 * area and area > 0))
    return {
        "iou": iou(fg, masks),
        "iou_color": float(np.mean(color_ious)),
        "color_in_mask": float(np.mean(right_in_mask)),
        "color_anywhere": float(np.mean(right_anywhere)),
        "objects": float(len(sample.objects)),
        "_right_in_mask": right_in_mask,
        "_right_anywhere": right_anywhere,
    }


# ----------------------------------------------------------------------------------------------- generation


def world_for(pipe: MVideoPipeline) -> ShapesWorld:
    """The shapes world matching a pipeline's sample size and mask slots."""
    spatial, _ = vae_compression(pipe.vae)
    config = pipe.transformer.config
    slots = pipe.mask_encoder.config.num_mask_slots
    return ShapesWorld(
        height=config.sample_height * spatial,
        width=config.sample_width * spatial,
        num_frames=config.sample_frames,
        max_objects=min(3, slots),
    )


def generate(
    pipe: MVideoPipeline,
    samples: list[ShapesSample],
    config: EvalConfig,
    *,
    with_masks: bool,
    first_seed: int,
) -> np.ndarray:
    """(N, T, H, W, 3) float in [0, 1]: one video per sample, sample i from the noise of seed `first_seed + i`."""
    slots = pipe.mask_encoder.config.num_mask_slots
    max_text = getattr(pipe.transformer.config, "max_text_seq_length", 226)
    videos = []
    for start in range(0, len(samples), config.batch_size):
        chunk = samples[start : start + config.batch_size]
        masks = None
        if with_masks:
            masks = torch.from_numpy(np.stack([s.slot_masks(slots) for s in chunk]).astype(np.float32))
        generators = [torch.Generator().manual_seed(first_seed + start + j) for j in range(len(chunk))]
        out = pipe(
            [s.caption for s in chunk],
            mask_video=masks,
            num_frames=chunk[0].num_frames,
            height=chunk[0].video.shape[1],
            width=chunk[0].video.shape[2],
            num_inference_steps=config.num_inference_steps,
            guidance_scale=config.guidance_scale,
            mask_guidance_scale=config.mask_guidance_scale,
            generator=generators,
            output_type="np",
            max_sequence_length=max_text,
        ).frames
        videos.append(np.asarray(out, dtype=np.float32))
    return np.concatenate(videos)


def evaluate(
    pipe: MVideoPipeline, config: EvalConfig | None = None, world: ShapesWorld | None = None
) -> EvalReport:
    """Generate held-out samples with and without masks and score them (module docstring)."""
    config = config or EvalConfig()
    world = world or world_for(pipe)
    pipe.set_progress_bar_config(disable=True)
    first = config.first_sample
    samples = [world.sample(i, config.split) for i in range(first, first + config.num_samples)]
    masked = generate(pipe, samples, config, with_masks=True, first_seed=config.seed)
    unmasked = generate(pipe, samples, config, with_masks=False, first_seed=config.seed)
    scores_m = [score_video(v, s, config) for v, s in zip(masked, samples, strict=True)]
    scores_u = [score_video(v, s, config) for v, s in zip(unmasked, samples, strict=True)]
    n = len(samples)
    random_ious = [
        iou(
            foreground(masked[i], config.fg_threshold, config.inlier_threshold),
            samples[(i + 1) % n].id_maps > 0,
        )
        for i in range(n)
    ]

    def per_object(scores: list[dict], key: str) -> float:
        return float(np.mean([x for s in scores for x in s[key]]))

    return EvalReport(
        miou_masked=float(np.mean([s["iou"] for s in scores_m])),
        miou_unmasked=float(np.mean([s["iou"] for s in scores_u])),
        miou_random_masks=float(np.mean(random_ious)),
        miou_color_masked=float(np.mean([s["iou_color"] for s in scores_m])),
        miou_color_unmasked=float(np.mean([s["iou_color"] for s in scores_u])),
        color_acc=per_object(scores_m, "_right_in_mask"),
        color_acc_unmasked=per_object(scores_u, "_right_anywhere"),
        num_samples=n,
        samples=samples,
        masked=masked,
        unmasked=unmasked,
    )


# ----------------------------------------------------------------------------------------------- grid


def condition_frames(sample: ShapesSample) -> np.ndarray:
    """(T, H, W, 3) uint8: each object's mask in its captioned colour on dark grey."""
    palette = np.array([(40, 40, 40)] + [obj.rgb for obj in sample.objects], dtype=np.uint8)
    return palette[sample.id_maps]


def grid_frames(report: EvalReport, num: int, scale: int = 4) -> np.ndarray:
    """(T, rows * H * scale, 3 * W * scale + gaps, 3) uint8: per sample, condition | masked | unmasked."""
    if report.masked is None or report.unmasked is None:
        raise ValueError("the report holds no videos")
    gap = 2
    rows = []
    for i in range(min(num, report.num_samples)):
        panels = [
            condition_frames(report.samples[i]),
            (report.masked[i] * 255).round().astype(np.uint8),
            (report.unmasked[i] * 255).round().astype(np.uint8),
        ]
        t, h, w, _ = panels[0].shape
        spacer = np.full((t, h, gap, 3), 255, dtype=np.uint8)
        row = np.concatenate([panels[0], spacer, panels[1], spacer, panels[2]], axis=2)
        rows.append(row)
        rows.append(np.full((t, gap, row.shape[2], 3), 255, dtype=np.uint8))
    grid = np.concatenate(rows[:-1], axis=1)
    return grid.repeat(scale, axis=1).repeat(scale, axis=2)


def save_grid(
    report: EvalReport, out_dir: str | os.PathLike[str], num: int = 6, fps: float = 4.0
) -> list[Path]:
    """Write grid.gif (animated) and grid.png (all frames, left to right) into `out_dir`; returns the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    frames = grid_frames(report, num)
    gif = out / "grid.gif"
    write_video(gif, frames, fps)
    t, h, w, _ = frames.shape
    strip = np.concatenate(
        [np.concatenate([f, np.full((h, 6, 3), 255, np.uint8)], axis=1) for f in frames], axis=1
    )
    png = out / "grid.png"
    Image.fromarray(strip).save(png)
    return [gif, png]
