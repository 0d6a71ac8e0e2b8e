"""Tests of the extractor's mechanics: ids across re-detections, windows, reverse pass, frame coverage,
streaming memory, the session API and validation.

Most tests plug a scripted detector (known boxes per frame) and a static propagator (an object's mask stays
where it was prompted) into the real orchestration, so ids and coverage are exact; the rest run the tiny
random GroundingDINO and SAM2, whose masks mean nothing, and check shapes, coverage and determinism.
"""

import weakref
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pytest
import torch

from generation.masks import (
    Detections,
    EncodedFrame,
    FrameResult,
    MaskExtractor,
    PropagatedMasks,
    TrackerConfig,
    tiny_models,
)
from libs.media import MaskSequence, write_video

H, W = 24, 32
LEFT = (0, 0, 10, 10)  # x0, y0, x1, y1
LEFT_MOVED = (1, 0, 11, 10)  # IoU with LEFT 0.82
FAR = (20, 12, 30, 22)
BIG = (0, 0, 32, 24)  # the whole frame


def frames(n: int) -> np.ndarray:
    """n frames whose pixel (0, 0, 0) holds the frame index, so fakes know which frame they see."""
    video = np.zeros((n, H, W, 3), dtype=np.uint8)
    video[:, 0, 0, 0] = np.arange(n)
    return video


def rect(box) -> np.ndarray:
    x0, y0, x1, y1 = box
    mask = np.zeros((H, W), dtype=bool)
    mask[y0:y1, x0:x1] = True
    return mask


class ScriptedDetector:
    """Returns `script(frame_idx)` -> [(box, score, label), ...] and records the frames it was asked about."""

    def __init__(self, script: Callable[[int], list]) -> None:
        self.script = script
        self.calls: list[tuple[int, str]] = []

    def detect(self, image, query, *, box_threshold, text_threshold):
        t = int(image[0, 0, 0])
        self.calls.append((t, query))
        found = self.script(t)
        return Detections(
            np.array([b for b, _, _ in found], np.float32).reshape(-1, 4),
            [s for _, s, _ in found],
            [lb for *_, lb in found],
        )


@dataclass
class FakeState:
    masks: dict[int, np.ndarray] = field(default_factory=dict)
    tracked: list[tuple[int, bool]] = field(default_factory=list)


class StaticPropagator:
    """Each object keeps the mask it was last prompted with; `hidden(object_id, frame_idx)` blanks it."""

    def __init__(
        self, hidden: Callable[[int, int], bool] = lambda oid, t: False, empty_boxes: bool = False
    ) -> None:
        self.hidden = hidden
        self.empty_boxes = empty_boxes
        self.log: list[tuple] = []

    def encode(self, frame):
        return EncodedFrame(frame.shape[0], frame.shape[1], {"t": int(frame[0, 0, 0]), "frame": frame})

    def segment_boxes(self, frame, boxes):
        if self.empty_boxes:
            return np.zeros((len(boxes), H, W), bool)
        return np.stack([rect(b.astype(int)) for b in boxes]) if len(boxes) else np.zeros((0, H, W), bool)

    def new_state(self, height, width):
        self.log.append(("new_state",))
        return FakeState()

    def add_masks(self, state, frame_idx, masks):
        self.log.append(("add", frame_idx, tuple(sorted(masks))))
        state.masks.update({oid: np.asarray(m, bool).copy() for oid, m in masks.items()})

    def track(self, state, frame_idx, frame, *, reverse=False):
        assert frame.data["t"] == frame_idx, "a frame was tracked under the wrong index"
        if state.tracked:
            step = -1 if reverse else 1
            assert frame_idx in (state.tracked[-1][0], state.tracked[-1][0] + step), "frames out of order"
        state.tracked.append((frame_idx, reverse))
        self.log.append(("track", frame_idx, reverse))
        ids = tuple(sorted(state.masks))
        logits = np.full((len(ids), H, W), -1.0, np.float32)
        for i, oid in enumerate(ids):
            if not self.hidden(oid, frame_idx):
                logits[i][state.masks[oid]] = 2.0 - 0.01 * oid  # older objects win overlaps
        return PropagatedMasks(ids, logits, np.full(len(ids), 0.75, np.float32))


