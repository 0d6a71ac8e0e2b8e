"""Text -> layout: a mask sequence planned from the prompt alone, so a model that draws where its masks say can
also generate from text alone.

    seq = plan_layout("a red circle and a blue square", width=48, height=48, num_frames=8, fps=8.0, seed=3)
    seq.objects          # (MaskObject(1, "red circle"), MaskObject(2, "blue square")): one per noun phrase
    pipe("a red circle and a blue square", mask_video=seq)     # each object binds to its phrase by label

Why: the shapes-world default follows masks closely (per-frame mIoU 0.94) but, with its masks dropped, draws
almost nothing: text-only colour accuracy 0.13 (`color_acc_unmasked` in its eval.json). Placing objects and
their motion from words alone is the part a tiny model learns last. Text-to-video systems with layout control
split the job in two, as LLM-grounded Video Diffusion (Lian et al., ICLR 2024) does with an LLM: plan a dynamic
layout from the prompt, then generate with it. An engine whose `engine.json` says `"text_only": "layout"`
(`defaults.engine_file.TEXT_ONLY_MODES`) does that for every request without masks or a reference video; the plan comes back with
the video as its mask sequence and overlay, so the user can edit the motion and send it back (text, then motion:
the dual control). Engines saying "model" (the default, and every published model) run their own text-only
branch.

The planner (our rules; deterministic in `seed`):
- **Objects**: the prompt's noun phrases (`phrases.noun_phrases`, the same split that binds masks to words), at
  most `max_objects`; each object's label is its phrase, so the pipeline binds object k to phrase k.
- **Shape**: the first shape word of the phrase the shapes world draws (circle, square, triangle, diamond);
  any other phrase ("a dog") gets a disk, a neutral blob for the model to fill.
- **Size and motion**: the shapes world's training priors (`ShapesWorld` radius and speed ranges): constant
  velocity, bouncing off the frame edges, starting away from the objects already placed. Drawing the motion
  from the distribution the model was trained on keeps the plan inside what it renders well; a user who wants
  another motion edits the returned masks (`kmono masks edit`) or draws their own (`kmono masks synth`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from generation.mvideo.pipelines.phrases import noun_phrases, words
from generation.mvideo.shapes.motions import PathContext, bounce_path
from generation.mvideo.shapes.world import SHAPES, ShapesWorld, shape_mask
from libs.errors import FieldError
from libs.media import MaskObject, MaskSequence

logger = logging.getLogger(__name__)

DEFAULT_SHAPE = "circle"
"""The mask drawn for a phrase that names none of the shapes world's shapes."""

_WORLD = ShapesWorld()


@dataclass(frozen=True)
class LayoutPriors:
    """Sizes and speeds of planned objects, as fractions of min(height, width) (the shapes world's priors)."""

    radius_range: tuple[float, float] = _WORLD.radius_range
    speed_range: tuple[float, float] = _WORLD.speed_range


def shape_of(phrase: str) -> str:
    """The first shape word of `phrase` ("red circle" -> "circle"); `DEFAULT_SHAPE` when it names none."""
    return next((word for word in words(phrase) if word in SHAPES), DEFAULT_SHAPE)


def plan_layout(
    prompt: str,
    *,
    width: int,
    height: int,
    num_frames: int,
    fps: float,
    seed: int,
    max_objects: int = 3,
    priors: LayoutPriors = LayoutPriors(),
) -> MaskSequence:
    """One moving object per noun phrase of `prompt` (module docstring), labelled with its phrase.

    Raises `FieldError("prompt")` when the prompt names nothing to lay out (no words outside "a", "and", ",").
    """
    phrases = noun_phrases(prompt)
    if not phrases:
        raise FieldError("prompt", "names no object to lay out; describe the objects, e.g. 'a red circle'")
    if len(phrases) > max_objects:
        logger.info("the prompt names %d objects; the layout keeps the first %d", len(phrases), max_objects)
        phrases = phrases[:max_objects]
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), len(phrases)]))
    side = float(min(width, height))
    id_maps = np.zeros((num_frames, height, width), dtype=np.int32)
    paths: list[tuple[tuple[float, float], ...]] = []
    for k, phrase in enumerate(phrases, start=1):
        radius = float(rng.uniform(*priors.radius_range)) * side
        context = PathContext(width, height, num_frames, radius, priors.speed_range, list(paths))
        centers = bounce_path(rng, context)
        paths.append(centers)
        shape = shape_of(phrase)
        for t, center in enumerate(centers):
            id_maps[t][shape_mask(shape, center, radius, height, width)] = k  # later objects cover earlier
    objects = [MaskObject(k, phrase, 1.0) for k, phrase in enumerate(phrases, start=1)]
    return MaskSequence.from_id_maps(id_maps, objects, fps)
