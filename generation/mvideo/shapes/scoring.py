"""Per-video scores of a generated shapes-world video against its condition (numpy only, like segment.py).

    fg = foreground(video)                                # (T, H, W) bool, segment.py
    scores = score_video(video, fg, sample.id_maps, [o.color for o in sample.objects])

Every score compares the colour-agnostic foreground `fg` and the nearest object colour of each pixel with the
condition's id maps (0 = background, k = the k-th object, whose captioned colour is `colors[k - 1]`). The
definitions are the evaluation protocol's (`generation.mvideo.shapes.evaluation` docstring); this module
holds one function per idea so each can be tested on a video with a known answer.
"""

from __future__ import annotations

import numpy as np

from generation.mvideo.shapes.segment import (
    COLOR_NAMES,
    background_noise,
    dilate,
    frame_iou,
    iou,
    nearest_color,
)

MIN_COVER = 0.25
"""Fraction of an object's area that must be foreground (in its mask) or of its colour (anywhere) to count."""


def pair_union(masks: np.ndarray) -> np.ndarray:
    """(T, H, W) bool: each frame's mask OR that of its temporal-pair partner (frames 2i, 2i + 1).

    A model that draws both frames of a pair alike (two-frame time resolution) matches this better than the
    frame's own mask; a frame without a partner (the last of an odd count) keeps its own mask.
    """
    out = masks.copy()
    pairs = masks.shape[0] // 2 * 2
    both = masks[0:pairs:2] | masks[1:pairs:2]
    out[0:pairs:2] = both
    out[1:pairs:2] = both
    return out


def color_in_mask(video: np.ndarray, fg: np.ndarray, obj_mask: np.ndarray, target: int) -> bool:
    """The object is drawn in its own colour: at least `MIN_COVER` of its mask is foreground and the median
    colour of that foreground's pixels is nearest to colour `target`."""
    area = int(obj_mask.sum())
    inside = obj_mask & fg
    if area == 0 or inside.sum() < MIN_COVER * area:
        return False
    return int(nearest_color(np.median(video[inside], axis=0))) == target


def presence_per_frame(by_color: np.ndarray, obj_mask: np.ndarray) -> list[float]:
    """Per frame where the object is visible: 1.0 when the pixels of its colour (`by_color`, anywhere in the
    frame) cover at least `MIN_COVER` of its true area in that frame, else 0.0."""
    area = obj_mask.sum(axis=(1, 2))
    found = by_color.sum(axis=(1, 2))
    return [float(f >= MIN_COVER * a) for f, a in zip(found, area, strict=True) if a > 0]


def score_video(
    video: np.ndarray, fg: np.ndarray, id_maps: np.ndarray, colors: list[str], bg_dilation: int = 2
) -> dict:
    """Scores of one generated video (T, H, W, 3) in [0, 1] with foreground `fg` against id maps (T, H, W).

    Video-level floats: `iou` (all frames pooled), `iou_frame` (per frame, then averaged), `iou_pair_union`
    (per frame against the frame pair's union), `iou_color` (per object, by colour), `bg_noise` (1/255 units,
    outside the masks dilated by `bg_dilation` px). Per-object lists: `_right_in_mask`, `_right_anywhere`;
    per (object, frame): `_present`.
    """
    masks = id_maps > 0
    pixel_colors = nearest_color(video)  # (T, H, W)
    color_ious, right_in_mask, right_anywhere, present = [], [], [], []
    for k, color in enumerate(colors, start=1):
        target = COLOR_NAMES.index(color)
        obj_mask = id_maps == k
        by_color = fg & (pixel_colors == target)
        area = int(obj_mask.sum())
        color_ious.append(iou(by_color, obj_mask))
        right_in_mask.append(float(color_in_mask(video, fg, obj_mask, target)))
        right_anywhere.append(float(area > 0 and by_color.sum() >= MIN_COVER * area))
        present.extend(presence_per_frame(by_color, obj_mask))
    return {
        "iou": iou(fg, masks),
        "iou_frame": frame_iou(fg, masks),
        "iou_pair_union": frame_iou(fg, pair_union(masks)),
        "iou_color": float(np.mean(color_ious)),
        "color_in_mask": float(np.mean(right_in_mask)),
        "color_anywhere": float(np.mean(right_anywhere)),
        "bg_noise": background_noise(video, dilate(masks, bg_dilation)),
        "objects": float(len(colors)),
        "_right_in_mask": right_in_mask,
        "_right_anywhere": right_anywhere,
        "_present": present,
    }


def original_place_iou(fg: np.ndarray, original: np.ndarray, shifted: np.ndarray) -> float:
    """Per-frame IoU of the foreground with where the objects were before the shift and are not after it
    (`original` AND NOT `shifted`, (T, H, W) bool): about 0 when the model follows the shifted masks, high when
    it draws the objects where they used to be. 0 when neither is ever non-empty."""
    return frame_iou(fg, original & ~shifted, empty=0.0)
