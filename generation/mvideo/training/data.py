"""Training data for MVideo: (video, caption, mask sequence) examples from a JSONL manifest or the shapes world.

A manifest is a JSONL file, one example per line (paths relative to the manifest's folder, or absolute):

    {"video": "clips/dog.mp4", "caption": "a dog runs on the beach", "masks": "masks/dog.json"}
    {"video": "clips/cat.mp4", "caption": "a cat", "masks": "masks/cat.npz", "object_ids": [2, 1]}

`video` is anything `libs.media.read_video` decodes (MP4, MOV, MKV, GIF); `masks` is any `libs.media` mask
codec (.json, .npz, .pb, .zip or a PNG directory). `object_ids` (optional) orders the mask slots (slot k =
`object_ids[k]`, e.g. the order in which the caption names the objects); by default slots follow ascending ids.

Our choices:

- **Clip = the first `num_frames` frames** (`frame_stride` apart); a shorter video repeats its last frame. Frames
  and masks are resized to `height x width` (bilinear for frames, nearest for masks) when their size differs.
- **One example = a dict** `{"video": (T, 3, H, W) float32 in [-1, 1], "masks": (T, K, H, W) float32 in {0, 1},
  "caption": str}`; `collate_examples` stacks them.
- **Batches are a pure function of the step.** `StepBatchSampler` gives process `rank` of `world_size` the
  indices of step s directly (finite data: a seeded permutation per epoch; streaming data such as the shapes
  world: consecutive fresh indices), so resuming at step s needs no saved data-loader state and continues the
  exact sequence of batches, and processes never see the same example in a step.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, Sampler

from generation.mvideo.shapes.world import ShapesWorld
from libs.media import load as load_masks
from libs.media import read_video

Example = dict[str, Any]


@dataclass(frozen=True)
class ManifestEntry:
    """One manifest line, with paths resolved."""

    video: Path
    caption: str
    masks: Path
    object_ids: tuple[int, ...] | None = None

    def to_json(self, root: Path | None = None) -> dict[str, Any]:
        def rel(path: Path) -> str:
            if root is not None:
                try:
                    return os.path.relpath(path, root)
                except ValueError:
                    pass
            return str(path)

        out: dict[str, Any] = {"video": rel(self.video), "caption": self.caption, "masks": rel(self.masks)}
        if self.object_ids is not None:
            out["object_ids"] = list(self.object_ids)
        return out


def read_manifest(path: str | os.PathLike[str]) -> list[ManifestEntry]:
    """The entries of a JSONL manifest; ValueError naming the line for a malformed one."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no manifest at {path}")
    root = path.parent
    entries = []
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            item = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{where}: not valid JSON ({e})") from None
        if not isinstance(item, dict):
            raise ValueError(f"{where}: expected a JSON object, got {type(item).__name__}")
        for key in ("video", "caption", "masks"):
            if not isinstance(item.get(key), str) or not item[key]:
                raise ValueError(f"{where}: field {key!r} must be a non-empty string")
        ids = item.get("object_ids")
        if ids is not None and (not isinstance(ids, list) or not all(isinstance(i, int) for i in ids)):
            raise ValueError(f"{where}: object_ids must be a list of integers")
        entries.append(
            ManifestEntry(
                video=root / item["video"],
                caption=item["caption"],
                masks=root / item["masks"],
                object_ids=tuple(ids) if ids is not None else None,
            )
        )
    if not entries:
        raise ValueError(f"manifest {path} has no entries")
    return entries


def write_manifest(path: str | os.PathLike[str], entries: Sequence[ManifestEntry]) -> None:
    """Write `entries` as JSONL, with paths relative to the manifest's folder where possible."""
    path = Path(path)
    lines = [json.dumps(e.to_json(path.parent.resolve())) for e in entries]
    path.write_text("".join(line + "\n" for line in lines))


def _resize(x: torch.Tensor, height: int, width: int, mode: str) -> torch.Tensor:
    if x.shape[-2:] == (height, width):
        return x
    if mode == "nearest":
        return F.interpolate(x, size=(height, width), mode="nearest-exact")
    return F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False, antialias=True)


def _select_frames(total: int, num_frames: int, stride: int) -> np.ndarray:
    return np.minimum(np.arange(num_frames) * stride, total - 1)


