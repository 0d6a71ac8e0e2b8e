"""Tests of the model wrappers on tiny random models: shapes, thresholds, determinism, memory hygiene."""

import numpy as np
import pytest
import torch

from generation.masks.models import (
    Detections,
    Detector,
    GroundingDinoDetector,
    Propagator,
    Sam2VideoPropagator,
    normalize_query,
    query_phrases,
    resolve_device,
    tiny_models,
    tiny_tokenizer,
)
from generation.masks.tracking import mask_iou

H, W = 48, 64


@pytest.fixture(scope="module")
def models():
    return tiny_models(seed=0)


@pytest.fixture(scope="module")
def image():
    return np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8)


def square(x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    mask = np.zeros((H, W), dtype=bool)
    mask[y0:y1, x0:x1] = True
    return mask


# -- queries ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("dog", "dog."),
        ("A Dog", "a dog."),
        ("  a   red car. DOG ", "a red car. dog."),
        ("person.car.", "person. car."),
        ("cat.. . dog", "cat. dog."),
        (["A cat", "dog "], "a cat. dog."),
    ],
)
def test_normalize_query(query, expected):
    assert normalize_query(query) == expected
    assert normalize_query(expected) == expected  # idempotent


@pytest.mark.parametrize("query", ["", "   ", "\n\t", []])
def test_empty_query_is_rejected_with_a_clear_message(query):
    with pytest.raises(ValueError, match="query is empty"):
        normalize_query(query)


@pytest.mark.parametrize("query", [".", " . .. "])
def test_query_without_words_is_rejected(query):
    with pytest.raises(ValueError, match="no phrase"):
        normalize_query(query)


def test_query_of_wrong_type_is_rejected():
    with pytest.raises(ValueError, match="str"):
        normalize_query(3)


def test_query_phrases():
    assert query_phrases("A red car. dog.") == ["a red car", "dog"]


# -- tokenizer, devices -----------------------------------------------------------------------------------


def test_tiny_tokenizer_knows_its_words():
    tokenizer = tiny_tokenizer()
    tokens = tokenizer.convert_ids_to_tokens(tokenizer("a red car. dog.").input_ids)
    assert tokens == ["[CLS]", "a", "red", "car", ".", "dog", ".", "[SEP]"]


def test_resolve_device_defaults():
    assert resolve_device("cpu") == (torch.device("cpu"), torch.float32)
    assert resolve_device("cpu", torch.bfloat16) == (torch.device("cpu"), torch.bfloat16)
    if torch.cuda.is_available():
        assert resolve_device() == (torch.device("cuda"), torch.bfloat16)


# -- GroundingDINO ----------------------------------------------------------------------------------------


def test_tiny_models_implement_the_protocols(models):
    assert isinstance(models.detector, GroundingDinoDetector) and isinstance(models.detector, Detector)
    assert isinstance(models.propagator, Sam2VideoPropagator) and isinstance(models.propagator, Propagator)


def test_detector_returns_boxes_in_the_image_with_query_phrase_labels(models, image):
    found = models.detector.detect(image, "a red car. dog", box_threshold=0.3, text_threshold=0.2)
    assert isinstance(found, Detections) and len(found) > 0
    assert found.boxes.shape == (len(found), 4) and found.boxes.dtype == np.float32
    assert (found.boxes[:, [0, 2]] >= 0).all() and (found.boxes[:, [0, 2]] <= W).all()
    assert (found.boxes[:, [1, 3]] >= 0).all() and (found.boxes[:, [1, 3]] <= H).all()
    assert (found.boxes[:, 2] >= found.boxes[:, 0]).all() and (found.boxes[:, 3] >= found.boxes[:, 1]).all()
    assert (found.scores > 0.3).all()
    assert set(found.labels) <= {"a red car", "dog"}


def test_detector_thresholds_filter(models, image):
    low = models.detector.detect(image, "dog.", box_threshold=0.0, text_threshold=0.0)
    assert len(low) == models.detector.model.config.num_queries
    assert len(models.detector.detect(image, "dog.", box_threshold=1.0, text_threshold=0.0)) == 0
    assert len(models.detector.detect(image, "dog.", box_threshold=0.0, text_threshold=1.0)) == 0


def test_detector_is_deterministic_for_a_seed(models, image):
    first = models.detector.detect(image, "dog.", box_threshold=0.0, text_threshold=0.0)
    again = tiny_models(seed=0).detector.detect(image, "dog.", box_threshold=0.0, text_threshold=0.0)
    other = tiny_models(seed=1).detector.detect(image, "dog.", box_threshold=0.0, text_threshold=0.0)
    np.testing.assert_array_equal(first.boxes, again.boxes)
    np.testing.assert_array_equal(first.scores, again.scores)
    assert not np.array_equal(first.boxes, other.boxes)


