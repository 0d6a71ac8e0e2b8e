import numpy as np

from libs.media import MaskObject, MaskSequence
from services.video.convert import fit_masks


def test_fit_masks_keeps_the_best_scored_objects_at_the_output_size_and_length():
    # 6 frames of 64 x 48: three objects side by side (left: id 1, middle: id 2, right: id 3)
    id_maps = np.zeros((6, 48, 64), np.int32)
    id_maps[:, 8:40, 0:16], id_maps[:, 8:40, 24:40], id_maps[:, 8:40, 48:64] = 1, 2, 3
    objects = [MaskObject(1, "a", 0.9), MaskObject(2, "b", 0.2), MaskObject(3, "c", 0.5)]
    seq = MaskSequence.from_id_maps(id_maps, objects, fps=8)

    fitted = fit_masks(seq, width=32, height=32, num_frames=9, max_objects=2)

    assert (fitted.width, fitted.height, fitted.num_frames) == (32, 32, 9)
    assert [o.id for o in fitted.objects] == [1, 3]  # the lowest score (id 2) is dropped
    assert fitted.fps == 12.0  # 6 frames stretched to 9: the same duration
    first = fitted.id_map(0)
    assert set(np.unique(first).tolist()) == {0, 1, 3}
    assert (first[:, :8] == 1).any() and (first[:, 24:] == 3).any()  # nearest resize keeps the layout
