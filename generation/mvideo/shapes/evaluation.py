"""Evaluation of a shapes-world MVideo: do generated objects follow the condition masks and the prompt colours,
frame by frame, on motions it never saw, with each object bound to its own words and with either control alone?

    report = evaluate(load_shapes_default(), EvalConfig(num_samples=64))
    report.summary_line()     # "miou_masked=0.6537 miou_unmasked=0.0063 color_acc=1.0000 miou_frame=... ..."
    save_grid(report, "out/eval")   # grid.png / grid.gif (condition | with masks | mask dropped | planned), families.png
    EvalConfig(extras=False, families=())   # today's evaluation only (masked and mask-dropped generations)

Protocol (our choices):

- **Samples.** `num_samples` held-out shapes-world samples (`split="eval"`, seeds 0..N-1: never seen in
  training; `first_sample` shifts the range, e.g. to choose sampling settings on samples the report never
  uses). Every generation of sample i starts from the same noise (generator seeded `seed + i`): with its masks,
  with the mask condition dropped (`mask_video=None`, text only), and, with `extras`, with its masks shifted,
  with its slots shuffled, and with an empty prompt (mask only).
- **Colour-agnostic segmentation.** Per frame, the background is fitted as a plane per RGB channel (a + b x +
  c y, which covers solid and gradient backgrounds) by least squares, refitted twice on the pixels within
  `inlier_threshold` of the previous fit; the foreground is every pixel farther than `fg_threshold` (RGB
  distance in [0, 1] units) from the fit. Object colours are all farther than 0.35 from every background.
- **IoU** of a video = |fg AND M| / |fg OR M| over all frames, M = the union of the condition masks; `miou_*`
  averages it over videos (`miou_masked`: generated with masks, `miou_unmasked`: mask condition dropped,
  `miou_random_masks`: the masked generation against another sample's masks, a baseline for "draws objects
  somewhere"). By colour (`miou_color_*`): per object, the foreground pixels whose nearest object colour is the
  captioned one against that object's mask, averaged over objects, then over videos.
- **Per-frame IoU** (`miou_frame`): the IoU of each frame's foreground with that frame's masks, averaged over
  the frames where either is non-empty, then over videos; a pooled IoU lets good frames hide bad ones.
  `miou_pair_union` scores the same frames against the union of the masks of the frame and its temporal-pair
  partner (frames 2i, 2i + 1): a model that draws both frames of a pair alike scores higher there, so
  `miou_pair_union - miou_frame` measures "doubling" (a perfect model: <= 0, since the union is bigger).
- **Shifted masks** (`extras`): every object's masks translated by one vector per video (`variants.shift_vector`:
  `shift_px` long at 32 px, scaled with the frame, keeping objects in frame where possible, drawn from the
  sample's seed). `miou_shifted`: per-frame IoU with the shifted masks (compare with `miou_frame`);
  `iou_original_place`: per-frame IoU with the original masks minus the shifted ones (want ~0).
- **Binding** (`extras`, samples of two or more objects): the slots are shuffled against the caption's phrase
  order (a non-identity permutation drawn from the sample's seed) and each slot's label, its object's "colour
  shape" phrase, is passed as the pipeline's `mask_labels`. `binding_acc`: per object, `color_acc`'s test
  against the object's own mask and phrase colour. A pipeline without `mask_labels` gets the shuffled slots
  alone (logged, and the table says so): the score then shows whether colour goes by slot order.
- **Prompt-colour accuracy** (`color_acc`, masked generations): an object counts as right when at least a
  quarter of its mask's pixels are foreground and their median colour's nearest object colour is the captioned
  one. Text only (mask dropped): `color_acc_unmasked` counts an object as right when at least a quarter of its
  mask area (summed over the frames) of foreground pixels has the captioned colour as nearest object colour,
  anywhere in the frame; `text_presence_unmasked` is the fraction of (object, frame) pairs, over the frames where
  the object is visible, in which that holds for the frame alone.
- **Text-only mode** (`text_color_acc`, `text_presence`): the same two scores for what a user gets from a prompt
  alone. `text_only="model"`: the mask-dropped generations above. `text_only="layout"` (what the shapes default's
  engine.json says, and what `kmono mvideo eval` reads from the folder): generations with masks planned from the
  caption alone (`generation.mvideo.shapes.layout.plan_layout`, seeded `seed + i`, labels = phrases), the held-out
  masks never used. Both scores look for the captioned colour anywhere, so they do not depend on where the plan
  puts the objects.
- **Mask only** (`extras`): `miou_mask_only` is `miou_frame` of generations with masks and the prompt ""
  (passed as the embedding of "", which is how training drops the text; the pipeline refuses an empty prompt).
- **Background noise** (`bg_noise`, masked generations): per frame, a least-squares plane is fitted to the
  pixels outside the condition masks dilated by `bg_dilation` px; the RMS residual per channel over those
  pixels, in 1/255 units, averaged over videos (the held-out data itself: 0.15, the rounding of gradients).
- **Held-out motion families** (`families`, default all of `motions.HELD_OUT_FAMILIES`): `family_samples`
  samples of each, from the same split and seeds, generated with their masks; reported per family as
  `family/<F>/miou_frame`, `family/<F>/miou_pair_union` and `family/<F>/color_acc`. A family needing more
  objects than the pipeline has slots for is skipped (logged).
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from generation.mvideo.defaults.engine_file import TEXT_ONLY_LAYOUT, TEXT_ONLY_MODEL
from generation.mvideo.pipelines import MVideoPipeline
from generation.mvideo.pipelines.pipeline_mvideo import vae_compression
from generation.mvideo.shapes import scoring
from generation.mvideo.shapes.layout import plan_layout
from generation.mvideo.shapes.motions import HELD_OUT_FAMILIES, MOTION_FAMILIES
from generation.mvideo.shapes.report import EvalReport, save_plots
from generation.mvideo.shapes.segment import COLOR_NAMES, foreground, frame_iou, iou
from generation.mvideo.shapes.spec import SHAPES_SAMPLING
from generation.mvideo.shapes.variants import shift_id_maps, shift_vector, shuffled_slots
from generation.mvideo.shapes.world import ShapesSample, ShapesWorld
from libs.media import write_video

__all__ = ["EvalConfig", "EvalReport", "evaluate", "save_grid", "save_plots", "score_video"]

logger = logging.getLogger(__name__)

_SHIFT_STREAM = 0x5_41F7
"""Mixed with a sample's seed to draw its shift vector (so the shift is a property of the sample)."""
_SHUFFLE_STREAM = 0xB1_4D
"""Mixed with a sample's seed to draw its slot permutation."""


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
    extras: bool = True
    """Also generate with shifted masks, shuffled slots (binding) and an empty prompt (mask only)."""
    families: tuple[str, ...] = HELD_OUT_FAMILIES
    """Held-out motion families to evaluate (empty: none)."""
    family_samples: int = 32
    """Samples per motion family."""
    shift_px: tuple[float, float] = (7.0, 10.0)
    """Length range of the mask shift, in pixels at 32 px (scaled with min(height, width))."""
    bg_dilation: int = 2
    """Pixels by which the condition masks grow before the background noise is measured outside them."""
    text_only: str = TEXT_ONLY_MODEL
    """How the text-only mode is measured: "model" (mask dropped) or "layout" (planned masks; module docstring)."""