def test_detector_rejects_queries_longer_than_its_text_encoder(models, image):
    with pytest.raises(ValueError, match="tokens long"):
        models.detector.detect(image, " ".join(["dog"] * 40), box_threshold=0.3, text_threshold=0.2)


def test_detections_container():
    empty = Detections.empty()
    assert len(empty) == 0 and empty.boxes.shape == (0, 4)
    both = Detections.concatenate([Detections([[0, 0, 1, 1]], [0.5], ["a"]), empty])
    assert len(both) == 1 and both.labels == ("a",)
    with pytest.raises(ValueError, match="boxes"):
        Detections([[0, 0, 1, 1]], [0.5, 0.6], ["a"])


# -- SAM2 -------------------------------------------------------------------------------------------------


def test_segment_boxes_gives_one_frame_size_mask_per_box(models, image):
    prop = models.propagator
    frame = prop.encode(image)
    assert (frame.height, frame.width) == (H, W)
    masks = prop.segment_boxes(frame, np.array([[0, 0, 20, 20], [30, 10, 60, 40]], np.float32))
    assert masks.shape == (2, H, W) and masks.dtype == bool
    assert prop.segment_boxes(frame, np.zeros((0, 4))).shape == (0, H, W)


def test_track_returns_every_object_of_the_state(models, image):
    prop = models.propagator
    state = prop.new_state(H, W)
    frame = prop.encode(image)
    assert prop.track(state, 0, frame).object_ids == ()  # nothing to track yet
    prop.add_masks(state, 0, {5: square(0, 0, 20, 20), 9: square(30, 10, 60, 40)})
    out = prop.track(state, 0, frame)
    assert out.object_ids == (5, 9)
    assert out.logits.shape == (2, H, W) and out.logits.dtype == np.float32
    assert out.scores.shape == (2,) and ((out.scores >= 0) & (out.scores <= 1)).all()
    # a mask prompt is its own output on its frame (SAM2 treats it as ground truth), up to resampling
    assert (
        mask_iou(out.masks, np.stack([square(0, 0, 20, 20), square(30, 10, 60, 40)])).diagonal().min() > 0.95
    )
    out = prop.track(state, 1, prop.encode(image[::-1].copy()))
    assert out.object_ids == (5, 9) and out.masks.shape == (2, H, W)


def test_objects_can_join_a_running_state(models, image):
    prop = models.propagator
    state = prop.new_state(H, W)
    prop.add_masks(state, 0, {1: square(0, 0, 20, 20)})
    prop.track(state, 0, prop.encode(image))
    frame = prop.encode(image)
    prop.track(state, 1, frame)
    prop.add_masks(state, 1, {2: square(30, 10, 60, 40)})
    assert prop.track(state, 1, frame).object_ids == (1, 2)
    assert prop.track(state, 2, prop.encode(image)).object_ids == (1, 2)


def test_reverse_tracking(models, image):
    prop = models.propagator
    state = prop.new_state(H, W)
    prop.add_masks(state, 5, {1: square(0, 0, 20, 20)})
    prop.track(state, 5, prop.encode(image))
    for t in (4, 3, 2):
        assert prop.track(state, t, prop.encode(image), reverse=True).object_ids == (1,)


def test_session_memory_stays_bounded(models, image):
    prop = models.propagator
    state = prop.new_state(H, W)
    prop.add_masks(state, 0, {1: square(0, 0, 20, 20), 2: square(30, 10, 60, 40)})
    frame = prop.encode(image)
    for t in range(3 * prop.history):
        prop.track(state, t, frame)
    assert list(state.processed_frames) == [t]
    for obj_idx, outputs in state.output_dict_per_obj.items():
        assert len(outputs["non_cond_frame_outputs"]) <= prop.history + 1
        assert list(outputs["cond_frame_outputs"]) == [0]
        assert len(state.frames_tracked_per_obj[obj_idx]) <= prop.history + 1


def test_propagation_is_deterministic_for_a_seed(image):
    def run(seed):
        prop = tiny_models(seed).propagator
        state = prop.new_state(H, W)
        prop.add_masks(state, 0, {1: square(0, 0, 20, 20)})
        prop.track(state, 0, prop.encode(image))
        return prop.track(state, 1, prop.encode(image)).logits

    np.testing.assert_array_equal(run(0), run(0))
    assert not np.array_equal(run(0), run(1))


def test_tiny_models_leave_the_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    tiny_models(seed=0)
    assert torch.equal(torch.rand(3), expected)
