"""Segmenting shapes-world videos without a model (numpy only, so clients such as `make demo` score videos
without importing torch): the colour-agnostic foreground, the nearest object colour, and IoU.

The definitions are the evaluation protocol's (`generation.mvideo.shapes.evaluation` docstring): per frame the
background is a least-squares plane per RGB channel (a + b x + c y, solid and gradient backgrounds), refitted
twice on its inliers; the foreground is every pixel farther than `fg_threshold` from it.
"""

from __future__ import annotations

import numpy as np

from generation.mvideo.shapes.world import COLORS

PALETTE = np.array(list(COLORS.values()), dtype=np.float32) / 255.0
"""(C, 3) object colours in [0, 1], in the order of `COLOR_NAMES`."""

COLOR_NAMES = list(COLORS)


def foreground(video: np.ndarray, fg_threshold: float = 0.2, inlier_threshold: float = 0.12) -> np.ndarray:
    """(T, H, W) bool: pixels far from a per-frame plane fit of the background.

    video: (T, H, W, 3) float in [0, 1].
    """
    t, h, w, _ = video.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    design = np.stack(
        [np.ones(h * w, np.float32), xx.ravel() / w - 0.5, yy.ravel() / h - 0.5], axis=1
    )  # (HW, 3)
    out = np.zeros((t, h, w), dtype=bool)
    for i in range(t):
        pixels = video[i].reshape(-1, 3).astype(np.float32)
        fit = np.broadcast_to(np.median(pixels, axis=0), pixels.shape)
        for _ in range(3):
            inliers = np.linalg.norm(pixels - fit, axis=1) < inlier_threshold
            if inliers.sum() < 8:
                break
            coef, *_ = np.linalg.lstsq(design[inliers], pixels[inliers], rcond=None)  # (3, 3)
            fit = design @ coef
        out[i] = (np.linalg.norm(pixels - fit, axis=1) > fg_threshold).reshape(h, w)
    return out


def nearest_color(pixels: np.ndarray) -> np.ndarray:
    """Index (into COLOR_NAMES) of the nearest object colour of each (..., 3) pixel in [0, 1]."""
    d = np.linalg.norm(pixels[..., None, :] - PALETTE, axis=-1)
    return d.argmin(axis=-1)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """|a AND b| / |a OR b| of two boolean arrays (1.0 when both are empty)."""
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def video_mask_iou(frames: np.ndarray, id_maps: np.ndarray) -> float:
    """IoU of a generated video's foreground (frames (T, H, W, 3) uint8) with the union of its condition masks
    (id maps (T, H, W), 0 = background): the `miou_masked` of one video."""
    return iou(foreground(frames.astype(np.float32) / 255.0), id_maps > 0)
