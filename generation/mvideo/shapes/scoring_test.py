import numpy as np

from generation.mvideo.shapes.scoring import original_place_iou, pair_union, score_video
from generation.mvideo.shapes.segment import foreground
from generation.mvideo.shapes.world import ShapesWorld


def _as_float(video: np.ndarray) -> np.ndarray:
    return video.astype(np.float32) / 255


def _score(video: np.ndarray, sample) -> dict:
    return score_video(video, foreground(video), sample.id_maps, [o.color for o in sample.objects])


def test_the_sample_itself_scores_perfectly():
    world = ShapesWorld()
    for seed in range(6):
        sample = world.sample(seed, "eval")
        scores = _score(_as_float(sample.video), sample)
        assert scores["iou_frame"] == 1.0 and scores["color_in_mask"] == 1.0
        assert scores["iou_pair_union"] <= scores["iou_frame"]  # the pair's union is bigger than the frame's
        assert scores["bg_noise"] < 0.5  # only the uint8 rounding of gradient backgrounds
        assert scores["_present"] and all(scores["_present"])


def test_doubled_frame_pairs_score_higher_against_the_pair_union_than_per_frame():
    sample = ShapesWorld(motion="fast", min_objects=1, max_objects=1).sample(0, "eval")
    union = pair_union(sample.id_maps > 0)
    doubled = np.where(union[..., None], np.array(sample.objects[0].rgb), sample.background)
    scores = _score(_as_float(np.rint(doubled)), sample)
    assert scores["iou_pair_union"] == 1.0
    assert scores["iou_frame"] < 0.8  # a fast object drawn at both positions of its pair
    # pair_union itself: frames 2i and 2i + 1 share one mask, the union of both
    masks = sample.id_maps > 0
    np.testing.assert_array_equal(union[2], masks[2] | masks[3])
    np.testing.assert_array_equal(union[3], union[2])
    odd = pair_union(masks[:3])
    np.testing.assert_array_equal(odd[2], masks[2])  # the last frame of an odd count keeps its own mask


def test_presence_counts_frames_where_the_colour_covers_a_quarter_of_the_object():
    sample = ShapesWorld(min_objects=1, max_objects=1).sample(4, "eval")
    video = sample.video.copy()
    half = sample.num_frames // 2
    video[half:][sample.id_maps[half:] > 0] = np.rint(sample.background[half:][sample.id_maps[half:] > 0])
    scores = _score(_as_float(video), sample)
    assert scores["_present"] == [1.0] * half + [0.0] * (sample.num_frames - half)


def test_original_place_iou_is_zero_when_following_the_shift_and_high_when_not():
    sample = ShapesWorld().sample(1, "eval")
    original = sample.id_maps > 0
    shifted = np.roll(original, 9, axis=2)
    assert original_place_iou(shifted, original, shifted) == 0.0
    assert original_place_iou(original, original, shifted) > 0.5  # drew the objects where they used to be
    assert original_place_iou(original, original, original) == 0.0  # nothing moved: no original place left
