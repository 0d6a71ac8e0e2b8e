"""Mask overlays for looking at mask sequences: tinted objects, contours, labels, optional side by side.

    frames = render_overlay(video, seq, alpha=0.5, side_by_side=True)   # (T, H, 2W, 3) uint8
    write_video("check.mp4", iter_overlay(iter_video_frames("in.mp4"), seq), fps=seq.fps)   # streaming
    write_video("masks.gif", render_masks(seq), fps=seq.fps)            # no video: masks on black

Each object keeps one colour everywhere (`palette.object_color`: the VOC/DAVIS palette, the same colours as
our palette PNGs). Mask pixels are blended with the frame by `alpha`; the inner boundary of each mask is drawn
in a lighter shade of the colour (so it shows on black too); objects known only by a box get a rectangle;
labels ("<id> <label>") are drawn with PIL's default font at the top-left of each object's box.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from libs.media.masks import MaskSequence
from libs.media.palette import object_color


def _contour(id_map: np.ndarray) -> np.ndarray:
    """(H, W) bool: object pixels with a 4-neighbour of another id (the inner boundary of each mask)."""
    edge = np.zeros(id_map.shape, dtype=bool)
    vertical = id_map[1:] != id_map[:-1]
    horizontal = id_map[:, 1:] != id_map[:, :-1]
    edge[1:] |= vertical
    edge[:-1] |= vertical
    edge[:, 1:] |= horizontal
    edge[:, :-1] |= horizontal
    return edge & (id_map != 0)


@lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


def _light(color: tuple[int, int, int]) -> np.ndarray:
    return (np.asarray(color, dtype=np.float32) + 255.0) / 2.0


def _draw_labels(image: np.ndarray, seq: MaskSequence, t: int) -> np.ndarray:
    pil = Image.fromarray(image)
    draw = ImageDraw.Draw(pil)
    font = _font(max(10, min(seq.height, seq.width) // 20))
    for oid in seq.frame_object_ids(t):
        box = seq.box(t, oid)
        if box is None:
            continue
        color = object_color(oid)
        label = seq.object(oid).label
        text = f"{oid} {label}" if label else str(oid)
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        w, h = right - left + 4, bottom - top + 2
        x = int(min(max(box.x0, 0), max(seq.width - w, 0)))
        y = int(min(max(box.y0 - h, 0), max(seq.height - h, 0)))
        draw.rectangle((x, y, x + w - 1, y + h - 1), fill=color)
        text_color = (0, 0, 0) if sum(color) > 382 else (255, 255, 255)
        draw.text((x + 2 - left, y + 1 - top), text, fill=text_color, font=font)
    return np.asarray(pil)


def _overlay_frame(
    frame: np.ndarray, seq: MaskSequence, t: int, *, alpha: float, labels: bool, contours: bool
) -> np.ndarray:
    id_map = seq.id_map(t)
    out = frame.astype(np.float32)
    edges = _contour(id_map) if contours else None
    for oid in seq.frame_object_ids(t):
        color = object_color(oid)
        if seq.rle_counts(t, oid) is None:  # box-only: outline the box
            box = seq.box(t, oid)
            assert box is not None
            x0, y0 = int(max(box.x0, 0)), int(max(box.y0, 0))
            x1, y1 = int(min(np.ceil(box.x1), seq.width)) - 1, int(min(np.ceil(box.y1), seq.height)) - 1
            if x1 >= x0 and y1 >= y0:
                out[y0 : y1 + 1, [x0, x1]] = color
                out[[y0, y1], x0 : x1 + 1] = color
            continue
        mask = id_map == oid
        out[mask] = (1.0 - alpha) * out[mask] + alpha * np.asarray(color, dtype=np.float32)
        if edges is not None:
            out[mask & edges] = _light(color)
    image = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return _draw_labels(image, seq, t) if labels else image


def iter_overlay(
    frames: Iterable[np.ndarray],
    mask_sequence: MaskSequence,
    *,
    alpha: float = 0.5,
    labels: bool = True,
    contours: bool = True,
    side_by_side: bool = False,
) -> Iterator[np.ndarray]:
    """Overlay frame by frame: yields uint8 (H, W, 3) frames, (H, 2W, 3) with the source on the left if
    `side_by_side`. The frames must be RGB uint8 at the sequence's size, as many as it has frames."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    expected = (mask_sequence.height, mask_sequence.width, 3)
    t = -1
    for t, frame in enumerate(frames):
        if t >= mask_sequence.num_frames:
            raise ValueError(f"got more frames than the mask sequence's {mask_sequence.num_frames}")
        frame = np.asarray(frame)
        if frame.shape != expected or frame.dtype != np.uint8:
            raise ValueError(
                f"frame {t} is {frame.dtype} {frame.shape}, expected uint8 {expected} (the mask sequence's "
                f"height x width x RGB); resize the video or the masks first"
            )
        over = _overlay_frame(frame, mask_sequence, t, alpha=alpha, labels=labels, contours=contours)
        yield np.concatenate([frame, over], axis=1) if side_by_side else over
    if t + 1 != mask_sequence.num_frames:
        raise ValueError(f"got {t + 1} frames for a mask sequence of {mask_sequence.num_frames} frames")


def render_overlay(
    frames: np.ndarray | Iterable[np.ndarray],
    mask_sequence: MaskSequence,
    alpha: float = 0.5,
    labels: bool = True,
    side_by_side: bool = False,
    *,
    contours: bool = True,
) -> np.ndarray:
    """All overlay frames as one uint8 (T, H, W, 3) array ((T, H, 2W, 3) side by side); see `iter_overlay`."""
    return np.stack(
        list(
            iter_overlay(
                frames,
                mask_sequence,
                alpha=alpha,
                labels=labels,
                contours=contours,
                side_by_side=side_by_side,
            )
        )
    )


def iter_masks(
    mask_sequence: MaskSequence, *, labels: bool = True, contours: bool = True
) -> Iterator[np.ndarray]:
    """The masks in their colours on black, frame by frame (uint8 (H, W, 3))."""
    black = np.zeros((mask_sequence.height, mask_sequence.width, 3), dtype=np.uint8)
    return iter_overlay(
        (black for _ in range(mask_sequence.num_frames)),
        mask_sequence,
        alpha=1.0,
        labels=labels,
        contours=contours,
    )


def render_masks(mask_sequence: MaskSequence, *, labels: bool = True, contours: bool = True) -> np.ndarray:
    """The masks in their colours on black, for when there is no video: uint8 (T, H, W, 3)."""
    return np.stack(list(iter_masks(mask_sequence, labels=labels, contours=contours)))
