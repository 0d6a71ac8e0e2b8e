"""A world's impressions as model batches: `GTRDataset.from_world(world, "train", neighbours)` then
`dataset.batch(indices) -> GTRBatch`.

Every feature of an impression is computed from what was known *before* it:
- the segment (real time): the last `segment_seconds` seconds of the broadcast up to the second the user
  arrived, one token per second per modality (oldest first);
- the behaviour sequence (a daily batch, as SIM's long sequences are built offline): the user's last `history`
  impressions before the impression's *feature day*, most recent first, each summarised by the streamer, the
  mean frame token of what was on screen, and what the user did (watch time, like, gift);
- dense statistics (a daily batch too): the user's and the streamer's impressions and gifts before that day.
The feature day is the impression's own day in training and the first day of its split in validation and test
(features frozen when the evaluation period starts, as a model deployed then would see them). Why not up to the
second: a running gift count or history that includes the user's earlier gifts of the evaluation period scores
every later row above the gift itself, which drags the per-user AUCs (UAUC, GAUC) below 0.5 for a reason that
has nothing to do with ranking streams (measured: UAUC 0.26 for a running gift count alone).
- neighbours: rows of the expansion snapshot's neighbour arrays (built from the graph period's gifts only, the days before the training rows).
Labels are the impression's gift, like and comment (`batches.TASKS`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from recsys.data.batches import METAPATH_SOURCE, METAPATHS, GTRBatch
from recsys.data.world import SECONDS_PER_DAY, World

DEFAULT_SEGMENT_SECONDS = 10
DEFAULT_HISTORY = 50


def _group_starts(sorted_keys: np.ndarray) -> np.ndarray:
    """For keys sorted into contiguous groups: the position where each element's group starts."""
    first = np.r_[0, np.flatnonzero(sorted_keys[1:] != sorted_keys[:-1]) + 1]
    return np.repeat(first, np.diff(np.r_[first, len(sorted_keys)]))


def _feature_day(world: World) -> np.ndarray:
    """The day whose batch features each impression sees: its own day in training; for validation and test,
    the first day of its split (features frozen when the evaluation period starts, as a model deployed then
    would see them)."""
    day = world.impressions["timestamp"] // SECONDS_PER_DAY
    feature_day = day.copy()
    for split in ("validation", "test"):
        days = world.config.split_days()[split]
        feature_day[(day >= days.start) & (day < days.stop)] = days.start
    return feature_day


def _before(keys: np.ndarray, day: np.ndarray, feature_day: np.ndarray, gifts: np.ndarray):
    """(impressions, gifts) of each row's key on the days before its feature day."""
    days = int(day.max()) + 1
    cells = keys * days + day  # one cell per (key, day)
    size = (int(keys.max()) + 1) * days
    counts = []
    for weights in (None, gifts):
        per_day = np.bincount(cells, weights=weights, minlength=size).reshape(-1, days)
        before = np.cumsum(per_day, axis=1) - per_day  # [keys, days]: on the days before each day
        counts.append(before[keys, feature_day])
    return counts[0], counts[1]


def dense_statistics(impressions: np.ndarray, gifts: np.ndarray) -> np.ndarray:
    """`USER_DENSE` / `AUTHOR_DENSE` from counts: log impressions, log gifts, smoothed gift rate (x100)."""
    rate = (gifts + 0.02) / (impressions + 1.0) * 100.0
    return np.stack([np.log1p(impressions), np.log1p(gifts), rate], axis=-1).astype(np.float32)


def cold_start_dense() -> np.ndarray:
    """The dense statistics of a viewer or streamer never seen: zero impressions, zero gifts (the cold start)."""
    return dense_statistics(np.zeros(1), np.zeros(1))[0]


