"""A world's impressions as model batches: `GTRDataset.from_world(world, "train", neighbours)` then
`dataset.batch(indices) -> GTRBatch`.

Every feature of an impression is computed from what was known *before* it (as a live system would know it):
- the segment: the last `segment_seconds` seconds of the broadcast up to the second the user arrived, one
  token per second per modality (oldest first);
- the behaviour sequence: the user's previous `history` impressions, most recent first, each summarised by the
  streamer, the mean frame token of what was on screen, and what the user did (watch time, like, gift);
- dense statistics: the user's and the streamer's impressions and gifts so far (exclusive running sums);
- neighbours: rows of the expansion snapshot's neighbour arrays (built from the training period's gifts only).
Labels are the impression's gift, like and comment (`batches.TASKS`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from recsys.data.batches import METAPATH_SOURCE, METAPATHS, GTRBatch
from recsys.data.world import World

DEFAULT_SEGMENT_SECONDS = 10
DEFAULT_HISTORY = 50


def running_counts(keys: np.ndarray, values: np.ndarray) -> np.ndarray:
    """For rows in time order: the sum of `values` over earlier rows with the same key (exclusive cumsum)."""
    order = np.argsort(keys, kind="stable")
    sorted_keys, sorted_values = keys[order], values[order].astype(np.float64)
    cumulative = np.cumsum(sorted_values) - sorted_values
    starts = np.r_[0, np.flatnonzero(sorted_keys[1:] != sorted_keys[:-1]) + 1]
    offsets = np.repeat(cumulative[starts], np.diff(np.r_[starts, len(keys)]))
    result = np.empty(len(keys))
    result[order] = cumulative - offsets
    return result


def dense_statistics(impressions: np.ndarray, gifts: np.ndarray) -> np.ndarray:
    """`USER_DENSE` / `AUTHOR_DENSE` from counts: log impressions, log gifts, smoothed gift rate (x100)."""
    rate = (gifts + 0.02) / (impressions + 1.0) * 100.0
    return np.stack([np.log1p(impressions), np.log1p(gifts), rate], axis=-1).astype(np.float32)


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
    rank_in_user: np.ndarray  # [N] position of each row in by_user
    user_start: np.ndarray  # [N] position in by_user where the row's user starts

    @classmethod
    def build(
        cls, world: World, segment_seconds: int = DEFAULT_SEGMENT_SECONDS, history: int = DEFAULT_HISTORY
    ):
        limit = world.config.max_segment_seconds
        if not 1 <= segment_seconds <= limit:
            raise ValueError(f"segment_seconds must be in [1, {limit}] for this world, got {segment_seconds}")
        imp = world.impressions
        users, authors, gifts = imp["user"], imp["author"], imp["gifted"]
        ones = np.ones(len(users))
        user_dense = dense_statistics(running_counts(users, ones), running_counts(users, gifts))
        author_dense = dense_statistics(running_counts(authors, ones), running_counts(authors, gifts))
        stream_row = world.stream_rows(imp["stream_id"])
        seen = _segments(world.streams["content"], stream_row, imp["second"], segment_seconds, modality=0)
        actions = np.stack([np.log1p(imp["watch_seconds"]), imp["liked"], gifts], axis=-1).astype(np.float32)
        by_user = np.argsort(users, kind="stable")  # impressions are in time order, so each user's are too
        rank = np.empty(len(users), dtype=np.int64)
        rank[by_user] = np.arange(len(users))
        sorted_users = users[by_user]
        first = np.r_[0, np.flatnonzero(sorted_users[1:] != sorted_users[:-1]) + 1]
        start_sorted = np.repeat(first, np.diff(np.r_[first, len(users)]))
        user_start = np.empty(len(users), dtype=np.int64)
        user_start[by_user] = start_sorted
        return cls(
            world, segment_seconds, history, stream_row, user_dense, author_dense, seen.mean(axis=1),
            actions, by_user, rank, user_start,
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
        back = f.rank_in_user[rows, None] - np.arange(1, f.history + 1)[None, :]  # [B, H]
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
