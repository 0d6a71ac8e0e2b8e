"""Segmenting shapes-world videos without a model (numpy only, so clients such as `make demo` score videos
without importing torch): the colour-agnostic foreground, the nearest object colour, IoU (over a whole video or per frame), and the background noise.

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


def background_fit(video: np.ndarray, inlier_threshold: float = 0.12) -> np.ndarray:
    """(T, H, W, 3) float32: per frame, the robust plane fit of the background (the segmentation's reference).

    video: (T, H, W, 3) float in [0, 1]. Starts from the median colour, then three least-squares plane fits,
    each on the pixels within `inlier_threshold` of the previous fit.
    """
    t, h, w, _ = video.shape
    design = _plane_design(h, w)
    out = np.empty((t, h, w, 3), dtype=np.float32)
    for i in range(t):
        pixels = video[i].reshape(-1, 3).astype(np.float32)
        fit = np.broadcast_to(np.median(pixels, axis=0), pixels.shape)
        for _ in range(3):
            inliers = np.linalg.norm(pixels - fit, axis=1) < inlier_threshold
            if inliers.sum() < 8:
                break
            coef, *_ = np.linalg.lstsq(design[inliers], pixels[inliers], rcond=None)  # (3, 3)
            fit = design @ coef
        out[i] = fit.reshape(h, w, 3)
    return out


def foreground(video: np.ndarray, fg_threshold: float = 0.2, inlier_threshold: float = 0.12) -> np.ndarray:
    """(T, H, W) bool: pixels far from a per-frame plane fit of the background.

    video: (T, H, W, 3) float in [0, 1].
    """
    fit = background_fit(video, inlier_threshold)
    return np.linalg.norm(video.astype(np.float32) - fit, axis=-1) > fg_threshold


def background_noise(video: np.ndarray, keep_out: np.ndarray) -> float:
    """RMS residual (per channel, in 1/255 units) of a least-squares plane fitted per frame to the pixels
    outside `keep_out` ((T, H, W) bool), over those pixels: 0 for a clean solid or gradient background.

    video: (T, H, W, 3) float in [0, 1]. Frames with fewer than 8 such pixels are skipped (0 if all are).
    """
    t, h, w, _ = video.shape
    design = _plane_design(h, w)
    squares, count = 0.0, 0
    for i in range(t):
        outside = ~keep_out[i].ravel()
        if outside.sum() < 8:
            continue
        pixels = video[i].reshape(-1, 3).astype(np.float64)[outside]
        coef, *_ = np.linalg.lstsq(design[outside].astype(np.float64), pixels, rcond=None)
        residual = pixels - design[outside] @ coef
        squares += float((residual**2).sum())
        count += residual.size
    return float(np.sqrt(squares / count) * 255.0) if count else 0.0


def dilate(masks: np.ndarray, pixels: int) -> np.ndarray:
    """(..., H, W) bool masks grown by `pixels` in every direction (a square neighbourhood, per frame)."""
    out = masks.copy()
    h, w = masks.shape[-2:]
    for dy in range(-pixels, pixels + 1):
        for dx in range(-pixels, pixels + 1):
            src = masks[..., max(0, -dy) : h - max(0, dy), max(0, -dx) : w - max(0, dx)]
            out[..., max(0, dy) : h - max(0, -dy), max(0, dx) : w - max(0, -dx)] |= src
    return out


def _plane_design(h: int, w: int) -> np.ndarray:
    """(HW, 3) float32 design matrix of a plane a + b x + c y (x, y centred, in units of the frame size)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    return np.stack([np.ones(h * w, np.float32), xx.ravel() / w - 0.5, yy.ravel() / h - 0.5], axis=1)


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


def frame_iou(a: np.ndarray, b: np.ndarray, empty: float = 1.0) -> float:
    """Per-frame IoU of two (T, H, W) bool arrays, averaged over the frames where either is non-empty
    (`empty` when both are empty in every frame)."""
    inter = np.logical_and(a, b).sum(axis=(1, 2))
    union = np.logical_or(a, b).sum(axis=(1, 2))
    seen = union > 0
    return float(np.mean(inter[seen] / union[seen])) if seen.any() else empty