@dataclass
class WorldFeatures:
    """Per-impression features of a whole world, computed once and shared by its three splits."""

    world: World
    segment_seconds: int
    history: int
    stream_row: np.ndarray  # [N] row of the impression's broadcast in world.streams
    user_dense: np.ndarray  # [N, FU]
    author_dense: np.ndarray  # [N, FA]
    seen_content: np.ndarray  # [N, D] mean frame token of the impression's segment
    actions: np.ndarray  # [N, 3]
    by_user: np.ndarray  # [N] impression rows sorted by (user, time)
    user_start: np.ndarray  # [N] position in by_user where the row's user starts
    history_end: np.ndarray  # [N] position in by_user of the user's first impression of the row's day

    @classmethod
    def build(
        cls, world: World, segment_seconds: int = DEFAULT_SEGMENT_SECONDS, history: int = DEFAULT_HISTORY
    ):
        limit = world.config.max_segment_seconds
        if not 1 <= segment_seconds <= limit:
            raise ValueError(f"segment_seconds must be in [1, {limit}] for this world, got {segment_seconds}")
        imp = world.impressions
        users, authors, gifts = imp["user"], imp["author"], imp["gifted"]
        day, feature_day = imp["timestamp"] // SECONDS_PER_DAY, _feature_day(world)
        user_dense = dense_statistics(*_before(users, day, feature_day, gifts))
        author_dense = dense_statistics(*_before(authors, day, feature_day, gifts))
        stream_row = world.stream_rows(imp["stream_id"])
        seen = _segments(world.streams["content"], stream_row, imp["second"], segment_seconds, modality=0)
        actions = np.stack([np.log1p(imp["watch_seconds"]), imp["liked"], gifts], axis=-1).astype(np.float32)
        by_user = np.argsort(users, kind="stable")  # impressions are in time order, so each user's are too
        user_start = np.empty(len(users), dtype=np.int64)
        user_start[by_user] = _group_starts(users[by_user])
        # The user's first impression on or after the feature day (by_user is sorted by user, then time).
        days = world.config.days + 1
        user_days = users[by_user] * days + imp["timestamp"][by_user] // SECONDS_PER_DAY
        history_end = np.searchsorted(user_days, users * days + feature_day, side="left")
        return cls(
            world, segment_seconds, history, stream_row, user_dense, author_dense, seen.mean(axis=1),
            actions, by_user, user_start, history_end,
        )  # fmt: skip


def _segments(content: np.ndarray, rows: np.ndarray, seconds: np.ndarray, length: int, modality=None):
    """content[rows, seconds-length+1 .. seconds] -> [N, length, (3,) D], oldest second first."""
    offsets = np.arange(-length + 1, 1)
    window = seconds[:, None] + offsets[None, :]  # [N, length]
    picked = content[rows[:, None], window]  # [N, length, 3, D]
    return picked if modality is None else picked[:, :, modality]


class GTRDataset:
    """Impressions of one split (`world.config.split_days()`), batched on demand by row indices."""

    def __init__(self, features: WorldFeatures, rows: np.ndarray, neighbours: dict[str, np.ndarray] | None):
        self.features = features
        self.rows = rows
        self.neighbours = neighbours
        imp = features.world.impressions
        self.labels = np.stack([imp["gifted"], imp["liked"], imp["commented"]], axis=-1)[rows]
        self.groups = imp["user"][rows]

    @classmethod
    def from_world(
        cls,
        world: World | WorldFeatures,
        split: str,
        neighbours: dict[str, np.ndarray] | None = None,
        segment_seconds: int = DEFAULT_SEGMENT_SECONDS,
        history: int = DEFAULT_HISTORY,
    ) -> GTRDataset:
        features = (
            world
            if isinstance(world, WorldFeatures)
            else WorldFeatures.build(world, segment_seconds, history)
        )
        days = features.world.config.split_days()[split]
        impression_days = features.world.impressions["timestamp"] // 86_400
        rows = np.flatnonzero((impression_days >= days.start) & (impression_days < days.stop))
        return cls(features, rows, neighbours)

    def __len__(self) -> int:
        return len(self.rows)

    def batch(self, indices: np.ndarray) -> GTRBatch:
        f, rows = self.features, self.rows[np.asarray(indices, dtype=np.int64)]
        imp = f.world.impressions
        segments = _segments(
            f.world.streams["content"], f.stream_row[rows], imp["second"][rows], f.segment_seconds
        )
        # Behaviour sequence: the user's previous impressions, most recent first; padding where none.
        back = f.history_end[rows, None] - np.arange(1, f.history + 1)[None, :]  # [B, H]
        valid = back >= f.user_start[rows, None]
        past = f.by_user[np.where(valid, back, 0)]  # [B, H]
        history_authors = np.where(valid, imp["author"][past], 0)
        users, authors = imp["user"][rows], imp["author"][rows]
        neighbours = {}
        for name in METAPATHS:
            table = None if self.neighbours is None else self.neighbours.get(name)
            keys = users if METAPATH_SOURCE[name] == "user" else authors
            neighbours[name] = torch.from_numpy(
                table[keys] if table is not None else np.zeros((len(rows), 1), dtype=np.int64)
            )
        return GTRBatch(
            users=torch.from_numpy(users),
            authors=torch.from_numpy(authors),
            user_dense=torch.from_numpy(f.user_dense[rows]),
            author_dense=torch.from_numpy(f.author_dense[rows]),
            visual=torch.from_numpy(np.ascontiguousarray(segments[:, :, 0])),
            speech=torch.from_numpy(np.ascontiguousarray(segments[:, :, 1])),
            comments=torch.from_numpy(np.ascontiguousarray(segments[:, :, 2])),
            history_authors=torch.from_numpy(history_authors),
            history_content=torch.from_numpy(f.seen_content[past] * valid[:, :, None]),
            history_actions=torch.from_numpy(f.actions[past] * valid[:, :, None]),
            neighbours=neighbours,
            labels=torch.from_numpy(self.labels[np.asarray(indices, dtype=np.int64)].astype(np.float32)),
        )
