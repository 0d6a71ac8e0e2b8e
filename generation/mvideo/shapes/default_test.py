"""Quality test of the committed embedded default: a reduced `kmono mvideo eval` (8 samples, 10 DDIM steps).

The full evaluation (64 samples, 10 steps, the default's sampling) is `kmono mvideo eval`; its figures are in
default/eval.json. The reduced run measured miou_masked 0.70, miou_unmasked 0.006, color_acc 1.0; the
thresholds keep a margin below that and at least the issue's bar (IoU with masks 5x the IoU without, colour accuracy 0.9 - here 0.85 for
8 samples' 16 objects, where one miss is 0.94).
"""

import json

import torch

from generation.mvideo.pipelines import MVideoPipeline
from generation.mvideo.shapes.evaluation import EvalConfig, evaluate
from generation.mvideo.shapes.model import DEFAULT_DIR, load_shapes_default


def test_committed_default_follows_masks_and_prompt_colours():
    pipe = load_shapes_default()
    assert isinstance(pipe, MVideoPipeline)
    report = evaluate(pipe, EvalConfig(num_samples=8, num_inference_steps=10, batch_size=8))
    assert report.miou_masked >= 0.55, report
    assert report.miou_masked >= 5 * report.miou_unmasked, report
    assert report.color_acc >= 0.85, report


def test_committed_default_is_small_and_loads_with_from_pretrained():
    files = [p for p in DEFAULT_DIR.rglob("*") if p.is_file() and "checkpoints" not in p.parts]
    assert sum(p.stat().st_size for p in files) < 30 * 2**20
    pipe = MVideoPipeline.from_pretrained(DEFAULT_DIR)
    assert pipe.transformer.config.mask_in_channels == pipe.mask_encoder.config.mask_in_channels
    assert all(p.dtype == torch.float32 for p in pipe.transformer.parameters())
    record = json.loads((DEFAULT_DIR / "training.json").read_text())
    assert record["recipe"] == "shapes-default" and record["steps"] == record["config"]["max_steps"]
