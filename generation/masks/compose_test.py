"""Composition: layers keep their pixels except where a higher layer covers them; ids, sizes, fps, timing."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from generation.masks.compose import Layer, compose, resize
from generation.masks.testing import PROPERTY, moving_boxes, sequences
from generation.masks.trajectory import FieldError
from libs.media import MaskObject, MaskSequence, MaskSequenceBuilder, Visibility


@st.composite
def same_grid_layers(draw):
    """2-3 random sequences with one size and fps, random z orders (ties allowed)."""
    first = draw(sequences(max_frames=4))
    layers = [first]
    for _ in range(draw(st.integers(1, 2))):
        other = draw(sequences(max_frames=4))
        builder = MaskSequenceBuilder(first.width, first.height, first.fps)
        for t in range(other.num_frames):
            id_map = np.zeros((first.height, first.width), dtype=np.int32)
            h, w = min(first.height, other.height), min(first.width, other.width)
            id_map[:h, :w] = other.id_map(t)[:h, :w]
            builder.add_frame(id_map)
        layers.append(builder.build(other.objects))
    z_orders = draw(st.lists(st.integers(-1, 1), min_size=len(layers), max_size=len(layers)))
    return [Layer(seq, z) for seq, z in zip(layers, z_orders, strict=True)]


@PROPERTY
@given(layers=same_grid_layers())
def test_each_object_keeps_its_pixels_except_where_a_higher_layer_covers_them(layers):
    result = compose(layers)
    seq = result.sequence
    assert seq.num_frames == max(layer.sequence.num_frames for layer in layers)
    rank = {i: r for r, i in enumerate(sorted(range(len(layers)), key=lambda i: (layers[i].z_order, i)))}
    for t in range(seq.num_frames):
        composed = seq.id_map(t)
        for i, layer in enumerate(layers):
            if t >= layer.sequence.num_frames:
                continue
            above = np.zeros_like(composed, dtype=bool)
            for j, other in enumerate(layers):
                if rank[j] > rank[i] and t < other.sequence.num_frames:
                    above |= other.sequence.id_map(t) != 0
            for oid in layer.sequence.object_ids:
                expected = layer.sequence.mask(t, oid) & ~above
                new_id = result.object_id(i, oid)
                assert np.array_equal(composed == new_id, expected)
                if expected.any() and (layer.sequence.mask(t, oid) & above).any():
                    assert seq.visibility(t, new_id) is Visibility.OCCLUDED


def test_ids_are_renumbered_in_layer_order_or_kept_with_fresh_ids_for_collisions():
    a = moving_boxes()
    b = MaskSequence.from_id_maps(np.full((1, 4, 4), 5, np.int32), [MaskObject(5, "sky")], fps=8)
    result = compose([a, a, b])
    assert result.sequence.object_ids == (1, 2, 3, 4, 5)
    assert [(m.layer_index, m.source_object_id, m.object_id) for m in result.mappings] == [
        (0, 1, 1), (0, 2, 2), (1, 1, 3), (1, 2, 4), (2, 5, 5),
    ]  # fmt: skip
    assert [o.label for o in result.sequence.objects] == ["dog", "ball", "dog", "ball", "sky"]
    kept = compose([a, a, b], keep_object_ids=True)
    assert [(m.layer_index, m.source_object_id, m.object_id) for m in kept.mappings] == [
        (0, 1, 1), (0, 2, 2), (1, 1, 6), (1, 2, 7), (2, 5, 5),
    ]  # fmt: skip


def test_layers_are_resized_resampled_and_placed_at_their_start_frame():
    small = moving_boxes(num_frames=4, width=16, height=12, fps=4)
    big = moving_boxes(num_frames=6, width=32, height=24, fps=8)
    result = compose([Layer(big), Layer(small, z_order=1, start_frame=3)])
    seq = result.sequence
    assert (seq.width, seq.height, seq.fps) == (32, 24, 8.0)
    assert seq.num_frames == 3 + 8  # 4 frames at 4 fps are 8 at 8 fps
    small_dog = result.object_id(1, 1)
    assert not seq.visible(2, small_dog) and seq.visible(3, small_dog)
    assert seq.area(3, small_dog) == 4 * small.area(0, 1)  # twice the size in both directions
    assert np.array_equal(seq.mask(3, small_dog), seq.mask(4, small_dog))  # 4 fps frames shown twice
    assert compose([big], num_frames=2).sequence.num_frames == 2


def test_resize_scales_masks_and_boxes():
    seq = moving_boxes()
    half = resize(seq, 16, 12)
    assert half.object_ids == seq.object_ids and half.area(0, 1) == seq.area(0, 1) // 4
    assert resize(seq, seq.width, seq.height) == seq
    builder = MaskSequenceBuilder(10, 10, 1)
    builder.add_frame(np.zeros((10, 10), np.int32), boxes={1: (2, 2, 4, 6)})
    assert resize(builder.build(), 20, 5).box(0, 1) == (4, 1, 8, 3)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"layers": []}, "layers"),
        ({"layers": [Layer(moving_boxes(), start_frame=-1)]}, "layers[0].start_frame"),
        ({"layers": [moving_boxes(), "x"]}, "layers[1]"),
        ({"layers": [moving_boxes()], "width": 0}, "width"),
        ({"layers": [moving_boxes()], "fps": -1}, "fps"),
        ({"layers": [moving_boxes()], "num_frames": 0}, "num_frames"),
    ],
)
def test_bad_compositions_name_the_field(kwargs, field):
    layers = kwargs.pop("layers")
    with pytest.raises(FieldError) as error:
        compose(layers, **kwargs)
    assert error.value.field == field
