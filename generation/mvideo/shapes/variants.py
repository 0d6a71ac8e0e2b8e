"""Condition variants the evaluation generates besides a sample's own masks (numpy only).

    dy, dx = shift_vector(sample.id_maps, (7.0, 10.0), rng)    # one translation for the whole video
    moved = shift_id_maps(sample.id_maps, dy, dx)              # the objects' masks moved by it
    slots, labels = shuffled_slots(sample, num_slots=3, rng=rng)

Our choices:

- **Shift.** One integer translation per video, of length within `length_px` (e.g. 7-10 px at 32 px), so the
  shifted masks are a motion the model was never given for this caption. Among all such vectors we keep those
  that leave the most mask pixels (over all frames) inside the frame, so objects stay in view where possible,
  and draw one of them with the given generator. Pixels moved out of the frame are dropped (zero fill).
- **Shuffled slots.** A uniformly drawn non-identity permutation of the objects' slots, with each slot's label
  (the object's "colour shape" phrase) beside it, `None` for the empty slots: the prompt still names the objects
  in caption order, so only the labels can tell the model which words each slot takes.
"""

from __future__ import annotations

import itertools

import numpy as np

from generation.mvideo.shapes.world import ShapesSample


def shift_vector(
    id_maps: np.ndarray, length_px: tuple[float, float], rng: np.random.Generator
) -> tuple[int, int]:
    """(dy, dx) integer shift of length in `length_px` keeping the most mask pixels of `id_maps` in frame."""
    _, h, w = id_maps.shape
    lo, hi = length_px
    reach = int(np.ceil(hi))
    dy, dx = np.mgrid[-reach : reach + 1, -reach : reach + 1].reshape(2, -1)
    length = np.hypot(dy, dx)
    ok = (length >= lo) & (length <= hi)
    if not ok.any():
        raise ValueError(f"no integer shift has a length in {length_px}")
    dy, dx = dy[ok], dx[ok]
    _, ys, xs = np.nonzero(id_maps)
    kept = np.array(
        [
            int(((ys + y >= 0) & (ys + y < h) & (xs + x >= 0) & (xs + x < w)).sum())
            for y, x in zip(dy, dx, strict=True)
        ]
    )
    best = np.flatnonzero(kept == kept.max())
    pick = int(best[rng.integers(len(best))])
    return int(dy[pick]), int(dx[pick])


def shift_id_maps(id_maps: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """(T, H, W) id maps translated by (dy, dx) pixels; what leaves the frame is dropped, what enters is 0."""
    _, h, w = id_maps.shape
    out = np.zeros_like(id_maps)
    src = id_maps[:, max(0, -dy) : h - max(0, dy), max(0, -dx) : w - max(0, dx)]
    out[:, max(0, dy) : h - max(0, -dy), max(0, dx) : w - max(0, -dx)] = src
    return out


def shuffled_slots(
    sample: ShapesSample, num_slots: int, rng: np.random.Generator
) -> tuple[np.ndarray, list[str | None], tuple[int, ...]]:
    """(T, num_slots, H, W) bool slot masks in a shuffled object order, one label per slot, the permutation.

    Slot j holds object `perm[j]` (0-based, caption order) and its phrase; slots past the objects are empty
    with label None. Needs at least two objects (otherwise no non-identity order exists).
    """
    n = len(sample.objects)
    if n < 2:
        raise ValueError("shuffling slots needs at least two objects")
    orders = [p for p in itertools.permutations(range(n)) if p != tuple(range(n))]
    perm = orders[int(rng.integers(len(orders)))]
    slots = sample.slot_masks(num_slots)
    shuffled = np.zeros_like(slots)
    shuffled[:, :n] = slots[:, list(perm)]
    labels: list[str | None] = [sample.objects[k].phrase for k in perm] + [None] * (num_slots - n)
    return shuffled, labels, perm
