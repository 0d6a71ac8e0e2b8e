import numpy as np
import pytest

from libs.media import (
    MaskObject,
    MaskSequence,
    MaskSequenceBuilder,
    iter_overlay,
    object_color,
    render_masks,
    render_overlay,
)


def square_sequence(t=3, size=64):
    maps = np.zeros((t, size, size), dtype=np.int32)
    for i in range(t):
        maps[i, 30:50, 10 + 5 * i : 30 + 5 * i] = 1
        maps[i, 40:60, 40:60] = 2
    return MaskSequence.from_id_maps(maps, [MaskObject(1, "dog"), MaskObject(2, "ball")], 8)


def grey(t=3, size=64):
    return np.full((t, size, size, 3), 128, dtype=np.uint8)


def test_overlay_shape_and_colours():
    seq = square_sequence()
    frames = grey()
    out = render_overlay(frames, seq, alpha=0.5, labels=True)
    assert out.shape == frames.shape and out.dtype == np.uint8
    inside = out[0, 40, 20].astype(int)  # object 1, away from its contour and label
    assert not np.array_equal(inside, frames[0, 40, 20])
    np.testing.assert_allclose(inside, (np.array(object_color(1)) + 128) / 2, atol=1)
    assert not np.array_equal(out[0, 50, 50], out[0, 40, 20])  # each object its own colour
    np.testing.assert_array_equal(out[0, 5:25, 40:60], frames[0, 5:25, 40:60])  # background untouched
    assert not np.array_equal(out[0, 30, 20], out[0, 40, 20])  # the contour is drawn
    no_labels = render_overlay(frames, seq, labels=False)
    assert not np.array_equal(no_labels, out)  # labels add pixels above the objects


def test_side_by_side_doubles_width_with_source_on_the_left():
    seq = square_sequence()
    frames = grey()
    out = render_overlay(frames, seq, side_by_side=True)
    assert out.shape == (3, 64, 128, 3)
    np.testing.assert_array_equal(out[:, :, :64], frames)
    np.testing.assert_array_equal(out[:, :, 64:], render_overlay(frames, seq))


def test_render_masks_on_black():
    seq = square_sequence()
    out = render_masks(seq, labels=False, contours=False)
    assert out.shape == (3, 64, 64, 3)
    assert out[1, 0, 0].tolist() == [0, 0, 0]
    assert tuple(out[1, 45, 25]) == object_color(1) and tuple(out[1, 50, 50]) == object_color(2)


def test_box_only_objects_get_a_rectangle():
    b = MaskSequenceBuilder(16, 16, 8)
    b.add_frame({}, boxes={3: (2, 2, 10, 10)})
    out = render_masks(b.build([MaskObject(3, "car")]), labels=False)
    assert tuple(out[0, 2, 5]) == object_color(3) and out[0, 5, 5].tolist() == [0, 0, 0]


def test_palette_is_stable_and_distinct():
    colours = [object_color(i) for i in range(1, 40)]
    assert len(set(colours)) == len(colours)
    assert object_color(0) == (0, 0, 0) and object_color(1) == (128, 0, 0)
    assert object_color(1000) == object_color(1000) != object_color(1001)


def test_overlay_input_errors():
    seq = square_sequence()
    with pytest.raises(ValueError, match="got 2 frames for a mask sequence of 3 frames"):
        render_overlay(grey(t=2), seq)
    with pytest.raises(ValueError, match="more frames than the mask sequence's 3"):
        render_overlay(grey(t=4), seq)
    with pytest.raises(ValueError, match=r"frame 0 is uint8 \(32, 32, 3\), expected uint8 \(64, 64, 3\)"):
        render_overlay(grey(size=32), seq)
    with pytest.raises(ValueError, match=r"alpha must be in \[0, 1\]"):
        next(iter_overlay(grey(), seq, alpha=2))