def score_video(video: np.ndarray, sample: ShapesSample, config: EvalConfig) -> dict:
    """Per-video metrics of one generated video (T, H, W, 3) in [0, 1] against its condition (`scoring`)."""
    fg = foreground(video, config.fg_threshold, config.inlier_threshold)
    colors = [o.color for o in sample.objects]
    return scoring.score_video(video, fg, sample.id_maps, colors, config.bg_dilation)


# ----------------------------------------------------------------------------------------------- generation


@dataclass(frozen=True)
class Condition:
    """One generation: prompt, slot masks (None: mask dropped), per-slot labels, noise seed, clip size."""

    prompt: str
    slots: np.ndarray | None  # (T, K, H, W) bool
    seed: int
    size: tuple[int, int, int]  # (T, H, W)
    labels: list[str | None] | None = None


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


def accepts_mask_labels(pipe: MVideoPipeline) -> bool:
    """Whether the pipeline's `__call__` takes `mask_labels` (per-slot phrases that bind objects to words)."""
    return "mask_labels" in inspect.signature(pipe.__call__).parameters


def generate(pipe: MVideoPipeline, conditions: list[Condition], config: EvalConfig) -> np.ndarray:
    """(N, T, H, W, 3) float in [0, 1]: one video per condition, in batches of `config.batch_size`."""
    max_text = getattr(pipe.transformer.config, "max_text_seq_length", 226)
    with_labels = accepts_mask_labels(pipe)
    videos = []
    for start in range(0, len(conditions), config.batch_size):
        chunk = conditions[start : start + config.batch_size]
        masked = {c.slots is not None for c in chunk}
        if len(masked) != 1:
            raise ValueError("a batch mixes generations with and without masks")
        masks = None
        if chunk[0].slots is not None:
            masks = torch.from_numpy(np.stack([c.slots for c in chunk]).astype(np.float32))
        extra = {}
        if with_labels and any(c.labels is not None for c in chunk):
            extra["mask_labels"] = [c.labels for c in chunk]
        prompts = [c.prompt for c in chunk]
        if len({p == "" for p in prompts}) != 1:
            raise ValueError("a batch mixes empty and non-empty prompts")
        if prompts[0] == "":
            # The pipeline refuses an empty prompt; training drops the text as the embedding of "", so pass that.
            embeds, _ = pipe.encode_prompt(
                prompts, do_classifier_free_guidance=False, max_sequence_length=max_text
            )
            extra["prompt_embeds"] = embeds
            prompts = None
        num_frames, height, width = chunk[0].size
        out = pipe(
            prompts,
            mask_video=masks,
            num_frames=num_frames,
            height=height,
            width=width,
            num_inference_steps=config.num_inference_steps,
            guidance_scale=config.guidance_scale,
            mask_guidance_scale=config.mask_guidance_scale,
            generator=[torch.Generator().manual_seed(c.seed) for c in chunk],
            output_type="np",
            max_sequence_length=max_text,
            **extra,
        ).frames
        videos.append(np.asarray(out, dtype=np.float32))
    return np.concatenate(videos)