def fake_extractor(script, *, hidden=lambda oid, t: False, config=None, empty_boxes=False):
    detector = ScriptedDetector(script)
    propagator = StaticPropagator(hidden, empty_boxes=empty_boxes)
    return MaskExtractor(detector, propagator, tracker_config=config), detector, propagator


def run(extractor, video, *, frame_idx=0, **kwargs) -> list[FrameResult]:
    session = extractor.start(video)
    session.detect("dog.", frame_idx)
    return list(session.propagate(**kwargs))


def ids_per_frame(results: list[FrameResult]) -> list[tuple[int, ...]]:
    return [r.object_ids for r in results]


# -- ids across re-detections ------------------------------------------------------------------------------


def test_object_keeps_its_id_through_redetections():
    extractor, detector, _ = fake_extractor(lambda t: [(LEFT if t < 10 else LEFT_MOVED, 0.9, "dog")])
    results = run(extractor, frames(20), redetect_every=5)
    assert [t for t, _ in detector.calls] == [0, 5, 10, 15]  # detect(), then the key frames
    assert ids_per_frame(results) == [(1,)] * 20
    assert (results[12].id_map == np.where(rect(LEFT_MOVED), 1, 0)).all()  # re-prompted with the new mask


def test_new_object_on_a_key_frame_gets_the_next_id():
    extractor, _, _ = fake_extractor(lambda t: [(LEFT, 0.9, "dog")] + ([(FAR, 0.8, "dog")] if t >= 8 else []))
    results = run(extractor, frames(16), redetect_every=4)
    assert ids_per_frame(results) == [(1,)] * 8 + [(1, 2)] * 8


def test_detections_are_matched_by_mask_iou_threshold():
    script = lambda t: [(LEFT if t < 5 else LEFT_MOVED, 0.9, "dog")]  # noqa: E731
    strict, _, _ = fake_extractor(script, config=TrackerConfig(iou_threshold=0.9, max_missed_detections=0))
    results = run(strict, frames(10), redetect_every=5)
    # IoU 0.82 < 0.9: a new object, and the old one, not re-detected, ends at once
    assert ids_per_frame(results) == [(1,)] * 5 + [(2,)] * 5
    lenient, _, _ = fake_extractor(script, config=TrackerConfig(iou_threshold=0.8, max_missed_detections=0))
    assert ids_per_frame(run(lenient, frames(10), redetect_every=5)) == [(1,)] * 10


def test_undetected_track_survives_max_missed_detections_then_ends():
    extractor, _, _ = fake_extractor(
        lambda t: [(LEFT, 0.9, "dog")] if t == 0 else [], config=TrackerConfig(max_missed_detections=2)
    )
    results = run(extractor, frames(14), redetect_every=4)
    # misses on key frames 4 and 8 are tolerated; the third miss (frame 12) ends the track
    assert ids_per_frame(results) == [(1,)] * 12 + [()] * 2
    assert extractor.detector.calls[-1][0] == 12


def test_lost_track_ends_and_a_later_detection_gets_a_new_id():
    extractor, _, _ = fake_extractor(
        lambda t: [(LEFT, 0.9, "dog")] if t in (0, 12) else [],
        hidden=lambda oid, t: oid == 1 and t >= 3,
        config=TrackerConfig(max_lost_frames=2, max_missed_detections=5),
    )
    session = extractor.start(frames(16))
    session.detect("dog.")
    results = list(session.propagate(redetect_every=6))
    assert ids_per_frame(results) == [(1,)] * 3 + [()] * 9 + [(2,)] * 4
    assert session.tracker.tracks[1].ended_at == 5  # lost on 3, 4, 5: more than 2 frames


