"""Track bookkeeping of the mask extractor: mask IoU, detection-to-track matching, lost and ended tracks.

Pure numpy, no model: the extractor feeds it the masks that SAM2 propagated and the masks of fresh
detections, and it decides which object id each detection belongs to.

Rules (Grounded-SAM-2's continuous-id demo matches a key frame's detection masks against the tracked masks
of that same frame by IoU; the rest is *our* choice, written down here):

- Ids start at 1 (0 is the background of an id map), grow by one per new track and are never reused.
- Detections are first de-duplicated among themselves: sorted by score, a detection whose mask has IoU >=
  `iou_threshold` with an already kept one is dropped (GroundingDINO has no NMS and often returns the same
  object twice, e.g. once per phrase). Detections with an empty mask are dropped: nothing to track.
- Matching is one-to-one and greedy on IoU, highest first; a pair matches when IoU >= `iou_threshold`
  (inclusive). Greedy rather than Hungarian: with a handful of objects per key frame the two agree except
  in contrived ties, and greedy needs no scipy. Default threshold 0.5 (the usual "same object" IoU);
  Grounded-SAM-2's demo uses 0.8, but it also drops every track that is not re-detected, which we don't.
- A track is compared through its mask on the key frame; when that mask is empty (SAM2 lost the object),
  through its last non-empty mask, so an object that comes back after a short occlusion keeps its id.
- A track *misses* a key frame when no detection matches it; it ends after more than
  `max_missed_detections` consecutive misses (Grounded-SAM-2 ends it at the first miss, i.e. 0).
- A track is *lost* on a frame where its propagated mask is empty; it ends after more than
  `max_lost_frames` consecutive lost frames.
- An ended track never comes back; a later detection of the same object gets a new id.
- Label and score of a track are those of its highest-scoring matched detection.
- Overlapping masks are resolved per pixel to the object with the highest mask logit (as SAM2's
  non-overlapping constraint does); `fill_background` adds masks only where no object is yet.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from generation.masks.defaults import MERGE_IOU

__all__ = [
    "MatchResult",
    "Track",
    "Tracker",
    "TrackerConfig",
    "compose_id_map",
    "dedupe_detections",
    "fill_background",
    "greedy_match",
    "mask_iou",
]


def mask_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every mask in `a` (N, H, W) with every mask in `b` (M, H, W): an (N, M) float64 matrix.

    Two empty masks have IoU 0 (not NaN): an empty mask is never "the same object".
    """
    a = np.asarray(a, dtype=bool)
    b = np.asarray(b, dtype=bool)
    if a.ndim != 3 or b.ndim != 3 or a.shape[1:] != b.shape[1:]:
        raise ValueError(f"expected masks (N, H, W) and (M, H, W) of one size, got {a.shape} and {b.shape}")
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), dtype=np.float64)
    fa = a.reshape(len(a), -1).astype(np.float32)  # (N, HW)
    fb = b.reshape(len(b), -1).astype(np.float32)  # (M, HW)
    inter = (fa @ fb.T).astype(np.float64)  # (N, M); exact: counts < 2**24 per mask row
    union = fa.sum(1, dtype=np.float64)[:, None] + fb.sum(1, dtype=np.float64)[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def greedy_match(iou: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    """One-to-one (row, col) pairs with iou >= threshold, taken greedily from the highest IoU down.

    Ties are broken by the lower row, then the lower column, so the result is deterministic.
    """
    iou = np.asarray(iou, dtype=np.float64)
    if iou.ndim != 2:
        raise ValueError(f"expected a 2-D IoU matrix, got shape {iou.shape}")
    rows, cols = np.nonzero(iou >= threshold)
    order = np.lexsort((cols, rows, -iou[rows, cols]))
    used_rows: set[int] = set()
    used_cols: set[int] = set()
    pairs: list[tuple[int, int]] = []
    for k in order:
        r, c = int(rows[k]), int(cols[k])
        if r in used_rows or c in used_cols:
            continue
        used_rows.add(r)
        used_cols.add(c)
        pairs.append((r, c))
    return pairs


def dedupe_detections(masks: np.ndarray, scores: np.ndarray, iou_threshold: float) -> list[int]:
    """Indices of the detections to keep, highest score first: empty masks and near-duplicates dropped."""
    masks = np.asarray(masks, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    if len(masks) != len(scores):
        raise ValueError(f"{len(masks)} masks but {len(scores)} scores")
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    keep: list[int] = []
    for i in order:
        if not masks[i].any():
            continue
        if keep and mask_iou(masks[i][None], masks[keep]).max() >= iou_threshold:
            continue
        keep.append(i)
    return keep


def compose_id_map(object_ids: Sequence[int], logits: np.ndarray, dtype: np.dtype = np.int32) -> np.ndarray:
    """(H, W) id map from per-object mask logits (N, H, W): each pixel takes the id of its highest positive
    logit, 0 where no logit is positive."""
    logits = np.asarray(logits)
    if logits.ndim != 3 or len(object_ids) != len(logits):
        raise ValueError(f"expected {len(object_ids)} logit maps (N, H, W), got shape {logits.shape}")
    if len(object_ids) == 0:
        return np.zeros(logits.shape[1:], dtype=dtype)
    ids = np.asarray(object_ids, dtype=dtype)
    best = logits.argmax(axis=0)  # (H, W) index of the strongest object
    foreground = np.take_along_axis(logits, best[None], axis=0)[0] > 0
    return np.where(foreground, ids[best], 0).astype(dtype, copy=False)


def fill_background(id_map: np.ndarray, object_ids: Sequence[int], logits: np.ndarray) -> np.ndarray:
    """`id_map` with the objects of `logits` added only on its background (0) pixels (a new array)."""
    extra = compose_id_map(object_ids, logits, dtype=id_map.dtype)
    return np.where(id_map == 0, extra, id_map)


@dataclass(frozen=True)
class TrackerConfig:
    """How detections become tracks and when tracks end (see the module docstring)."""

    iou_threshold: float = MERGE_IOU
    max_missed_detections: int = 2
    max_lost_frames: int = 30

    def __post_init__(self) -> None:
        if not 0.0 < self.iou_threshold <= 1.0:
            raise ValueError(f"iou_threshold must be in (0, 1], got {self.iou_threshold}")
        if self.max_missed_detections < 0:
            raise ValueError(f"max_missed_detections must be >= 0, got {self.max_missed_detections}")
        if self.max_lost_frames < 0:
            raise ValueError(f"max_lost_frames must be >= 0, got {self.max_lost_frames}")


@dataclass
class Track:
    """One tracked object. `last_mask` is its last non-empty mask (kept for re-identification)."""

    id: int
    label: str
    score: float
    first_frame: int
    last_frame: int | None = None
    missed_detections: int = 0
    lost_frames: int = 0
    ended_at: int | None = None
    last_mask: np.ndarray | None = field(default=None, repr=False)

    @property
    def active(self) -> bool:
        return self.ended_at is None

    @property
    def seen(self) -> bool:
        """Whether the track ever had a non-empty mask."""
        return self.last_frame is not None


@dataclass(frozen=True)
class MatchResult:
    """Outcome of one key frame: track id -> index of its detection, for old and new tracks."""

    matched: dict[int, int]
    created: dict[int, int]
    ended: tuple[int, ...]

    @property
    def prompts(self) -> dict[int, int]:
        """Every track that got a detection on this key frame (matched or created) -> detection index."""
        return {**self.matched, **self.created}


class Tracker:
    """The set of tracks of one extraction; see the module docstring for the rules."""

    def __init__(self, config: TrackerConfig | None = None) -> None:
        self.config = config or TrackerConfig()
        self.tracks: dict[int, Track] = {}
        self._next_id = 1

    @property
    def active_ids(self) -> list[int]:
        return [tid for tid, track in self.tracks.items() if track.active]

    def match(
        self,
        frame_idx: int,
        masks: np.ndarray,
        scores: Sequence[float],
        labels: Sequence[str],
        track_masks: Mapping[int, np.ndarray],
    ) -> MatchResult:
        """Match a key frame's detections (`masks` (N, H, W), `scores`, `labels`) to the active tracks.

        `track_masks` holds the propagated mask of active tracks on this frame (missing or empty: the
        track's last non-empty mask stands in). Creates tracks for unmatched detections, counts misses.
        """
        masks = np.asarray(masks, dtype=bool)
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        if not (len(masks) == len(scores) == len(labels)):
            raise ValueError(f"got {len(masks)} masks, {len(scores)} scores and {len(labels)} labels")
        keep = dedupe_detections(masks, scores, self.config.iou_threshold)

        candidates: list[int] = []
        reference: list[np.ndarray] = []
        for tid in self.active_ids:
            mask = track_masks.get(tid)
            if mask is None or not np.any(mask):
                mask = self.tracks[tid].last_mask
            if mask is not None and np.any(mask):
                candidates.append(tid)
                reference.append(np.asarray(mask, dtype=bool))

        matched: dict[int, int] = {}
        if candidates and keep:
            iou = mask_iou(np.stack(reference), masks[keep])
            for row, col in greedy_match(iou, self.config.iou_threshold):
                matched[candidates[row]] = keep[col]

        ended: list[int] = []
        for tid in self.active_ids:
            track = self.tracks[tid]
            if tid in matched:
                det = matched[tid]
                track.missed_detections = 0
                if scores[det] > track.score:
                    track.score = float(scores[det])
                    track.label = str(labels[det])
            else:
                track.missed_detections += 1
                if track.missed_detections > self.config.max_missed_detections:
                    track.ended_at = frame_idx
                    track.last_mask = None
                    ended.append(tid)

        used = set(matched.values())
        created: dict[int, int] = {}
        for det in keep:
            if det in used:
                continue
            tid = self._next_id
            self._next_id += 1
            self.tracks[tid] = Track(
                id=tid, label=str(labels[det]), score=float(scores[det]), first_frame=frame_idx
            )
            created[tid] = det
        return MatchResult(matched=matched, created=created, ended=tuple(ended))

    def observe(self, frame_idx: int, object_ids: Sequence[int], masks: np.ndarray) -> list[int]:
        """Record the propagated masks (N, H, W) of a frame; returns the ids of tracks that ended on it.

        Active tracks absent from `object_ids` count as lost on this frame, like those with an empty mask.
        """
        masks = np.asarray(masks, dtype=bool)
        if len(object_ids) != len(masks):
            raise ValueError(f"{len(object_ids)} object ids but {len(masks)} masks")
        by_id = dict(zip(object_ids, masks, strict=True))
        ended: list[int] = []
        for tid in self.active_ids:
            track = self.tracks[tid]
            mask = by_id.get(tid)
            if mask is not None and mask.any():
                track.lost_frames = 0
                track.last_frame = frame_idx
                track.first_frame = min(track.first_frame, frame_idx)
                track.last_mask = mask.copy()
            else:
                track.lost_frames += 1
                if track.lost_frames > self.config.max_lost_frames:
                    track.ended_at = frame_idx
                    track.last_mask = None
                    ended.append(tid)
        return ended

    def note_seen(self, track_id: int, frame_idx: int) -> None:
        """Record that a track is visible on an earlier frame (found by the reverse pass)."""
        track = self.tracks[track_id]
        track.first_frame = min(track.first_frame, frame_idx)
        if track.last_frame is None:
            track.last_frame = frame_idx
