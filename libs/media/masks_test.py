import tracemalloc

import numpy as np
import pytest

from libs.media import BoundingBox, MaskObject, MaskSequence, MaskSequenceBuilder, Visibility


def two_object_maps(t=3, h=6, w=8):
    maps = np.zeros((t, h, w), dtype=np.int64)
    maps[0, 1:3, 1:4] = 1
    maps[0, 4:6, 5:8] = 2
    maps[1, 2:4, 2:5] = 1  # object 2 absent in frame 1; frame 2 empty
    return maps[:t]


OBJECTS = [MaskObject(1, "dog", 0.9), MaskObject(2, "ball")]


def test_from_id_maps_accessors():
    maps = two_object_maps()
    seq = MaskSequence.from_id_maps(maps, OBJECTS, fps=8)
    assert (seq.num_frames, seq.width, seq.height, seq.fps) == (3, 8, 6, 8.0)
    assert seq.object_ids == (1, 2)
    assert seq.objects == (MaskObject(1, "dog", 0.9), MaskObject(2, "ball", 1.0))
    assert seq.object(1).label == "dog"
    np.testing.assert_array_equal(seq.to_dense(), maps)
    assert seq.id_map(0).dtype == np.int32
    for t, id_map in enumerate(seq.iter_id_maps()):
        np.testing.assert_array_equal(id_map, maps[t])
    np.testing.assert_array_equal(seq.mask(0, 2), maps[0] == 2)
    assert seq.mask(1, 2).dtype == bool and not seq.mask(1, 2).any()
    assert seq.box(0, 1) == BoundingBox(1, 1, 4, 3)
    assert seq.box(0, 1).to_xywh() == (1, 1, 3, 2)
    assert seq.box(1, 2) is None and seq.box(2, 1) is None
    assert seq.area(0, 1) == 6 and seq.area(1, 2) == 0
    assert seq.visible(0, 2) and not seq.visible(1, 2)
    assert seq.visibility(1, 2) == Visibility.ABSENT and seq.visibility(0, 2) == Visibility.VISIBLE
    assert seq.frame_object_ids(0) == (1, 2) and seq.frame_object_ids(2) == ()
    assert seq.duration == pytest.approx(3 / 8)
    assert "num_frames=3" in repr(seq)


def test_builder_equals_from_id_maps_for_both_input_forms():
    maps = two_object_maps()
    expected = MaskSequence.from_id_maps(maps, OBJECTS, 8)
    by_maps, by_dicts = MaskSequenceBuilder(8, 6, 8), MaskSequenceBuilder(8, 6, 8)
    for id_map in maps:
        by_maps.add_frame(id_map.astype(np.uint16))
        by_dicts.add_frame({k: id_map == k for k in (2, 1)})
    assert by_maps.build(OBJECTS) == expected
    assert by_dicts.build(OBJECTS) == expected
    assert by_maps.num_frames == 3


def test_objects_default_to_ids_seen_and_may_be_absent_everywhere():
    seq = MaskSequence.from_id_maps(two_object_maps(), None, 8)
    assert seq.objects == (MaskObject(1, "", 1.0), MaskObject(2, "", 1.0))
    with_ghost = MaskSequence.from_id_maps(two_object_maps(), [*OBJECTS, MaskObject(9, "ghost")], 8)
    assert with_ghost.object_ids == (1, 2, 9) and not any(with_ghost.visible(t, 9) for t in range(3))


def test_equality_covers_pixels_and_metadata():
    maps = two_object_maps()
    seq = MaskSequence.from_id_maps(maps, OBJECTS, 8)
    assert seq == MaskSequence.from_id_maps(maps.copy(), list(reversed(OBJECTS)), 8)
    assert hash(seq) == hash(MaskSequence.from_id_maps(maps, OBJECTS, 8))
    changed = maps.copy()
    changed[2, 0, 0] = 1
    assert seq != MaskSequence.from_id_maps(changed, OBJECTS, 8)
    assert seq != MaskSequence.from_id_maps(maps, [MaskObject(1, "cat", 0.9), OBJECTS[1]], 8)
    assert seq != MaskSequence.from_id_maps(maps, OBJECTS, 12)
    assert seq != "not a sequence"