def planned_condition(sample: ShapesSample, slots: int, seed: int) -> Condition:
    """The text-only-mode generation of `sample`: masks planned from its caption alone, one labelled slot each."""
    num_frames, height, width = _size(sample)
    plan = plan_layout(
        sample.caption,
        width=width,
        height=height,
        num_frames=num_frames,
        fps=sample.fps,
        seed=seed,
        max_objects=slots,
    )
    ids = np.arange(1, slots + 1, dtype=np.int32)
    masks = plan.to_dense()[:, None, :, :] == ids[None, :, None, None]
    labels = [o.label for o in plan.objects] + [None] * (slots - len(plan.objects))
    return Condition(sample.caption, masks, seed, _size(sample), labels)


def _size(sample: ShapesSample) -> tuple[int, int, int]:
    return (sample.num_frames, int(sample.video.shape[1]), int(sample.video.shape[2]))


def _sample_rng(stream: int, sample: ShapesSample) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([stream, int(sample.seed or 0)]))


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


# ----------------------------------------------------------------------------------------------- evaluation


def evaluate(
    pipe: MVideoPipeline, config: EvalConfig | None = None, world: ShapesWorld | None = None
) -> EvalReport:
    """Generate held-out samples with and without masks (and the variants of the module docstring); score them."""
    config = config or EvalConfig()
    world = world or world_for(pipe)
    pipe.set_progress_bar_config(disable=True)
    slots = pipe.mask_encoder.config.num_mask_slots
    first = config.first_sample
    samples = [world.sample(i, config.split) for i in range(first, first + config.num_samples)]

    def conditions(prompt_of, slots_of) -> list[Condition]:
        return [
            Condition(prompt_of(s), slots_of(s), config.seed + i, _size(s)) for i, s in enumerate(samples)
        ]

    logger.info("generating %d samples with masks and with the mask dropped", len(samples))
    masked = generate(pipe, conditions(lambda s: s.caption, lambda s: s.slot_masks(slots)), config)
    unmasked = generate(pipe, conditions(lambda s: s.caption, lambda s: None), config)
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
        return _mean([x for s in scores for x in s[key]])

    def average(scores: list[dict], key: str) -> float:
        return _mean([s[key] for s in scores])

    text_videos, scores_t = unmasked, scores_u
    if config.text_only == TEXT_ONLY_LAYOUT:
        logger.info("generating %d samples from their captions alone, with planned layouts", len(samples))
        text_videos = generate(
            pipe, [planned_condition(s, slots, config.seed + i) for i, s in enumerate(samples)], config
        )
        scores_t = [score_video(v, s, config) for v, s in zip(text_videos, samples, strict=True)]

    report = EvalReport(
        miou_masked=average(scores_m, "iou"),
        miou_unmasked=average(scores_u, "iou"),
        miou_random_masks=_mean(random_ious),
        miou_color_masked=average(scores_m, "iou_color"),
        miou_color_unmasked=average(scores_u, "iou_color"),
        color_acc=per_object(scores_m, "_right_in_mask"),
        color_acc_unmasked=per_object(scores_u, "_right_anywhere"),
        num_samples=n,
        samples=samples,
        masked=masked,
        unmasked=unmasked,
        miou_frame=average(scores_m, "iou_frame"),
        miou_pair_union=average(scores_m, "iou_pair_union"),
        text_presence_unmasked=per_object(scores_u, "_present"),
        text_only=config.text_only,
        text_color_acc=per_object(scores_t, "_right_anywhere"),
        text_presence=per_object(scores_t, "_present"),
        text_only_videos=text_videos,
        bg_noise=average(scores_m, "bg_noise"),
    )
    if config.extras:
        _evaluate_extras(pipe, samples, slots, config, report)
    for name in config.families:
        family = _evaluate_family(pipe, world, name, slots, config)
        if family is not None:
            report.families[name] = family
    return report