def test_briefly_lost_object_is_reidentified_by_its_last_mask():
    extractor, _, _ = fake_extractor(
        lambda t: [(LEFT, 0.9, "dog")],
        hidden=lambda oid, t: 2 <= t < 4,  # SAM2 loses it for two frames
        config=TrackerConfig(max_lost_frames=5),
    )
    results = run(extractor, frames(8), redetect_every=4)
    assert ids_per_frame(results) == [(1,), (1,), (), (), (1,), (1,), (1,), (1,)]


def test_empty_sam_mask_falls_back_to_the_box():
    extractor, _, _ = fake_extractor(lambda t: [(LEFT, 0.9, "dog")], empty_boxes=True)
    results = run(extractor, frames(3))
    assert (results[0].id_map == np.where(rect(LEFT), 1, 0)).all()


def test_overlapping_objects_share_no_pixel():
    extractor, _, _ = fake_extractor(lambda t: [(LEFT, 0.9, "dog"), (BIG, 0.8, "dog")])
    result = run(extractor, frames(2))[0]
    assert result.object_ids == (1, 2)
    masks = result.masks
    assert masks.shape == (2, H, W) and not (masks[0] & masks[1]).any()
    assert (masks[0] | masks[1]).all()


# -- windows ----------------------------------------------------------------------------------------------


def test_windows_start_fresh_sessions_seeded_on_the_previous_frame():
    extractor, detector, propagator = fake_extractor(
        lambda t: [(LEFT, 0.9, "dog")] + ([(FAR, 0.8, "dog")] if t >= 4 else [])
    )
    results = run(extractor, frames(13), window=4)
    assert ids_per_frame(results) == [(1,)] * 4 + [(1, 2)] * 9
    assert [t for t, _ in detector.calls] == [0, 4, 8, 12]  # window starts are key frames
    log = propagator.log
    for start in (4, 8, 12):
        i = log.index(("new_state",), log.index(("track", start - 1, False)))
        assert log[i + 1] == ("add", start - 1, (1,) if start == 4 else (1, 2))
        assert log[i + 2] == ("track", start - 1, False)
        assert log[i + 3] == ("track", start, False)
    assert log.count(("new_state",)) == 4


def test_lost_objects_are_not_seeded_into_the_next_window():
    extractor, _, propagator = fake_extractor(
        lambda t: [(LEFT, 0.9, "dog"), (FAR, 0.9, "dog")] if t == 0 else [],
        hidden=lambda oid, t: oid == 2 and t >= 2,
        config=TrackerConfig(max_missed_detections=9, max_lost_frames=9),
    )
    run(extractor, frames(6), window=4)
    assert ("add", 3, (1,)) in propagator.log


def test_session_restarts_once_most_of_its_objects_ended():
    mid = (12, 0, 18, 6)
    extractor, _, propagator = fake_extractor(
        lambda t: [(LEFT, 0.9, "dog")] + ([(FAR, 0.8, "dog"), (mid, 0.7, "dog")] if t < 2 else []),
        config=TrackerConfig(max_missed_detections=0),
    )
    results = run(extractor, frames(5), redetect_every=2)
    assert ids_per_frame(results) == [(1, 2, 3)] * 2 + [(1,)] * 3
    log = propagator.log
    assert log.count(("new_state",)) == 2
    i = log.index(("new_state",), 1)
    assert log[i - 1] == ("track", 2, False) and log[i + 1 : i + 4] == [
        ("add", 2, (1,)),
        ("track", 2, False),
        ("track", 3, False),
    ]


# -- reverse pass -----------------------------------------------------------------------------------------


def test_reverse_pass_covers_frames_before_the_first_detection():
    extractor, _, propagator = fake_extractor(lambda t: [(LEFT, 0.9, "dog")] if t >= 6 else [])
    results = run(extractor, frames(10), frame_idx=6, reverse=True, reverse_frames=4)
    assert ids_per_frame(results) == [()] * 2 + [(1,)] * 8
    assert [e[1] for e in propagator.log if e[0] == "track" and e[2]] == [5, 4, 3, 2]
    without = run(fake_extractor(lambda t: [(LEFT, 0.9, "dog")])[0], frames(10), frame_idx=6)
    assert ids_per_frame(without) == [()] * 6 + [(1,)] * 4


