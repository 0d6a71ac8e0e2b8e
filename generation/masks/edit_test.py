"""The editing algebra (hypothesis) and one test per edit and per error."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from generation.masks import edit
from generation.masks.testing import PROPERTY, moving_boxes, sequences
from generation.masks.trajectory import FieldError, Trajectory
from libs.media import MaskObject, MaskSequence, MaskSequenceBuilder, Visibility


def _frame(seq: MaskSequence, t: int):
    ids = seq.frame_object_ids(t)
    return (
        seq.id_map(t).tolist(),
        ids,
        [seq.frame_score(t, oid) for oid in ids],
        [seq.visibility(t, oid) for oid in ids],
    )


# -- properties ----------------------------------------------------------------------------------------------


@PROPERTY
@given(data=st.data(), seq=sequences())
def test_translate_then_back_is_the_identity_where_nothing_leaves_the_frame(data, seq):
    xs, ys = [], []
    for t in range(seq.num_frames):
        for oid in seq.frame_object_ids(t):
            box = seq.box(t, oid)
            xs += [box.x0, box.x1]
            ys += [box.y0, box.y1]
    if not xs:
        return
    dx = data.draw(st.integers(-int(min(xs)), seq.width - int(max(xs))), label="dx")
    dy = data.draw(st.integers(-int(min(ys)), seq.height - int(max(ys))), label="dy")
    moved = edit.translate(seq, (dx, dy))
    assert edit.translate(moved, (-dx, -dy)) == seq


@PROPERTY
@given(seq=sequences(), offset=st.tuples(st.floats(-20, 20), st.floats(-20, 20)))
def test_a_fractional_translation_is_undone_by_its_negation_when_nothing_leaves(seq, offset):
    dx, dy = np.rint(offset).astype(int)
    fits = all(
        0 <= box.x0 + dx and box.x1 + dx <= seq.width and 0 <= box.y0 + dy and box.y1 + dy <= seq.height
        for t in range(seq.num_frames)
        for box in (seq.box(t, oid) for oid in seq.frame_object_ids(t))
    )
    back = edit.translate(edit.translate(seq, offset), (-offset[0], -offset[1]))
    if fits:
        assert back == seq


@PROPERTY
@given(seq=sequences())
def test_reverse_twice_is_the_identity(seq):
    once = edit.reverse(seq)
    assert [_frame(once, t) for t in range(seq.num_frames)] == [
        _frame(seq, t) for t in reversed(range(seq.num_frames))
    ]
    assert edit.reverse(once) == seq


@PROPERTY
@given(seq=sequences(max_frames=9))
def test_retime_double_then_half_keeps_every_kept_frame(seq):
    fast = edit.retime(seq, 2)
    assert fast.num_frames == -(-seq.num_frames // 2)
    assert [_frame(fast, i) for i in range(fast.num_frames)] == [
        _frame(seq, 2 * i) for i in range(fast.num_frames)
    ]
    slow = edit.retime(fast, 0.5)
    assert slow.num_frames == 2 * fast.num_frames
    for i in range(fast.num_frames):
        assert _frame(slow, 2 * i) == _frame(fast, i) == _frame(slow, 2 * i + 1)


@PROPERTY
@given(seq=sequences(), speed=st.sampled_from([1 / 3, 0.5, 1.0, 1.5, 2.0, 3.0]))
def test_retime_shows_floor_of_i_times_speed(seq, speed):
    out = edit.retime(seq, speed)
    expected = [int(np.floor(i * speed + 1e-9)) for i in range(out.num_frames)]
    assert expected[-1] < seq.num_frames <= int(np.floor(out.num_frames * speed + 1e-9))
    assert [_frame(out, i) for i in range(out.num_frames)] == [_frame(seq, j) for j in expected]


@PROPERTY
@given(seq=sequences())
def test_select_and_drop_partition_the_objects(seq):
    ids = list(seq.object_ids)
    kept = edit.select_objects(seq, object_ids=ids[:1])
    dropped = edit.drop_objects(seq, object_ids=ids[:1])
    assert kept.object_ids == (ids[0],) and dropped.object_ids == tuple(ids[1:])
    for t in range(seq.num_frames):
        full = seq.id_map(t)
        assert np.array_equal(kept.id_map(t) + dropped.id_map(t), full)


@PROPERTY
@given(seq=sequences(), radius=st.integers(1, 3))
def test_dilate_only_grows_into_background_and_erode_only_shrinks(seq, radius):
    grown, shrunk = edit.dilate(seq, radius), edit.erode(seq, radius)
    for t in range(seq.num_frames):
        before, after = seq.id_map(t), grown.id_map(t)
        assert np.array_equal(after[before != 0], before[before != 0])
        small = shrunk.id_map(t)
        assert np.all((small == before) | (small == 0))


# -- objects --------------------------------------------------------------------------------------------------


def test_select_by_label_keeps_metadata_and_relabel_changes_only_labels():
    seq = moving_boxes()
    dog = edit.select_objects(seq, labels=["dog"])
    assert dog.objects == (MaskObject(1, "dog", 0.9),)
    assert np.array_equal(dog.id_map(0), np.where(seq.id_map(0) == 1, 1, 0))
    renamed = edit.relabel_objects(seq, {2: "puck"})
    assert [o.label for o in renamed.objects] == ["dog", "puck"]
    assert all(np.array_equal(renamed.id_map(t), seq.id_map(t)) for t in range(seq.num_frames))


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda s: edit.select_objects(s, object_ids=[1, 7]), "object_ids[1]"),
        (lambda s: edit.select_objects(s), "object_ids"),
        (lambda s: edit.drop_objects(s, labels=["cat"]), "labels[0]"),
        (lambda s: edit.relabel_objects(s, {9: "x"}), "labels"),
        (lambda s: edit.translate(s, (1, 0), object_ids=[3]), "object_ids[0]"),
        (lambda s: edit.translate(s, (1, float("nan"))), "offset.dy"),
        (
            lambda s: edit.translate(s, Trajectory([(0, (0, 0)), (6, (5, 0))])),
            "offset.keyframes[1].frame_index",
        ),
        (lambda s: edit.translate(s, Trajectory([(0, 1.0)])), "offset"),
        (lambda s: edit.scale(s, 0), "factor"),
        (lambda s: edit.scale(s, Trajectory([(0, 1.0), (3, -1.0)])), "factor.keyframes[1].value"),
        (lambda s: edit.rotate(s, Trajectory([(0, 0.0), (99, 90.0)])), "degrees.keyframes[1].frame_index"),
        (lambda s: edit.dilate(s, 0), "radius_pixels"),
        (lambda s: edit.erode(s, 2, object_ids=[5]), "object_ids[0]"),
        (lambda s: edit.trim(s, 6), "start_frame"),
        (lambda s: edit.trim(s, -1), "start_frame"),
        (lambda s: edit.trim(s, 2, 2), "end_frame"),
        (lambda s: edit.trim(s, 0, 7), "end_frame"),
        (lambda s: edit.retime(s, 0), "speed"),
        (lambda s: edit.retime(s, -2), "speed"),
        (lambda s: edit.resample_fps(s, 0), "fps"),
        (lambda s: edit.resample_fps(s, 1e-7), "fps"),  # was ZeroDivisionError: the rate's fraction is 0
        (lambda s: edit.resample_fps(s, edit.MIN_FPS / 2), "fps"),
        (lambda s: edit.loop(s, 0), "repeat_count"),
        (lambda s: edit.loop(s), "repeat_count"),
        (lambda s: edit.loop(s, target_num_frames=0), "target_num_frames"),
        (lambda s: edit.time_warp(s, Trajectory([(0, 0.0), (4, 6.0)])), "source_frames.keyframes[1].value"),
        (lambda s: edit.time_warp(s, Trajectory([(0, 0.0)]), num_frames=0), "num_frames"),
    ],
)
def test_bad_arguments_raise_field_errors_naming_the_field(call, field):
    with pytest.raises(FieldError) as error:
        call(moving_boxes())
    assert error.value.field == field
    assert isinstance(error.value, ValueError) and field in str(error.value)


def test_trajectories_reject_unsorted_and_empty_keyframes():
    with pytest.raises(FieldError, match="sorted") as error:
        Trajectory([(3, 1.0), (1, 2.0)])
    assert error.value.field == "keyframes[1].frame_index"
    with pytest.raises(FieldError, match="at least one"):
        Trajectory([])
    with pytest.raises(FieldError) as error:
        Trajectory.parse(["0:1,2", "x:3,4"])
    assert error.value.field == "keyframes[1].frame_index"


# -- geometry ----------------------------------------------------------------------------------------------------


def test_translate_along_a_trajectory_moves_each_frame_by_its_interpolated_offset():
    seq = moving_boxes(step=0)
    path = Trajectory([(0, (0, 0)), (4, (8, 4))])
    moved = edit.translate(seq, path, object_ids=[1])
    for t in range(seq.num_frames):
        dx, dy = np.rint(path.at(t)).astype(int)
        box, moved_box = seq.box(t, 1), moved.box(t, 1)
        assert (moved_box.x0 - box.x0, moved_box.y0 - box.y0) == (dx, dy)
        assert moved.box(t, 2) == seq.box(t, 2)  # untouched


def test_translate_clips_to_the_frame_and_drops_objects_that_leave():
    seq = moving_boxes()
    out = edit.translate(seq, (seq.width, 0), object_ids=[1])
    assert not out.visible(0, 1) and out.visible(0, 2)
    half = edit.translate(seq, (-4, 0), object_ids=[1])
    assert half.area(0, 1) == 4 * 4  # the 6x4 box at x=2 moved to x=-2 keeps 4 of its columns
    assert half.box(0, 1).x0 == 0


def test_a_moved_object_covers_the_one_it_lands_on_which_is_flagged_occluded():
    seq = moving_boxes(num_frames=2, step=0)
    target = seq.box(0, 2)
    src = seq.box(0, 1)
    moved = edit.translate(seq, (target.x0 - src.x0, target.y0 - src.y0), object_ids=[1])
    assert moved.area(0, 1) == seq.area(0, 1)
    assert moved.area(0, 2) == 5 * 5 - 5 * 4  # the 6x4 box lands on the top 4 rows of the 5x5 one
    assert moved.visibility(0, 2) is Visibility.OCCLUDED
    assert moved.visibility(0, 1) is Visibility.VISIBLE


def test_scale_and_rotate_about_the_box_centre():
    seq = edit.translate(moving_boxes(num_frames=1), (6, 4), object_ids=[1])  # room to grow
    big = edit.scale(seq, 2, object_ids=[1])
    box, big_box = seq.box(0, 1), big.box(0, 1)
    assert (big_box.width, big_box.height) == (2 * box.width, 2 * box.height)
    assert ((big_box.x0 + big_box.x1) / 2, (big_box.y0 + big_box.y1) / 2) == (
        (box.x0 + box.x1) / 2,
        (box.y0 + box.y1) / 2,
    )
    turned = edit.rotate(seq, 90, object_ids=[1])
    assert (turned.box(0, 1).width, turned.box(0, 1).height) == (box.height, box.width)
    assert turned.area(0, 1) == seq.area(0, 1)
    assert edit.rotate(seq, 360) == seq and edit.scale(seq, 1) == seq


def test_rotation_is_counter_clockwise_on_screen():
    maps = np.zeros((1, 21, 21), dtype=np.int32)
    maps[0, 10, 10:21] = 1  # a horizontal bar, centre (15.5, 10.5)
    seq = MaskSequence.from_id_maps(maps, [MaskObject(1)], fps=1)
    turned = edit.rotate(seq, Trajectory([(0, 45.0)]))  # its right end goes up, its left end down
    ys, xs = np.nonzero(turned.id_map(0))
    right = xs > 15
    assert ys[right].mean() < 10.5 < ys[~right & (xs < 15)].mean()


def test_scale_trajectory_grows_the_object_over_time():
    seq = edit.translate(moving_boxes(step=0), (6, 4), object_ids=[1])
    grown = edit.scale(seq, Trajectory([(0, 1.0), (5, 2.0)], "smooth"), object_ids=[1])
    areas = [grown.area(t, 1) for t in range(seq.num_frames)]
    assert areas[0] == seq.area(0, 1) and areas == sorted(areas) and areas[-1] == 4 * seq.area(0, 1)


def test_box_only_objects_are_moved_as_boxes():
    builder = MaskSequenceBuilder(20, 10, 4)
    builder.add_frame(np.zeros((10, 20), np.int32), boxes={1: (2, 2, 6, 5)}, scores={1: 0.7})
    seq = builder.build([MaskObject(1, "car")])
    moved = edit.translate(seq, (3, 1))
    assert moved.box(0, 1) == (5, 3, 9, 6) and moved.rle_counts(0, 1) is None
    assert moved.frame_score(0, 1) == pytest.approx(0.7)
    assert not edit.translate(seq, (30, 0)).visible(0, 1)
    assert edit.dilate(seq, 1).box(0, 1) == (1, 1, 7, 6)


def test_dilate_and_erode_use_a_disk():
    maps = np.zeros((1, 15, 15), dtype=np.int32)
    maps[0, 7, 7] = 1
    seq = MaskSequence.from_id_maps(maps, None, fps=1)
    disk = edit.dilate(seq, 2).id_map(0)
    assert disk.sum() == 13  # offsets with dx^2 + dy^2 <= 4
    assert disk[7, 5] and disk[6, 6] and not disk[5, 5]
    assert np.array_equal(edit.erode(edit.dilate(seq, 2), 2).id_map(0), maps[0])


def test_erode_does_not_eat_objects_from_the_frame_edge_and_dilate_stops_at_other_objects():
    maps = np.zeros((1, 10, 10), dtype=np.int32)
    maps[0, :, :4] = 1
    maps[0, :, 5:] = 2
    seq = MaskSequence.from_id_maps(maps, None, fps=1)
    eroded = edit.erode(seq, 1, object_ids=[1]).id_map(0)
    assert eroded[:, :3].all() and not eroded[:, 3].any()
    grown = edit.dilate(seq, 3, object_ids=[1]).id_map(0)
    assert (grown[:, 4] == 1).all() and (grown[:, 5:] == 2).all()


def _disk_dilate_by_rows(mask: np.ndarray, radius: int) -> np.ndarray:
    """The disk dilation spelt out: one shifted row window per disk row (the O(radius) reference)."""
    h, w = mask.shape
    out = np.zeros_like(mask)
    for dy in range(-min(radius, h - 1), min(radius, h - 1) + 1):
        half = int(np.floor(np.sqrt(radius * radius - dy * dy)))
        while half * half > radius * radius - dy * dy:
            half -= 1
        for y in range(h):
            if 0 <= y - dy < h:
                row = mask[y - dy]
                for x in range(w):
                    out[y, x] |= row[max(0, x - half) : x + half + 1].any()
    return out


@PROPERTY
@given(
    mask=st.integers(1, 12).flatmap(
        lambda h: st.integers(1, 12).flatmap(
            lambda w: st.lists(st.booleans(), min_size=h * w, max_size=h * w).map(
                lambda bits: np.array(bits, dtype=bool).reshape(h, w)
            )
        )
    ),
    radius=st.integers(0, 30),
)
def test_disk_dilation_matches_the_row_by_row_reference_for_any_radius(mask, radius):
    assert np.array_equal(edit._disk_dilate(mask, radius), _disk_dilate_by_rows(mask, radius))


def test_a_radius_past_the_frame_diagonal_is_clamped_to_it_with_the_same_result(monkeypatch):
    maps = np.zeros((2, 12, 20), dtype=np.int32)
    maps[:, 2:4, 3:6] = 1
    maps[:, 8:10, 15:18] = 2
    builder = MaskSequenceBuilder(20, 12, 4)
    for id_map in maps:
        builder.add_frame(id_map, boxes={3: (1, 1, 4, 3)})
    seq = builder.build([MaskObject(1, "a"), MaskObject(2, "b"), MaskObject(3, "box")])
    largest = edit.max_radius(20, 12)
    assert largest >= np.hypot(20, 12)
    expected = edit.dilate(seq, largest), edit.erode(seq, largest)

    radii = []
    original = edit._disk_dilate

    def spy(mask, radius):
        radii.append(radius)
        assert radius <= largest, f"dilated by {radius}: the work would grow with the radius"
        return original(mask, radius)

    monkeypatch.setattr(edit, "_disk_dilate", spy)
    absurd = 10**7
    assert edit.dilate(seq, absurd) == expected[0]
    assert edit.erode(seq, absurd) == expected[1]
    assert radii and max(radii) == largest
    assert (expected[0].id_map(0) != 0).all()  # the lowest id reached every background pixel
    assert not expected[1].id_map(0).any() and not expected[1].visible(0, 3)  # erosion left nothing


def test_resampling_a_sequence_of_a_tiny_frame_rate_counts_frames_without_dividing_by_zero():
    assert edit.resample_num_frames(5, 1e-30, 8) > 10**30  # for the caller's size limit to refuse
    assert edit.resample_num_frames(5, 8, 1e30) > 10**29
    assert edit.resample_num_frames(5, 8, edit.MIN_FPS) == 1
    assert edit.fps_ratio(1e-9, 1e-9) == 1


# -- time -----------------------------------------------------------------------------------------------------------


def test_trim_loop_resample_and_time_warp():
    seq = moving_boxes(num_frames=5)
    frames = [seq.id_map(t) for t in range(5)]
    assert [m.tolist() for m in edit.trim(seq, 1, 3).iter_id_maps()] == [f.tolist() for f in frames[1:3]]
    assert edit.trim(seq, 3).num_frames == 2

    looped = edit.loop(seq, 2)
    assert looped.num_frames == 10 and np.array_equal(looped.id_map(7), frames[2])
    pong = edit.loop(seq, 3, ping_pong=True)
    order = [0, 1, 2, 3, 4, 3, 2, 1, 0, 1, 2, 3, 4]
    assert pong.num_frames == len(order)
    assert all(np.array_equal(pong.id_map(i), frames[j]) for i, j in enumerate(order))
    assert edit.loop(seq, target_num_frames=7, ping_pong=True).num_frames == 7

    faster = edit.resample_fps(seq, 4)  # 8 fps -> 4 fps keeps the duration
    assert faster.fps == 4 and faster.num_frames == 3 and faster.duration == pytest.approx(0.75)
    assert [np.array_equal(faster.id_map(i), frames[2 * i]) for i in range(3)] == [True] * 3
    assert edit.resample_fps(seq, 16).num_frames == 10

    warp = edit.time_warp(seq, Trajectory([(0, 0.0), (8, 4.0), (10, 0.0)]))
    assert warp.num_frames == 11
    expected = [0, 0, 1, 2, 2, 2, 3, 4, 4, 2, 0]  # rint half to even of 0, .5, 1, 1.5, 2, 2.5, ...
    assert [
        int(np.argmax([np.array_equal(warp.id_map(i), f) for f in frames])) for i in range(11)
    ] == expected


def test_ops_keep_per_frame_scores_and_occlusion_flags():
    builder = MaskSequenceBuilder(8, 8, 4)
    for t in range(3):
        m = np.zeros((8, 8), np.int32)
        m[t : t + 2, 1:3] = 1
        builder.add_frame(m, scores={1: 0.25 * (t + 1)}, occluded=[1] if t == 1 else [])
    seq = builder.build([MaskObject(1, "x", 0.5)])
    back = edit.reverse(seq)
    assert [back.frame_score(t, 1) for t in range(3)] == [0.75, 0.5, 0.25]
    assert back.visibility(1, 1) is Visibility.OCCLUDED
    moved = edit.translate(seq, (2, 0))
    assert moved.frame_score(2, 1) == 0.75 and moved.visibility(1, 1) is Visibility.OCCLUDED


def test_keep_best_objects_keeps_the_highest_scores_and_breaks_ties_by_id():
    id_map = np.zeros((4, 8), np.int32)
    for oid in (1, 2, 3):
        id_map[:, oid] = oid
    objects = [MaskObject(1, "a", 0.2), MaskObject(2, "b", 0.9), MaskObject(3, "c", 0.2)]
    seq = MaskSequence.from_id_maps(id_map[None], objects, 8.0)
    assert [o.id for o in edit.keep_best_objects(seq, 2).objects] == [1, 2]
    assert edit.keep_best_objects(seq, 0) is seq
    assert edit.keep_best_objects(seq, 5) is seq