class ManifestDataset(Dataset):
    """Examples from a JSONL manifest (see the module docstring)."""

    def __init__(
        self,
        manifest: str | os.PathLike[str] | Sequence[ManifestEntry],
        *,
        num_frames: int,
        height: int,
        width: int,
        num_mask_slots: int,
        frame_stride: int = 1,
    ) -> None:
        self.entries = (
            list(manifest) if not isinstance(manifest, str | os.PathLike) else read_manifest(manifest)
        )
        if frame_stride < 1:
            raise ValueError(f"frame_stride must be >= 1, got {frame_stride}")
        self.num_frames, self.height, self.width = num_frames, height, width
        self.num_mask_slots, self.frame_stride = num_mask_slots, frame_stride

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> Example:
        entry = self.entries[index]
        frames, _ = read_video(entry.video, max_frames=(self.num_frames - 1) * self.frame_stride + 1)
        seq = load_masks(entry.masks)
        if (seq.height, seq.width) != frames.shape[1:3]:
            raise ValueError(
                f"{entry.masks}: masks are {seq.width}x{seq.height} but {entry.video} is "
                f"{frames.shape[2]}x{frames.shape[1]}"
            )
        ids = list(entry.object_ids) if entry.object_ids is not None else list(seq.object_ids)
        if len(ids) > self.num_mask_slots:
            raise ValueError(
                f"{entry.masks}: {len(ids)} objects but the model has {self.num_mask_slots} mask slots"
            )
        picks = _select_frames(min(len(frames), seq.num_frames), self.num_frames, self.frame_stride)
        video = torch.from_numpy(frames[picks]).permute(0, 3, 1, 2).float() / 127.5 - 1.0  # (T, 3, H, W)
        masks = np.zeros((self.num_frames, self.num_mask_slots, seq.height, seq.width), dtype=np.float32)
        id_column = np.asarray(ids, dtype=np.int64)[:, None, None]
        for i, t in enumerate(picks):
            if ids:
                masks[i, : len(ids)] = seq.id_map(int(t))[None] == id_column
        return {
            "video": _resize(video, self.height, self.width, "bilinear").clamp(-1.0, 1.0),
            "masks": _resize(torch.from_numpy(masks), self.height, self.width, "nearest"),
            "caption": entry.caption,
        }


class ShapesWorldDataset(Dataset):
    """Shapes-world examples: item i is `world.sample(i, split)` (a practically unbounded stream)."""

    streaming = True

    def __init__(
        self, world: ShapesWorld, *, num_mask_slots: int, split: str = "train", length: int = 2**31 - 1
    ):
        self.world, self.num_mask_slots, self.split, self.length = world, num_mask_slots, split, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> Example:
        sample = self.world.sample(index, self.split)
        return {
            "video": torch.from_numpy(sample.video).permute(0, 3, 1, 2).float() / 127.5 - 1.0,
            "masks": torch.from_numpy(sample.slot_masks(self.num_mask_slots)).float(),
            "caption": sample.caption,
        }


def collate_examples(examples: Sequence[Example]) -> Example:
    """Stack examples: video (B, T, 3, H, W), masks (B, T, K, H, W), caption list[str]."""
    return {
        "video": torch.stack([e["video"] for e in examples]),
        "masks": torch.stack([e["masks"] for e in examples]),
        "caption": [e["caption"] for e in examples],
    }


class StepBatchSampler(Sampler[list[int]]):
    """Batches of dataset indices as a pure function of (seed, step, rank): see the module docstring.

    Yields the batches of steps `start_step`, `start_step + 1`, ... up to `max_steps` (exclusive).
    """

    def __init__(
        self,
        num_items: int,
        batch_size: int,
        *,
        seed: int,
        start_step: int = 0,
        max_steps: int,
        rank: int = 0,
        world_size: int = 1,
        streaming: bool = False,
    ) -> None:
        if num_items < 1 or batch_size < 1:
            raise ValueError(f"need num_items >= 1 and batch_size >= 1, got {num_items}, {batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, {world_size})")
        self.num_items, self.batch_size, self.seed = num_items, batch_size, seed
        self.start_step, self.max_steps = start_step, max_steps
        self.rank, self.world_size, self.streaming = rank, world_size, streaming
        self._perm_epoch: int | None = None
        self._perm: np.ndarray | None = None

    def __len__(self) -> int:
        return max(0, self.max_steps - self.start_step)

    def indices(self, step: int) -> list[int]:
        first = (step * self.world_size + self.rank) * self.batch_size
        positions = range(first, first + self.batch_size)
        if self.streaming:
            return [p % self.num_items for p in positions]
        return [int(self._permutation(p // self.num_items)[p % self.num_items]) for p in positions]

    def _permutation(self, epoch: int) -> np.ndarray:
        if self._perm_epoch != epoch:
            rng = np.random.default_rng(np.random.SeedSequence([self.seed, epoch]))
            self._perm, self._perm_epoch = rng.permutation(self.num_items), epoch
        return self._perm

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start_step, self.max_steps):
            yield self.indices(step)