def _evaluate_extras(
    pipe: MVideoPipeline, samples: list[ShapesSample], slots: int, config: EvalConfig, report: EvalReport
) -> None:
    """Shifted masks, shuffled slots with labels, and mask only (empty prompt): fills those fields of `report`."""
    side = min(samples[0].video.shape[1:3])
    shift_px = (config.shift_px[0] * side / 32, config.shift_px[1] * side / 32)
    shifted = []
    for s in samples:
        dy, dx = shift_vector(s.id_maps, shift_px, _sample_rng(_SHIFT_STREAM, s))
        shifted.append(dataclasses.replace(s, id_maps=shift_id_maps(s.id_maps, dy, dx)))
    logger.info(
        "generating %d samples with shifted masks and %d with an empty prompt", len(samples), len(samples)
    )
    videos = generate(
        pipe,
        [Condition(s.caption, s.slot_masks(slots), config.seed + i, _size(s)) for i, s in enumerate(shifted)],
        config,
    )
    shifted_frame, original_place = [], []
    for video, original, moved in zip(videos, samples, shifted, strict=True):
        fg = foreground(video, config.fg_threshold, config.inlier_threshold)
        shifted_frame.append(frame_iou(fg, moved.id_maps > 0))
        original_place.append(scoring.original_place_iou(fg, original.id_maps > 0, moved.id_maps > 0))
    report.miou_shifted = _mean(shifted_frame)
    report.iou_original_place = _mean(original_place)

    mask_only = generate(
        pipe,
        [Condition("", s.slot_masks(slots), config.seed + i, _size(s)) for i, s in enumerate(samples)],
        config,
    )
    report.miou_mask_only = _mean(
        [score_video(v, s, config)["iou_frame"] for v, s in zip(mask_only, samples, strict=True)]
    )

    multi = [(i, s) for i, s in enumerate(samples) if len(s.objects) >= 2]
    if not multi:
        logger.info("no sample has two objects: binding accuracy not measured")
        return
    report.binding_with_labels = accepts_mask_labels(pipe)
    if not report.binding_with_labels:
        logger.warning("the pipeline takes no mask_labels: binding is measured with shuffled slots alone")
    bound = []
    for i, s in multi:
        shuffled, labels, _ = shuffled_slots(s, slots, _sample_rng(_SHUFFLE_STREAM, s))
        bound.append(Condition(s.caption, shuffled, config.seed + i, _size(s), labels))
    logger.info("generating %d multi-object samples with shuffled slots", len(bound))
    videos = generate(pipe, bound, config)
    right = []
    for video, (_, s) in zip(videos, multi, strict=True):
        fg = foreground(video, config.fg_threshold, config.inlier_threshold)
        for k, obj in enumerate(s.objects, start=1):
            right.append(
                float(scoring.color_in_mask(video, fg, s.id_maps == k, COLOR_NAMES.index(obj.color)))
            )
    report.binding_acc = _mean(right)


