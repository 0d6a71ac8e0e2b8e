"""Unit tests of the pure-numpy tracking rules (no models)."""

import numpy as np
import pytest

from generation.masks.tracking import (
    Tracker,
    TrackerConfig,
    compose_id_map,
    dedupe_detections,
    fill_background,
    greedy_match,
    mask_iou,
)

H = W = 20


def box(x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    mask = np.zeros((H, W), dtype=bool)
    mask[y0:y1, x0:x1] = True
    return mask


EMPTY = np.zeros((H, W), dtype=bool)
A = box(0, 0, 10, 10)  # 100 px
A_SHIFTED = box(1, 0, 11, 10)  # IoU with A: 90 / 110 = 0.818
B = box(12, 12, 20, 20)  # disjoint from A


# -- mask_iou ---------------------------------------------------------------------------------------------


def test_mask_iou_values():
    half = box(5, 0, 15, 10)  # overlaps A on 50 px, union 150
    iou = mask_iou(np.stack([A, A]), np.stack([A, half, B, EMPTY]))
    np.testing.assert_allclose(iou, [[1.0, 1 / 3, 0.0, 0.0]] * 2)


def test_mask_iou_of_empty_masks_is_zero_not_nan():
    iou = mask_iou(EMPTY[None], EMPTY[None])
    assert iou.tolist() == [[0.0]]


def test_mask_iou_shapes_and_errors():
    assert mask_iou(np.zeros((0, H, W), bool), A[None]).shape == (0, 1)
    with pytest.raises(ValueError, match="one size"):
        mask_iou(A[None], np.zeros((1, H, W + 1), bool))


# -- matching ---------------------------------------------------------------------------------------------


def test_greedy_match_takes_highest_iou_first_and_is_one_to_one():
    iou = np.array(
        [
            [0.6, 0.9],  # track 0 prefers det 1
            [0.0, 0.8],  # track 1 also wants det 1, loses it
        ]
    )
    assert greedy_match(iou, 0.5) == [(0, 1)]
    iou[1, 0] = 0.7
    assert sorted(greedy_match(iou, 0.5)) == [(0, 1), (1, 0)]


def test_greedy_match_threshold_is_inclusive():
    assert greedy_match(np.array([[0.5]]), 0.5) == [(0, 0)]
    assert greedy_match(np.array([[0.4999]]), 0.5) == []


def test_greedy_match_breaks_ties_deterministically():
    assert greedy_match(np.ones((2, 2)), 0.5) == [(0, 0), (1, 1)]


def test_dedupe_keeps_best_score_and_drops_empty():
    masks = np.stack([A, A_SHIFTED, B, EMPTY])
    assert dedupe_detections(masks, [0.5, 0.9, 0.7, 0.99], iou_threshold=0.5) == [1, 2]
    assert dedupe_detections(masks, [0.5, 0.9, 0.7, 0.99], iou_threshold=0.9) == [1, 2, 0]


# -- id maps ----------------------------------------------------------------------------------------------


def test_compose_id_map_resolves_overlap_by_logit():
    logits = np.full((2, H, W), -1.0, dtype=np.float32)
    logits[0][A] = 2.0
    logits[1][A_SHIFTED] = 1.0
    id_map = compose_id_map([7, 3], logits)
    assert id_map.dtype == np.int32
    assert (id_map[A] == 7).all()  # 7 wins the overlap and its own pixels
    assert (id_map[A_SHIFTED & ~A] == 3).all()
    assert (id_map[~(A | A_SHIFTED)] == 0).all()


def test_compose_id_map_empty_and_errors():
    assert compose_id_map([], np.zeros((0, H, W))).shape == (H, W)
    with pytest.raises(ValueError):
        compose_id_map([1, 2], np.zeros((1, H, W)))


def test_fill_background_never_overrides():
    id_map = compose_id_map([1], np.where(A, 1.0, -1.0)[None])
    filled = fill_background(id_map, [2], np.where(A_SHIFTED, 5.0, -1.0)[None])
    assert (filled[A] == 1).all()
    assert (filled[A_SHIFTED & ~A] == 2).all()
    assert (id_map[A_SHIFTED & ~A] == 0).all()  # input untouched


# -- Tracker ----------------------------------------------------------------------------------------------


def detections(*masks: np.ndarray, scores=None, labels=None):
    n = len(masks)
    return (
        np.stack(masks) if n else np.zeros((0, H, W), bool),
        scores if scores is not None else [0.9] * n,
        labels if labels is not None else ["dog"] * n,
    )


def test_new_tracks_get_increasing_ids_from_one():
    tracker = Tracker()
    result = tracker.match(0, *detections(A, B, scores=[0.6, 0.8]), track_masks={})
    assert result.created == {1: 1, 2: 0}  # higher score first
    assert result.matched == {} and result.ended == ()
    assert tracker.active_ids == [1, 2]
    assert tracker.tracks[1].first_frame == 0 and tracker.tracks[1].score == pytest.approx(0.8)


def test_detection_overlapping_a_track_keeps_its_id():
    tracker = Tracker(TrackerConfig(iou_threshold=0.5))
    tracker.match(0, *detections(A), track_masks={})
    result = tracker.match(5, *detections(A_SHIFTED, B), track_masks={1: A})
    assert result.matched == {1: 0}
    assert result.created == {2: 1}
    assert result.prompts == {1: 0, 2: 1}


def test_iou_below_threshold_makes_a_new_object():
    tracker = Tracker(TrackerConfig(iou_threshold=0.9))  # A vs A_SHIFTED is 0.818
    tracker.match(0, *detections(A), track_masks={})
    result = tracker.match(5, *detections(A_SHIFTED), track_masks={1: A})
    assert result.matched == {} and result.created == {2: 0}
    assert tracker.tracks[1].missed_detections == 1


def test_duplicate_detections_make_one_track():
    tracker = Tracker()
    result = tracker.match(0, *detections(A, A_SHIFTED, scores=[0.7, 0.9]), track_masks={})
    assert result.created == {1: 1}


def test_each_track_takes_at_most_one_detection():
    tracker = Tracker(TrackerConfig(iou_threshold=0.5))
    tracker.match(0, *detections(A), track_masks={})
    result = tracker.match(1, *detections(A, A_SHIFTED, scores=[0.9, 0.8]), track_masks={1: A})
    assert result.matched == {1: 0} and result.created == {}  # A_SHIFTED was a duplicate of A


def test_label_and_score_follow_the_best_detection():
    tracker = Tracker()
    tracker.match(0, *detections(A, scores=[0.5], labels=["a dog"]), track_masks={})
    tracker.match(1, *detections(A, scores=[0.9], labels=["puppy"]), track_masks={1: A})
    tracker.match(2, *detections(A, scores=[0.7], labels=["cat"]), track_masks={1: A})
    track = tracker.tracks[1]
    assert (track.label, track.score) == ("puppy", pytest.approx(0.9))


def test_track_ends_after_too_many_missed_detections():
    tracker = Tracker(TrackerConfig(max_missed_detections=2))
    tracker.match(0, *detections(A), track_masks={})
    for frame in (10, 20):
        assert tracker.match(frame, *detections(), track_masks={1: A}).ended == ()
    assert tracker.match(30, *detections(), track_masks={1: A}).ended == (1,)
    assert tracker.active_ids == [] and tracker.tracks[1].ended_at == 30


def test_a_match_resets_the_missed_count():
    tracker = Tracker(TrackerConfig(max_missed_detections=1))
    tracker.match(0, *detections(A), track_masks={})
    tracker.match(10, *detections(), track_masks={1: A})
    tracker.match(20, *detections(A), track_masks={1: A})
    tracker.match(30, *detections(), track_masks={1: A})
    assert tracker.active_ids == [1]


def test_ended_track_is_not_revived_and_ids_are_not_reused():
    tracker = Tracker(TrackerConfig(max_missed_detections=0))
    tracker.match(0, *detections(A), track_masks={})
    tracker.match(1, *detections(), track_masks={1: A})
    result = tracker.match(2, *detections(A), track_masks={})
    assert result.created == {2: 0}
    assert not tracker.tracks[1].active


def test_observe_counts_lost_frames_and_ends_tracks():
    tracker = Tracker(TrackerConfig(max_lost_frames=2))
    tracker.match(0, *detections(A, B), track_masks={})
    assert tracker.observe(0, [1, 2], np.stack([A, B])) == []
    assert tracker.observe(1, [1, 2], np.stack([EMPTY, B])) == []
    assert tracker.observe(2, [2], B[None]) == []  # absent counts as lost too
    assert tracker.observe(3, [1, 2], np.stack([EMPTY, B])) == [1]
    assert tracker.tracks[1].ended_at == 3 and tracker.tracks[1].last_frame == 0
    assert tracker.active_ids == [2] and tracker.tracks[2].last_frame == 3


def test_visible_frame_resets_lost_count():
    tracker = Tracker(TrackerConfig(max_lost_frames=1))
    tracker.match(0, *detections(A), track_masks={})
    for frame in range(1, 10):
        mask = A if frame % 2 else EMPTY
        assert tracker.observe(frame, [1], mask[None]) == []


def test_lost_track_is_matched_through_its_last_mask():
    tracker = Tracker()
    tracker.match(0, *detections(A), track_masks={})
    tracker.observe(0, [1], A[None])
    tracker.observe(1, [1], EMPTY[None])  # SAM2 lost it
    result = tracker.match(2, *detections(A_SHIFTED), track_masks={1: EMPTY})
    assert result.matched == {1: 0} and result.created == {}


def test_track_never_seen_has_no_reference_mask():
    tracker = Tracker()
    tracker.match(0, *detections(A), track_masks={})  # created, but no observe yet
    result = tracker.match(1, *detections(A), track_masks={})
    assert result.created == {2: 0} and tracker.tracks[1].missed_detections == 1


def test_note_seen_moves_first_frame_back():
    tracker = Tracker()
    tracker.match(10, *detections(A), track_masks={})
    tracker.note_seen(1, 7)
    assert tracker.tracks[1].first_frame == 7 and tracker.tracks[1].seen


@pytest.mark.parametrize(
    "kwargs",
    [{"iou_threshold": 0.0}, {"iou_threshold": 1.5}, {"max_missed_detections": -1}, {"max_lost_frames": -1}],
)
def test_config_validation(kwargs):
    with pytest.raises(ValueError):
        TrackerConfig(**kwargs)


def test_match_argument_errors():
    with pytest.raises(ValueError, match="masks"):
        Tracker().match(0, A[None], [0.5, 0.6], ["a"], track_masks={})
    with pytest.raises(ValueError):
        Tracker().observe(0, [1, 2], A[None])
