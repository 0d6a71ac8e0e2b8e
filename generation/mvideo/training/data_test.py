import json

import numpy as np
import pytest
import torch

from generation.mvideo.shapes.world import ShapesWorld
from generation.mvideo.training.data import (
    ManifestDataset,
    ManifestEntry,
    ShapesWorldDataset,
    StepBatchSampler,
    collate_examples,
    read_manifest,
    write_manifest,
)
from libs.media import save, write_video


def _write_shapes(folder, n, world=None):
    world = world or ShapesWorld()
    (folder / "masks").mkdir(parents=True, exist_ok=True)
    entries, samples = [], []
    for i in range(n):
        sample = world.sample(i)
        video = folder / f"clip{i}.mp4"
        write_video(video, sample.video, sample.fps, crf=0)
        save(sample.masks, folder / "masks" / f"clip{i}.npz")
        entries.append(ManifestEntry(video, sample.caption, folder / "masks" / f"clip{i}.npz"))
        samples.append(sample)
    return entries, samples


def test_manifest_round_trip_and_dataset(tmp_path):
    entries, samples = _write_shapes(tmp_path, 3)
    entries[1] = ManifestEntry(entries[1].video, entries[1].caption, entries[1].masks, object_ids=(1,))
    write_manifest(tmp_path / "manifest.jsonl", entries)
    lines = [json.loads(line) for line in (tmp_path / "manifest.jsonl").read_text().splitlines()]
    assert lines[0]["video"] == "clip0.mp4" and lines[0]["masks"] == "masks/clip0.npz"  # relative paths
    assert read_manifest(tmp_path / "manifest.jsonl") == entries

    dataset = ManifestDataset(
        tmp_path / "manifest.jsonl", num_frames=8, height=32, width=32, num_mask_slots=3
    )
    assert len(dataset) == 3
    item = dataset[0]
    assert item["video"].shape == (8, 3, 32, 32) and item["masks"].shape == (8, 3, 32, 32)
    assert item["caption"] == samples[0].caption
    np.testing.assert_array_equal(item["masks"].numpy().astype(bool), samples[0].slot_masks(3))
    decoded = (item["video"].permute(0, 2, 3, 1).numpy() + 1) * 127.5
    assert np.abs(decoded - samples[0].video).mean() < 6  # H.264 (yuv420p) is close, not exact
    only_first = dataset[1]["masks"]
    assert only_first[:, 1:].sum() == 0 and only_first[:, 0].sum() > 0  # object_ids picks and orders slots

    resized = ManifestDataset(entries, num_frames=4, height=16, width=16, num_mask_slots=3, frame_stride=2)[0]
    assert resized["video"].shape == (4, 3, 16, 16) and set(resized["masks"].unique().tolist()) <= {0.0, 1.0}
    batch = collate_examples([dataset[0], dataset[2]])
    assert batch["video"].shape == (2, 8, 3, 32, 32) and len(batch["caption"]) == 2


def test_manifest_errors(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"video": "a.mp4", "caption": "x"}\n')
    with pytest.raises(ValueError, match="bad.jsonl:1: field 'masks'"):
        read_manifest(bad)
    with pytest.raises(FileNotFoundError):
        read_manifest(tmp_path / "missing.jsonl")


def test_step_batch_sampler_is_a_function_of_the_step():
    full = StepBatchSampler(10, 4, seed=3, max_steps=6)
    batches = list(full)
    resumed = list(StepBatchSampler(10, 4, seed=3, start_step=2, max_steps=6))
    assert batches[2:] == resumed
    flat = [i for b in batches[:5] for i in b]  # 20 draws = two epochs: each a permutation of 0..9
    assert sorted(flat[:10]) == list(range(10)) and sorted(flat[10:20]) == list(range(10))
    ranks = [
        StepBatchSampler(10**6, 2, seed=0, max_steps=1, rank=r, world_size=2, streaming=True).indices(0)
        for r in (0, 1)
    ]
    assert ranks == [[0, 1], [2, 3]]


def test_shapes_world_dataset_items():
    dataset = ShapesWorldDataset(ShapesWorld(), num_mask_slots=3)
    item = dataset[5]
    sample = ShapesWorld().sample(5)
    assert item["caption"] == sample.caption
    assert torch.equal(item["masks"], torch.from_numpy(sample.slot_masks(3)).float())
    assert item["video"].min() >= -1 and item["video"].max() <= 1
