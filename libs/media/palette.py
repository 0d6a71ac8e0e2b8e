"""The stable colour of each object id, shared by overlays and palette PNG masks.

Ids 0..255 use the PASCAL VOC / DAVIS colour map (id 0 black, 1 dark red, 2 dark green, 3 olive, ...), the
palette that DAVIS-style palette PNG annotations carry, so our PNG masks look familiar in any viewer. Larger
ids (16-bit PNGs, proto ids) get a hue stepped by the golden ratio from the id, so the colour of an id
never depends on which other ids a sequence holds.
"""

from __future__ import annotations

import colorsys
from functools import lru_cache

import numpy as np

_GOLDEN = 0.618033988749895


@lru_cache(maxsize=1)
def voc_palette() -> np.ndarray:
    """The 256 x 3 uint8 PASCAL VOC colour map (index 0 is black)."""
    palette = np.zeros((256, 3), dtype=np.uint8)
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        palette[i] = (r, g, b)
    palette.setflags(write=False)
    return palette


def object_color(object_id: int) -> tuple[int, int, int]:
    """RGB colour of `object_id`; the same on every call, in every sequence."""
    if object_id < 0:
        raise ValueError(f"object ids are non-negative, got {object_id}")
    if object_id < 256:
        r, g, b = voc_palette()[object_id]
        return int(r), int(g), int(b)
    hue = (object_id * _GOLDEN) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.75, 0.95)
    return round(r * 255), round(g * 255), round(b * 255)
