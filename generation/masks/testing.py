"""Small mask sequences for tests of generation/masks and its users (CLI, MaskService): fixed examples and
hypothesis strategies (hypothesis is a dev dependency; import this module from tests only)."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from libs.media import MaskObject, MaskSequence, MaskSequenceBuilder


def moving_boxes(
    num_frames: int = 6, width: int = 32, height: int = 24, fps: float = 8.0, *, step: int = 2
) -> MaskSequence:
    """Two objects: a 6x4 box (id 1, "dog") moving right by `step` pixels a frame, and a 5x5 box (id 2,
    "ball") that stays at the bottom right and is absent from the last frame."""
    maps = np.zeros((num_frames, height, width), dtype=np.int32)
    for t in range(num_frames):
        x = min(2 + step * t, width - 6)
        maps[t, 3:7, x : x + 6] = 1
        if t < num_frames - 1 or num_frames == 1:
            maps[t, height - 7 : height - 2, width - 7 : width - 2] = 2
    return MaskSequence.from_id_maps(maps, [MaskObject(1, "dog", 0.9), MaskObject(2, "ball", 0.8)], fps)


PROPERTY = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def sequences(draw, max_frames: int = 6, max_objects: int = 3) -> MaskSequence:
    """Random sequences of 1-6 frames, 4-14 px, up to 3 objects drawn as overlapping rectangles (later on
    top), each present or absent per frame, with per-frame scores and occlusion flags."""
    num_frames = draw(st.integers(1, max_frames))
    width, height = draw(st.integers(4, 14)), draw(st.integers(4, 14))
    num_objects = draw(st.integers(1, max_objects))
    builder = MaskSequenceBuilder(width, height, draw(st.sampled_from([4.0, 8.0, 12.5, 30.0])))
    for _ in range(num_frames):
        id_map = np.zeros((height, width), dtype=np.int32)
        for oid in range(1, num_objects + 1):
            if draw(st.booleans()):
                x0, y0 = draw(st.integers(0, width - 1)), draw(st.integers(0, height - 1))
                x1, y1 = draw(st.integers(x0 + 1, width)), draw(st.integers(y0 + 1, height))
                id_map[y0:y1, x0:x1] = oid
        present = [int(v) for v in np.unique(id_map) if v]
        scores = {oid: draw(st.sampled_from([0.0, 0.5, 1.0])) for oid in present}
        occluded = [oid for oid in present if draw(st.booleans())]
        builder.add_frame(id_map, scores=scores, occluded=occluded)
    labels = ["dog", "cat", "ball"]
    return builder.build([MaskObject(oid, labels[oid - 1], 0.5) for oid in range(1, num_objects + 1)])