def _evaluate_family(
    pipe: MVideoPipeline, world: ShapesWorld, name: str, slots: int, config: EvalConfig
) -> dict[str, float] | None:
    """Per-frame mIoU, pair-union mIoU and colour accuracy of one held-out motion family (with masks)."""
    if MOTION_FAMILIES[name].min_objects > world.max_objects:
        logger.warning(
            "motion family %r needs more objects than the pipeline's %d slots: skipped", name, slots
        )
        return None
    family_world = dataclasses.replace(world, motion=name)
    first = config.first_sample
    samples = [family_world.sample(i, config.split) for i in range(first, first + config.family_samples)]
    logger.info("generating %d samples of motion family %r", len(samples), name)
    videos = generate(
        pipe,
        [Condition(s.caption, s.slot_masks(slots), config.seed + i, _size(s)) for i, s in enumerate(samples)],
        config,
    )
    scores = [score_video(v, s, config) for v, s in zip(videos, samples, strict=True)]
    return {
        "miou_frame": _mean([s["iou_frame"] for s in scores]),
        "miou_pair_union": _mean([s["iou_pair_union"] for s in scores]),
        "color_acc": _mean([x for s in scores for x in s["_right_in_mask"]]),
        "num_samples": float(len(samples)),
    }


# ----------------------------------------------------------------------------------------------- grid


def condition_frames(sample: ShapesSample) -> np.ndarray:
    """(T, H, W, 3) uint8: each object's mask in its captioned colour on dark grey."""
    palette = np.array([(40, 40, 40)] + [obj.rgb for obj in sample.objects], dtype=np.uint8)
    return palette[sample.id_maps]


def grid_frames(report: EvalReport, num: int, scale: int = 4) -> np.ndarray:
    """(T, rows * H * scale, columns * W * scale + gaps, 3) uint8: per sample, condition | masked | mask dropped
    (| text-only mode with a planned layout, when the report measured one)."""
    if report.masked is None or report.unmasked is None:
        raise ValueError("the report holds no videos")
    gap = 2
    rows = []
    for i in range(min(num, report.num_samples)):
        videos = [report.masked[i], report.unmasked[i]]
        if report.text_only_videos is not None and report.text_only_videos is not report.unmasked:
            videos.append(report.text_only_videos[i])
        panels = [condition_frames(report.samples[i])] + [(v * 255).round().astype(np.uint8) for v in videos]
        t, h, w, _ = panels[0].shape
        spacer = np.full((t, h, gap, 3), 255, dtype=np.uint8)
        row = np.concatenate([x for panel in panels for x in (panel, spacer)][:-1], axis=2)
        rows.append(row)
        rows.append(np.full((t, gap, row.shape[2], 3), 255, dtype=np.uint8))
    grid = np.concatenate(rows[:-1], axis=1)
    return grid.repeat(scale, axis=1).repeat(scale, axis=2)


def save_grid(
    report: EvalReport, out_dir: str | os.PathLike[str], num: int = 6, fps: float = 4.0
) -> list[Path]:
    """Write grid.gif (animated), grid.png (all frames, left to right) and, when motion families were evaluated,
    families.png (`save_plots`) into `out_dir`; returns the paths."""
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
    return [gif, png, *save_plots(report, out)]