def test_reverse_pass_for_objects_new_on_later_key_frames_keeps_forward_pixels():
    extractor, _, _ = fake_extractor(lambda t: [(LEFT, 0.9, "dog")] + ([(BIG, 0.8, "dog")] if t >= 6 else []))
    session = extractor.start(frames(9))
    session.detect("dog.")
    results = list(session.propagate(redetect_every=3, reverse=True, reverse_frames=2))
    assert ids_per_frame(results) == [(1,)] * 4 + [(1, 2)] * 5
    for r in results[4:6]:  # reverse-filled: background only
        assert (r.id_map[rect(LEFT)] == 1).all() and (r.id_map[~rect(LEFT)] == 2).all()
    assert session.tracker.tracks[2].first_frame == 4
    assert results[4].scores == (0.75, 0.75)


def test_reverse_pass_stops_once_the_object_is_lost():
    extractor, _, propagator = fake_extractor(
        lambda t: [(LEFT, 0.9, "dog")] if t >= 8 else [],
        hidden=lambda oid, t: t < 6,
        config=TrackerConfig(max_lost_frames=1),
    )
    results = run(extractor, frames(10), frame_idx=8, reverse=True, reverse_frames=8)
    assert ids_per_frame(results) == [()] * 6 + [(1,)] * 4
    assert [e[1] for e in propagator.log if e[0] == "track" and e[2]] == [7, 6, 5, 4]


@pytest.mark.parametrize("reverse", [False, True])
def test_every_frame_is_emitted_once_in_order(reverse):
    extractor, _, _ = fake_extractor(lambda t: [(LEFT, 0.9, "dog")] if t >= 3 else [])
    results = run(
        extractor, frames(23), frame_idx=3, redetect_every=4, window=5, reverse=reverse, reverse_frames=3
    )
    assert [r.frame_idx for r in results] == list(range(23))
    assert all(r.id_map.shape == (H, W) and r.id_map.dtype == np.int32 for r in results)


# -- streaming memory -------------------------------------------------------------------------------------


