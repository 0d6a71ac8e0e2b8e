"""Mask sequences from a video and a text query: GroundingDINO boxes on key frames, SAM2 video propagation,
re-detection every N frames with ids kept by mask IoU, windows for long videos, an optional reverse pass.

    extractor = MaskExtractor.from_pretrained()            # or MaskExtractor.tiny() in tests
    seq = extractor.extract("walk.mp4", "person.", redetect_every=20, reverse=True)

    session = extractor.start("walk.mp4")                  # the SAM2-shaped session API
    session.detect("person. dog.", frame_idx=0)            # boxes on a key frame
    for result in session.propagate(redetect_every=20):    # FrameResult per frame, in order
        ...

How a frame t is processed (Grounded-SAM-2's continuous-id scheme, streamed):

1. The frame is encoded once; SAM2 tracks the live objects onto it.
2. On a key frame (the frame given to `detect`, every `redetect_every` frames after it, and every window
   start after it), the query is detected, each box is segmented by SAM2, and the `Tracker` matches the
   detection masks to the tracked masks by IoU (same frame, as Grounded-SAM-2 does): matched detections keep
   their id, the others become new objects. Every detected object is then (re-)prompted with its detection
   mask, which re-anchors SAM2 as Grounded-SAM-2's reset-and-re-add does, while SAM2 keeps the memory of the
   objects it already tracks.
3. With `reverse=True`, objects new on frame t are tracked backwards over the last `reverse_frames` frames, so
   an object is covered before its first detection.

*Our* choices (Grounded-SAM-2 and the SAM 2 paper leave them open), besides those in `tracking` and `models`:

- Windows: every `window` frames a fresh SAM2 session starts, seeded with the live objects' masks of the
  previous frame (the window's last) as mask prompts on that frame; its features are kept from the previous
  step, so seeding costs no extra encoder run. Objects whose mask is empty there are not seeded; they stay
  alive (a re-detection can revive them) until the tracker ends them. Window starts are key frames. A
  session also restarts this way as soon as more of its objects have ended than are alive (transformers'
  session cannot drop an object, and SAM2 would keep computing ended ones): with frequent re-detection this
  keeps the cost per frame flat. Frames come one at a time (`libs.media.iter_video_frames` for files) and
  results leave one at a time; SAM2's per-session history is pruned (see `models`), so memory does not
  grow with video length.
- Defaults of `extract`: re-detect every 20 frames (Grounded-SAM-2's demo step), windows of 100 frames,
  no reverse pass.
- The reverse pass reaches `reverse_frames` back (default: the window, else 100), never past the frames it
  holds; results are held back that many frames so the pass can still add to them, and the raw frames it
  needs are the only frames kept. Reverse-pass masks fill only background pixels: an object already tracked
  forward keeps its pixels. The pass for an object stops once it has been lost longer than `max_lost_frames`.
- A detection whose SAM2 mask is empty is tracked from its box rectangle: GroundingDINO found something
  there with confidence above the threshold, and a coarse mask beats losing it.
- Frames before the first key frame have no objects (unless the reverse pass reaches them). Ids start at 1.
- Key-frame detections run every registered query (each call to `detect` registers one, from its frame on).
- A session propagates once (a video given as an iterator cannot be replayed); start another for a second run.
- Array or iterator input carries no frame rate: `fps` defaults to 30.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from generation.masks.defaults import BOX_THRESHOLD, REDETECT_EVERY, TEXT_THRESHOLD, WINDOW
from generation.masks.models import (
    DEFAULT_GROUNDING_DINO,
    DEFAULT_SAM2,
    Detections,
    Detector,
    EncodedFrame,
    PropagatedMasks,
    Propagator,
    load_models,
    normalize_query,
    tiny_models,
)
from generation.masks.tracking import Tracker, TrackerConfig, compose_id_map, fill_background
from libs.media import MaskObject, MaskSequence, MaskSequenceBuilder, iter_video_frames, probe_video

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_FPS", "ExtractionSession", "FrameResult", "MaskExtractor", "VideoInput", "load_extractor"]

DEFAULT_FPS = 30.0
DEFAULT_REVERSE_FRAMES = 100
VideoInput = str | os.PathLike[str] | bytes | np.ndarray | Iterable[np.ndarray]
ProgressCallback = Callable[[int, int | None], Any]


@dataclass(frozen=True)
class FrameResult:
    """Objects of one frame: `id_map` (H, W) int32 (0 = background, one owner per pixel), the ids present in
    it (ascending) and their SAM2 presence scores in [0, 1]."""

    frame_idx: int
    id_map: np.ndarray = field(repr=False)
    object_ids: tuple[int, ...]
    scores: tuple[float, ...]

    @property
    def masks(self) -> np.ndarray:
        """(N, H, W) bool masks of `object_ids` (non-overlapping)."""
        ids = np.asarray(self.object_ids, dtype=self.id_map.dtype)
        return self.id_map[None] == ids[:, None, None]


@dataclass
class _Pending:
    frame_idx: int
    id_map: np.ndarray
    scores: dict[int, float]

    def present(self, object_ids: Iterable[int]) -> set[int]:
        """Those of `object_ids` that own at least one pixel of the id map."""
        return {oid for oid in object_ids if (self.id_map == oid).any()}

    def result(self) -> FrameResult:
        ids = tuple(sorted(self.present(self.scores)))
        return FrameResult(self.frame_idx, self.id_map, ids, tuple(self.scores[i] for i in ids))


@dataclass(frozen=True)
class _Prompt:
    query: str
    box_threshold: float
    text_threshold: float
    first_frame: int


class _FrameSource:
    """Frames of a video file (path or bytes), an array, a sequence or a one-shot iterator, read in order and
    only once (plus random access to a few early frames for `detect`, buffered for iterators)."""

    def __init__(self, video: VideoInput, fps: float | None) -> None:
        self._encoded: str | bytes | None = None  # a video file path or the bytes of a video file
        self._frames: Sequence[np.ndarray] | None = None
        self._iterator: Iterator[np.ndarray] | None = None
        self._buffer: deque[np.ndarray] = deque()  # frames read ahead from the iterator, from index `_read`
        self._read = 0
        self.num_frames: int | None = None
        if isinstance(video, str | os.PathLike | bytes | bytearray | memoryview):
            if isinstance(video, str | os.PathLike):
                self._encoded = os.fspath(video)
                if not Path(self._encoded).exists():
                    raise FileNotFoundError(f"no such video file {self._encoded!r}")
            else:
                self._encoded = bytes(video)
            info = probe_video(self._encoded)
            self.num_frames, self.width, self.height = info.num_frames, info.width, info.height
            self.fps = float(fps) if fps is not None else info.fps
            return
        if isinstance(video, np.ndarray):
            if video.ndim != 4:
                raise ValueError(f"a video array must be (T, H, W, 3) uint8, got shape {video.shape}")
            self._frames = video
        elif isinstance(video, Sequence):
            self._frames = video
        elif isinstance(video, Iterable):
            self._iterator = iter(video)
        else:
            raise ValueError(
                f"video must be a path, a (T, H, W, 3) array or an iterable of frames, got {type(video).__name__}"
            )
        self.fps = float(fps) if fps is not None else DEFAULT_FPS
        if self._frames is not None:
            self.num_frames = len(self._frames)
            if self.num_frames == 0:
                raise ValueError("the video has no frames")
            first = self._check(self._frames[0], 0)
        else:
            try:
                first = self._check(next(self._iterator), 0)
            except StopIteration:
                raise ValueError("the video has no frames") from None
            self._buffer.append(first)
        self.height, self.width = first.shape[:2]

    def _check(self, frame: Any, index: int) -> np.ndarray:
        frame = np.asarray(frame)
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(
                f"frame {index} must be an (H, W, 3) uint8 RGB array, got {frame.dtype} {frame.shape}"
            )
        if index > 0 and frame.shape[:2] != (self.height, self.width):
            raise ValueError(
                f"frame {index} is {frame.shape[1]}x{frame.shape[0]}, frame 0 is {self.width}x{self.height}"
            )
        return frame

    def frame(self, index: int) -> np.ndarray:
        """Frame `index` (before iteration starts); ValueError past the end."""
        if index < 0 or (self.num_frames is not None and index >= self.num_frames):
            raise ValueError(f"frame_idx {index} out of range [0, {self.num_frames})")
        if self._frames is not None:
            return self._check(self._frames[index], index)
        if self._encoded is not None:
            for frame in iter_video_frames(self._encoded, start=index, max_frames=1):
                return self._check(frame, index)
            raise ValueError(f"frame_idx {index} is past the end of the video")
        while self._read + len(self._buffer) <= index:
            try:
                self._buffer.append(self._check(next(self._iterator), self._read + len(self._buffer)))
            except StopIteration:
                raise ValueError(f"frame_idx {index} is past the end of the video") from None
        return self._buffer[index - self._read]

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        if self._frames is not None:
            for index in range(len(self._frames)):
                yield index, self._check(self._frames[index], index)
        elif self._encoded is not None:
            for index, frame in enumerate(iter_video_frames(self._encoded)):
                yield index, self._check(frame, index)
        else:
            index = 0
            while self._buffer:
                yield index, self._buffer.popleft()
                index += 1
            for frame in self._iterator:
                yield index, self._check(frame, index)
                index += 1


@dataclass
class ExtractionSession:
    """One extraction over one video (SAM2's session shape): `detect` on key frames, then `propagate` once."""

    extractor: MaskExtractor
    source: _FrameSource
    tracker: Tracker
    prompts: list[_Prompt] = field(default_factory=list)
    detections: dict[tuple[int, int], tuple[Detections, np.ndarray]] = field(default_factory=dict, repr=False)
    started: bool = False

    @property
    def width(self) -> int:
        return self.source.width

    @property
    def height(self) -> int:
        return self.source.height

    @property
    def fps(self) -> float:
        return self.source.fps

    @property
    def num_frames(self) -> int | None:
        """Frames in the video when known up front (files, arrays), else None."""
        return self.source.num_frames

    def detect(
        self,
        query: str | Sequence[str],
        frame_idx: int = 0,
        *,
        box_threshold: float = BOX_THRESHOLD,
        text_threshold: float = TEXT_THRESHOLD,
    ) -> Detections:
        """Detect `query` on frame `frame_idx` and register it for the key frames of `propagate`."""
        if self.started:
            raise RuntimeError("detect() must be called before propagate()")
        query = normalize_query(query)
        _check_threshold(box_threshold, "box_threshold")
        _check_threshold(text_threshold, "text_threshold")
        if isinstance(frame_idx, bool) or not isinstance(frame_idx, int | np.integer) or frame_idx < 0:
            raise ValueError(f"frame_idx must be a non-negative integer, got {frame_idx!r}")
        frame_idx = int(frame_idx)
        self.prompts.append(_Prompt(query, float(box_threshold), float(text_threshold), frame_idx))
        frame = self.source.frame(frame_idx)
        found = self._run_detector(len(self.prompts) - 1, frame, self.extractor.propagator.encode(frame))
        self.detections[(frame_idx, len(self.prompts) - 1)] = found
        return found[0]

    def objects(self) -> list[MaskObject]:
        """The objects that appeared in some frame so far: id, label (query phrase) and best detection score."""
        return [
            MaskObject(t.id, t.label, min(max(t.score, 0.0), 1.0))
            for t in self.tracker.tracks.values()
            if t.seen
        ]

    def _run_detector(
        self, prompt_idx: int, frame: np.ndarray, encoded: EncodedFrame
    ) -> tuple[Detections, np.ndarray]:
        prompt = self.prompts[prompt_idx]
        found = self.extractor.detector.detect(
            frame, prompt.query, box_threshold=prompt.box_threshold, text_threshold=prompt.text_threshold
        )
        masks = self.extractor.propagator.segment_boxes(encoded, found.boxes)
        for i in np.nonzero(~masks.any(axis=(1, 2)))[0]:
            x0, y0, x1, y1 = found.boxes[i]
            masks[i, int(np.floor(y0)) : int(np.ceil(y1)), int(np.floor(x0)) : int(np.ceil(x1))] = True
        return found, masks

    def _key_frame_detections(
        self, frame_idx: int, frame: np.ndarray, encoded: EncodedFrame
    ) -> tuple[Detections, np.ndarray]:
        parts, masks = [], []
        for i, prompt in enumerate(self.prompts):
            if frame_idx < prompt.first_frame:
                continue
            found = self.detections.pop((frame_idx, i), None)
            if found is None:
                found = self._run_detector(i, frame, encoded)
            parts.append(found[0])
            masks.append(found[1])
        if not parts:
            return Detections.empty(), np.zeros((0, self.height, self.width), dtype=bool)
        return Detections.concatenate(parts), np.concatenate(masks)

    def propagate(
        self,
        *,
        redetect_every: int | None = None,
        window: int | None = None,
        reverse: bool = False,
        reverse_frames: int | None = None,
    ) -> Iterator[FrameResult]:
        """Yield a `FrameResult` for every frame of the video, in order (see the module docstring).

        redetect_every: detect again every N frames after the first key frame (None: only on window starts).
        window: frames per SAM2 session (None: one session for the whole video).
        reverse: track objects backwards from the frame they were first detected on.
        reverse_frames: how far back the reverse pass reaches (default: `window`, else 100).
        """
        _check_positive(redetect_every, "redetect_every")
        _check_positive(window, "window")
        _check_positive(reverse_frames, "reverse_frames")
        if not self.prompts:
            raise RuntimeError("call detect() with a query before propagate()")
        if self.started:
            raise RuntimeError("a session propagates once; start a new session to run again")
        self.started = True
        horizon = (reverse_frames or window or DEFAULT_REVERSE_FRAMES) if reverse else 0
        return self._propagate(redetect_every, window, horizon)

    def _is_key_frame(self, t: int, first_key: int, redetect_every: int | None, window: int | None) -> bool:
        if any(t == frame for frame, _ in self.detections):
            return True
        if t <= first_key:
            return False
        if redetect_every is not None and (t - first_key) % redetect_every == 0:
            return True
        return window is not None and t % window == 0

    def _propagate(
        self, redetect_every: int | None, window: int | None, horizon: int
    ) -> Iterator[FrameResult]:
        prop, tracker = self.extractor.propagator, self.tracker
        height, width = self.height, self.width
        first_key = min(frame for frame, _ in self.detections)
        state: Any = None
        state_ids: set[int] = set()
        previous: PropagatedMasks | None = None
        previous_encoded: EncodedFrame | None = None
        pending: deque[_Pending] = deque()
        raw: deque[tuple[int, np.ndarray]] = deque(maxlen=horizon or 1)

        for t, frame in self.source:
            encoded = prop.encode(frame)

            # 1. window start (or a session mostly made of ended objects): a fresh SAM2 session seeded with
            # the live objects' masks of the previous frame
            active = set(tracker.active_ids)
            window_start = window is not None and t > 0 and t % window == 0
            if state is not None and (window_start or len(state_ids - active) > len(state_ids & active)):
                state, state_ids = None, set()
                seeds = {}
                if previous is not None:
                    seeds = {
                        oid: m
                        for oid, m in zip(previous.object_ids, previous.masks, strict=True)
                        if oid in active and m.any()
                    }
                if seeds and previous_encoded is not None:
                    state, state_ids = prop.new_state(height, width), set(seeds)
                    prop.add_masks(state, t - 1, seeds)
                    prop.track(state, t - 1, previous_encoded)

            # 2. propagate the live objects onto frame t
            out = PropagatedMasks.empty(height, width)
            if state is not None:
                out = prop.track(state, t, encoded).select(tracker.active_ids)

            # 3. key frame: detect, match by mask IoU, (re-)prompt every detected object with its mask
            created: dict[int, np.ndarray] = {}
            if self._is_key_frame(t, first_key, redetect_every, window):
                found, masks = self._key_frame_detections(t, frame, encoded)
                match = tracker.match(
                    t, masks, found.scores, found.labels, dict(zip(out.object_ids, out.masks, strict=True))
                )
                prompts = {tid: masks[j] for tid, j in match.prompts.items()}
                created = {tid: masks[j] for tid, j in match.created.items()}
                if match.created or match.matched or match.ended:
                    logger.debug(
                        "frame %d: %d detections, matched %s, new %s, ended %s",
                        t,
                        len(found),
                        sorted(match.matched),
                        sorted(match.created),
                        list(match.ended),
                    )
                if prompts:
                    if state is None:
                        state, state_ids = prop.new_state(height, width), set()
                    prop.add_masks(state, t, prompts)
                    state_ids |= prompts.keys()
                    out = prop.track(state, t, encoded)
                out = out.select(tracker.active_ids)

            # 4. bookkeeping: lost and ended tracks; drop a session whose objects all ended
            tracker.observe(t, out.object_ids, out.masks)
            out = out.select(tracker.active_ids)
            if state is not None and not state_ids & set(tracker.active_ids):
                state, state_ids = None, set()
            previous, previous_encoded = out, encoded

            id_map = compose_id_map(out.object_ids, out.logits)
            pending.append(_Pending(t, id_map, dict(zip(out.object_ids, out.scores.tolist(), strict=True))))

            # 5. reverse pass for the objects new on this frame
            if horizon and created:
                self._reverse_pass(t, encoded, created, raw, pending, horizon)

            if horizon:
                raw.append((t, frame))
            while pending and pending[0].frame_idx <= t - horizon:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()

    def _reverse_pass(
        self,
        t: int,
        encoded: EncodedFrame,
        created: dict[int, np.ndarray],
        raw: deque[tuple[int, np.ndarray]],
        pending: deque[_Pending],
        horizon: int,
    ) -> None:
        prop, tracker = self.extractor.propagator, self.tracker
        state = prop.new_state(self.height, self.width)
        prop.add_masks(state, t, created)
        prop.track(state, t, encoded)
        going = {tid: 0 for tid in created}  # track id -> consecutive lost frames going backwards
        first_pending = pending[0].frame_idx
        for u, frame in reversed(raw):
            if u < t - horizon or u < first_pending or not going:
                break
            out = prop.track(state, u, prop.encode(frame), reverse=True).select(list(going))
            slot = pending[u - first_pending]
            slot.id_map = fill_background(slot.id_map, out.object_ids, out.logits)
            present = slot.present(out.object_ids)
            for tid, mask, score in zip(out.object_ids, out.masks, out.scores.tolist(), strict=True):
                if tid in present:
                    slot.scores[tid] = score
                    tracker.note_seen(tid, u)
                going[tid] = 0 if mask.any() else going[tid] + 1
                if going[tid] > tracker.config.max_lost_frames:
                    del going[tid]


class MaskExtractor:
    """Text query + video -> `MaskSequence`, over a pluggable `Detector` and `Propagator`."""

    def __init__(
        self, detector: Detector, propagator: Propagator, *, tracker_config: TrackerConfig | None = None
    ) -> None:
        self.detector = detector
        self.propagator = propagator
        self.tracker_config = tracker_config or TrackerConfig()

    @classmethod
    def from_pretrained(
        cls,
        grounding_dino: str | os.PathLike[str] = DEFAULT_GROUNDING_DINO,
        sam2: str | os.PathLike[str] = DEFAULT_SAM2,
        *,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
        tracker_config: TrackerConfig | None = None,
    ) -> MaskExtractor:
        """Real GroundingDINO + SAM2 from hub ids or local directories (bf16 on CUDA, float32 on CPU)."""
        models = load_models(grounding_dino, sam2, device=device, dtype=dtype)
        return cls(models.detector, models.propagator, tracker_config=tracker_config)

    @classmethod
    def tiny(
        cls,
        seed: int = 0,
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype | None = None,
        tracker_config: TrackerConfig | None = None,
    ) -> MaskExtractor:
        """Random tiny models (tests, benchmarks): deterministic for a seed, masks of no meaning."""
        models = tiny_models(seed, device=device, dtype=dtype)
        return cls(models.detector, models.propagator, tracker_config=tracker_config)

    def start(self, video: VideoInput, *, fps: float | None = None) -> ExtractionSession:
        """A session over `video`: a video file (path or bytes), a (T, H, W, 3) uint8 RGB array, or an iterable
        of (H, W, 3) uint8 RGB frames."""
        return ExtractionSession(self, _FrameSource(video, fps), Tracker(self.tracker_config))

    def extract(
        self,
        video: VideoInput,
        query: str | Sequence[str],
        *,
        frame_idx: int = 0,
        box_threshold: float = BOX_THRESHOLD,
        text_threshold: float = TEXT_THRESHOLD,
        redetect_every: int | None = REDETECT_EVERY,
        window: int | None = WINDOW,
        reverse: bool = False,
        reverse_frames: int | None = None,
        progress: ProgressCallback | Any | bool | None = None,
        fps: float | None = None,
        on_frame: Callable[[int, int | None, FrameResult], None] | None = None,
    ) -> MaskSequence:
        """The mask sequence of the objects that `query` names in `video` (see the module docstring).

        progress: None; True (a tqdm bar); an object with `update(n)` (e.g. a tqdm bar); or a callable
        `progress(frames_done, total_frames_or_None)`, called after every frame.
        on_frame: `on_frame(frames_done, total_frames_or_None, result)` after every frame, with the frame's
        `FrameResult` (a service counts the objects seen); it may raise to stop the extraction.
        """
        query = normalize_query(query)
        _check_threshold(box_threshold, "box_threshold")
        _check_threshold(text_threshold, "text_threshold")
        for value, name in (
            (redetect_every, "redetect_every"),
            (window, "window"),
            (reverse_frames, "reverse_frames"),
        ):
            _check_positive(value, name)
        session = self.start(video, fps=fps)
        session.detect(query, frame_idx, box_threshold=box_threshold, text_threshold=text_threshold)
        builder = MaskSequenceBuilder(session.width, session.height, session.fps)
        report, close = _progress_reporter(progress, session.num_frames)
        try:
            for done, result in enumerate(
                session.propagate(
                    redetect_every=redetect_every,
                    window=window,
                    reverse=reverse,
                    reverse_frames=reverse_frames,
                ),
                start=1,
            ):
                builder.add_frame(
                    result.id_map, scores=dict(zip(result.object_ids, result.scores, strict=True))
                )
                report(done)
                if on_frame is not None:
                    on_frame(done, session.num_frames, result)
        finally:
            close()
        return builder.build(session.objects())


def load_extractor(
    *,
    tiny: bool = False,
    grounding: str | os.PathLike[str] = DEFAULT_GROUNDING_DINO,
    sam2: str | os.PathLike[str] = DEFAULT_SAM2,
    device: str | None = None,
    dtype: str = "auto",
    threads: int | None = None,
) -> MaskExtractor:
    """The extractor that command-line flags and service settings name: tiny random models (on `device` or
    the CPU), or `from_pretrained` hub ids / local directories. `dtype` by name ("auto": bfloat16 on CUDA,
    float32 on CPU); `threads`: torch's CPU threads for the whole process (None or 0: torch's default)."""
    if threads:
        torch.set_num_threads(threads)
    torch_dtype = None if dtype == "auto" else getattr(torch, dtype)
    if tiny:
        return MaskExtractor.tiny(device=device or "cpu", dtype=torch_dtype)
    return MaskExtractor.from_pretrained(grounding, sam2, device=device, dtype=torch_dtype)


def _check_threshold(value: float, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")


def _check_positive(value: int | None, name: str) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name} must be a positive integer or None, got {value!r}")


def _progress_reporter(progress: Any, total: int | None) -> tuple[Callable[[int], None], Callable[[], None]]:
    """(report(frames_done), close()) for the accepted forms of `progress`."""
    if progress is None or progress is False:
        return (lambda done: None), (lambda: None)
    if progress is True:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, unit="frame", desc="masks")
        return (lambda done: bar.update(1)), bar.close
    if hasattr(progress, "update"):
        return (lambda done: progress.update(1)), (lambda: None)
    if callable(progress):
        return (lambda done: progress(done, total)), (lambda: None)
    raise ValueError(
        f"progress must be None, a bool, a callable or an object with update(), got {type(progress).__name__}"
    )