def test_fps_and_scores_are_float32_canonical():
    seq = MaskSequence.from_id_maps(two_object_maps(), [MaskObject(1, score=0.3), MaskObject(2)], 29.97)
    assert seq.fps == 29.97 and seq.object(1).score == 0.3
    assert MaskSequence.from_id_maps(two_object_maps(), None, 30000 / 1001).fps == 29.97003


def test_per_frame_scores_occlusion_and_box_only_objects():
    b = MaskSequenceBuilder(8, 6, 8)
    maps = two_object_maps()
    b.add_frame(maps[0], scores={1: 0.75, 2: 0.5}, occluded=[2])
    b.add_frame(maps[1], boxes={2: (1.5, 0, 4, 2.25)}, scores={2: 0.25, 7: 0.5}, occluded=[7])
    seq = b.build(OBJECTS)
    assert seq.frame_score(0, 1) == 0.75 and seq.visibility(0, 2) == Visibility.OCCLUDED
    assert seq.visible(1, 2) and seq.area(1, 2) == 0 and not seq.mask(1, 2).any()
    assert seq.box(1, 2) == BoundingBox(1.5, 0.0, 4.0, 2.25) and seq.frame_score(1, 2) == 0.25
    assert seq.rle_counts(1, 2) is None and seq.rle_counts(1, 1) is not None
    assert (seq.id_map(1) == maps[1]).all()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: MaskSequenceBuilder(0, 6, 8), "width must be a positive integer"),
        (lambda: MaskSequenceBuilder(8, -1, 8), "height must be a positive integer"),
        (lambda: MaskSequenceBuilder(8, 6, 0), "fps must be > 0"),
        (lambda: MaskSequenceBuilder(8, 6, float("nan")), "fps must be finite"),
        (lambda: MaskSequenceBuilder(8, 6, 8, on_overlap="merge"), "on_overlap must be one of"),
        (lambda: MaskSequenceBuilder(8, 6, 8).build(), "no frames added"),
        (lambda: MaskObject(0, "bg"), "0 is reserved for the background"),
        (lambda: MaskObject(-3), r"must be in \[1, "),
        (lambda: MaskObject(True), "must be an integer"),
        (lambda: MaskObject(1, "x", 1.5), r"score of object 1 must be in \[0, 1\]"),
        (lambda: MaskObject(1, 5), "label of object 1 must be a str"),
        (lambda: MaskSequence.from_id_maps(np.zeros((0, 4, 4), int), None, 8), "id_maps has no frames"),
        (lambda: MaskSequence.from_id_maps(np.zeros((4, 4), int), None, 8), "got a frame of shape"),
        (
            lambda: MaskSequence.from_id_maps(two_object_maps(), [OBJECTS[0]], 8),
            r"ids \[2\] that are not in objects",
        ),
        (
            lambda: MaskSequence.from_id_maps(two_object_maps(), [*OBJECTS, MaskObject(1)], 8),
            "duplicate object id 1",
        ),
        (
            lambda: MaskSequence.from_id_maps(two_object_maps().astype(float), None, 8),
            "integer dtype, got float64",
        ),
        (lambda: MaskSequence.from_id_maps(-two_object_maps(), None, 8), "negative value -2"),
        (
            lambda: MaskSequence.from_id_maps([np.zeros((6, 8), int), np.zeros((6, 7), int)], None, 8),
            "frame 1: id map has shape",
        ),
    ],
)
def test_validation_errors_name_the_problem(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_add_frame_validation():
    b = MaskSequenceBuilder(4, 3, 8)
    ones = np.ones((3, 4), dtype=bool)
    with pytest.raises(ValueError, match="frame 0: mask key 0 is reserved for the background"):
        b.add_frame({0: ones})
    with pytest.raises(ValueError, match=r"frame 0: mask of object 1 has shape \(4, 3\)"):
        b.add_frame({1: ones.T})
    with pytest.raises(ValueError, match="must be boolean"):
        b.add_frame({1: ones.astype(float)})
    with pytest.raises(ValueError, match="integer dtype, got bool"):
        b.add_frame(ones)
    with pytest.raises(ValueError, match=r"object 2 overlaps object\(s\) \[1\] on 12 pixels"):
        b.add_frame({1: ones, 2: ones})
    with pytest.raises(ValueError, match="has a mask; its box is computed"):
        b.add_frame({1: ones}, boxes={1: (0, 0, 1, 1)})
    with pytest.raises(ValueError, match="x0 <= x1"):
        b.add_frame({}, boxes={1: (2, 0, 1, 1)})
    with pytest.raises(ValueError, match=r"score of object 1 must be in \[0, 1\]"):
        b.add_frame({1: ones}, scores={1: 2.0})
    assert b.num_frames == 0  # failed frames are not appended
    b.add_frame({1: ones})
    seq = b.build()
    with pytest.raises(ValueError, match=r"frame index 1 out of range \[0, 1\)"):
        seq.id_map(1)
    with pytest.raises(ValueError, match=r"unknown object id 5; the sequence has ids \[1\]"):
        seq.mask(0, 5)


def test_overlap_policies():
    left = np.zeros((2, 4), dtype=bool)
    left[:, :3] = True
    right = np.zeros((2, 4), dtype=bool)
    right[:, 1:] = True
    first = MaskSequenceBuilder(4, 2, 8, on_overlap="first_wins")
    first.add_frame({1: left, 2: right})
    last = MaskSequenceBuilder(4, 2, 8, on_overlap="last_wins")
    last.add_frame({1: left, 2: right})
    np.testing.assert_array_equal(first.build().id_map(0), [[1, 1, 1, 2]] * 2)
    np.testing.assert_array_equal(last.build().id_map(0), [[1, 2, 2, 2]] * 2)


def test_immutable():
    seq = MaskSequence.from_id_maps(two_object_maps(), OBJECTS, 8)
    with pytest.raises(AttributeError):
        seq.width = 3
    with pytest.raises(AttributeError):
        seq.fps = 3
    with pytest.raises(AttributeError):
        seq.objects[0].label = "cat"
    id_map = seq.id_map(0)
    id_map[:] = 0
    assert seq.area(0, 1) == 6


def test_to_dense_refuses_large_allocations():
    seq = MaskSequence.from_id_maps(two_object_maps(), OBJECTS, 8)
    with pytest.raises(ValueError, match="iter_id_maps"):
        seq.to_dense(max_bytes=100)


def test_long_sequence_memory_is_bounded():
    t_frames, size, radius = 1000, 256, 40
    yy, xx = np.mgrid[0:size, 0:size]
    tracemalloc.start()
    try:
        builder = MaskSequenceBuilder(size, size, 24)
        for t in range(t_frames):
            cx = radius + (t * 3) % (size - 2 * radius)
            cy = size / 2 + 60 * np.sin(t / 25)
            builder.add_frame({1: (xx - cx) ** 2 + (yy - cy) ** 2 < radius**2})
        seq = builder.build([MaskObject(1, "disc")])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    dense_bytes = t_frames * size * size
    assert seq.num_frames == t_frames
    assert seq.nbytes < dense_bytes / 100, seq.nbytes  # about 1/300 of a uint8 T x H x W array
    assert peak < dense_bytes / 10, peak  # whole build, incl. per-frame temporaries and Python objects
    assert seq.area(500, 1) == pytest.approx(np.pi * radius**2, rel=0.02)