class FrameCounter:
    """A frame generator that tracks how many of its frames are still alive."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.alive = 0
        self.peak = 0

    def _gone(self) -> None:
        self.alive -= 1

    def __iter__(self):
        for t in range(self.n):
            frame = np.zeros((H, W, 3), dtype=np.uint8)
            frame[0, 0, 0] = t
            weakref.finalize(frame, self._gone)
            self.alive += 1
            self.peak = max(self.peak, self.alive)
            yield frame


@pytest.mark.parametrize(
    ("reverse", "bound"), [(False, 2), (True, 5 + 1)]
)  # current + previous; + reverse_frames
def test_only_a_bounded_number_of_frames_is_held(reverse, bound):
    extractor, _, _ = fake_extractor(
        lambda t: [(LEFT, 0.9, "dog")] + ([(FAR, 0.9, "dog")] if t == 40 else [])
    )
    counter = FrameCounter(60)
    results = run(extractor, counter, redetect_every=10, window=8, reverse=reverse, reverse_frames=5)
    assert len(results) == 60
    assert counter.peak <= bound


def test_detect_on_a_later_frame_of_an_iterator_replays_the_frames_read():
    extractor, _, _ = fake_extractor(lambda t: [(LEFT, 0.9, "dog")])
    session = extractor.start(iter(list(frames(8))))
    found = session.detect("dog.", frame_idx=3)
    assert len(found) == 1 and found.labels == ("dog",)
    assert [r.frame_idx for r in session.propagate()] == list(range(8))


def test_queries_registered_later_are_detected_from_their_frame_on():
    script = {"dog.": [(LEFT, 0.9, "dog")], "cat.": [(FAR, 0.8, "cat")]}
    calls = []

    class TwoQueries(ScriptedDetector):
        def detect(self, image, query, *, box_threshold, text_threshold):
            calls.append((int(image[0, 0, 0]), query))
            return super().detect(image, query, box_threshold=box_threshold, text_threshold=text_threshold)

    detector = TwoQueries(lambda t: [])
    detector.script = lambda t: script[calls[-1][1]]
    extractor = MaskExtractor(detector, StaticPropagator())
    session = extractor.start(frames(8))
    session.detect("dog", 0)
    session.detect("Cat", 4)
    results = list(session.propagate(redetect_every=2))
    assert ids_per_frame(results) == [(1,)] * 4 + [(1, 2)] * 4
    assert [c for c in calls if c[1] == "cat."] == [(4, "cat."), (6, "cat.")]
    assert [(o.id, o.label) for o in session.objects()] == [(1, "dog"), (2, "cat")]


# -- session API and validation ---------------------------------------------------------------------------


def test_session_api_order_is_enforced():
    extractor, _, _ = fake_extractor(lambda t: [(LEFT, 0.9, "dog")])
    session = extractor.start(frames(4))
    with pytest.raises(RuntimeError, match="detect"):
        session.propagate()
    session.detect("dog")
    list(session.propagate())
    with pytest.raises(RuntimeError, match="once"):
        session.propagate()
    with pytest.raises(RuntimeError, match="before propagate"):
        session.detect("dog")


def never_read():
    raise AssertionError("the video was read before the arguments were checked")
    yield


@pytest.mark.parametrize("query", ["", "   ", " . "])
def test_extract_rejects_empty_queries_before_reading_the_video(query):
    extractor, _, _ = fake_extractor(lambda t: [])
    with pytest.raises(ValueError, match="query"):
        extractor.extract(never_read(), query)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"redetect_every": 0},
        {"window": -1},
        {"reverse_frames": 0},
        {"box_threshold": 1.5},
        {"text_threshold": -0.1},
        {"window": 2.5},
    ],
)
def test_extract_rejects_bad_arguments(kwargs):
    extractor, _, _ = fake_extractor(lambda t: [])
    with pytest.raises(ValueError):
        extractor.extract(never_read(), "dog", **kwargs)


@pytest.mark.parametrize(
    ("video", "match"),
    [
        (np.zeros((2, H, W), np.uint8), "T, H, W, 3"),
        (np.zeros((2, H, W, 3), np.float32), "uint8"),
        ([np.zeros((H, W, 3), np.uint8), np.zeros((H + 1, W, 3), np.uint8)], "frame 1"),
        ([], "no frames"),
    ],
)
def test_bad_videos_are_rejected(video, match):
    extractor, _, _ = fake_extractor(lambda t: [(LEFT, 0.9, "dog")])
    with pytest.raises(ValueError, match=match):
        extractor.extract(video, "dog")


def test_detect_frame_out_of_range():
    extractor, _, _ = fake_extractor(lambda t: [])
    with pytest.raises(ValueError, match="out of range"):
        extractor.start(frames(4)).detect("dog", 4)


def test_extract_returns_a_mask_sequence_and_reports_progress():
    extractor, _, _ = fake_extractor(lambda t: [(LEFT, 0.9, "dog")] + ([(FAR, 0.7, "cat")] if t >= 4 else []))
    calls = []
    seq = extractor.extract(
        frames(6),
        "dog. cat.",
        redetect_every=2,
        progress=lambda done, total: calls.append((done, total)),
        fps=12,
    )
    assert isinstance(seq, MaskSequence)
    assert (seq.num_frames, seq.width, seq.height, seq.fps) == (6, W, H, 12.0)
    assert [(o.id, o.label) for o in seq.objects] == [(1, "dog"), (2, "cat")]
    assert seq.objects[0].score == pytest.approx(0.9)
    assert [seq.frame_object_ids(t) for t in range(6)] == [(1,)] * 4 + [(1, 2)] * 2
    assert seq.frame_score(5, 2) == pytest.approx(0.75)
    assert (seq.mask(0, 1) == rect(LEFT)).all()
    assert calls == [(i, 6) for i in range(1, 7)]

    class Bar:
        n = 0

        def update(self, k):
            self.n += k

    bar = Bar()
    extractor.extract(frames(5), "dog", progress=bar)
    assert bar.n == 5


# -- real tiny models -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny():
    return MaskExtractor.tiny(seed=0)


@pytest.fixture(scope="module")
def video_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("masks") / "clip.mp4"
    rng = np.random.default_rng(0)
    clip = np.repeat(rng.integers(0, 256, (1, 32, 48, 3), dtype=np.uint8), 12, axis=0)
    clip[:, :, :, 0] = np.arange(12)[:, None, None] * 20  # the scene changes over time
    write_video(path, clip, fps=8)
    return path


def test_tiny_models_extract_from_a_video_file(tiny, video_file):
    seq = tiny.extract(video_file, "A dog. ball", redetect_every=4, window=5, box_threshold=0.3)
    assert (seq.num_frames, seq.width, seq.height, seq.fps) == (12, 48, 32, 8.0)
    ids = {oid for t in range(12) for oid in seq.frame_object_ids(t)}
    assert ids and ids <= set(seq.object_ids)
    assert {o.label for o in seq.objects} <= {"a dog", "ball"}
    assert seq.frame_object_ids(0)  # the detections of the first key frame are tracked

    again = MaskExtractor.tiny(seed=0).extract(
        video_file.read_bytes(), "a dog. ball.", redetect_every=4, window=5, box_threshold=0.3
    )
    assert again == seq  # deterministic for a seed; a file's bytes read like the file


def test_from_pretrained_loads_local_directories(tmp_path):
    models = tiny_models(seed=3)
    detector, propagator = models.detector, models.propagator
    detector.model.save_pretrained(tmp_path / "gdino")
    detector.tokenizer.save_pretrained(tmp_path / "gdino")
    detector.image_processor.save_pretrained(tmp_path / "gdino")
    propagator.model.save_pretrained(tmp_path / "sam2")
    loaded = MaskExtractor.from_pretrained(tmp_path / "gdino", tmp_path / "sam2", device="cpu")
    assert loaded.propagator.dtype == torch.float32
    video = np.random.default_rng(1).integers(0, 256, (3, H, W, 3), dtype=np.uint8)
    kwargs = {"box_threshold": 0.3, "redetect_every": 2}
    expected = MaskExtractor(detector, propagator).extract(video, "dog", **kwargs)
    assert loaded.extract(video, "dog", **kwargs) == expected


def test_tiny_sam2_with_a_scripted_detector(tiny):
    class Recording:
        """The real tiny SAM2, recording which frames it tracks backwards."""

        def __init__(self, inner):
            self.inner = inner
            self.reverse_frames = []

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def track(self, state, frame_idx, frame, *, reverse=False):
            if reverse:
                self.reverse_frames.append(frame_idx)
            return self.inner.track(state, frame_idx, frame, reverse=reverse)

    propagator = Recording(tiny.propagator)
    detector = ScriptedDetector(lambda t: [(LEFT, 0.9, "dog")] if t >= 5 else [])
    extractor = MaskExtractor(detector, propagator)
    session = extractor.start(frames(14))
    session.detect("dog.", 5)
    results = list(session.propagate(redetect_every=3, window=4, reverse=True, reverse_frames=3))
    assert [r.frame_idx for r in results] == list(range(14))
    assert propagator.reverse_frames[:3] == [4, 3, 2]
    assert ids_per_frame(results)[:2] == [(), ()]  # beyond the reverse pass's reach
    assert 1 in results[5].object_ids  # the prompted object is on its key frame
    known = {o.id for o in session.objects()}
    assert all(set(r.object_ids) <= known for r in results)
    assert all(r.masks.shape == (len(r.object_ids), H, W) for r in results)
    assert all(0 <= s <= 1 for r in results for s in r.scores)
