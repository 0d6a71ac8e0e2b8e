from types import SimpleNamespace

import numpy as np

from generation.mvideo.shapes.evaluation import (
    EvalConfig,
    EvalReport,
    accepts_mask_labels,
    evaluate,
    grid_frames,
    save_grid,
    score_video,
)
from generation.mvideo.shapes.motions import HELD_OUT_FAMILIES
from generation.mvideo.shapes.report import SUMMARY_KEYS
from generation.mvideo.shapes.world import COLORS, ShapesWorld, parse_caption


def test_ground_truth_videos_score_perfectly_and_other_videos_do_not():
    world, config = ShapesWorld(), EvalConfig()
    for i in range(12):
        sample = world.sample(i, "eval")
        scores = score_video(sample.video.astype(np.float32) / 255, sample, config)
        assert scores["iou"] == 1.0 and scores["iou_color"] == 1.0 and scores["iou_frame"] == 1.0
        assert scores["color_in_mask"] == 1.0 and scores["color_anywhere"] == 1.0
        other = world.sample(i + 100, "eval")
        assert score_video(other.video.astype(np.float32) / 255, sample, config)["iou"] < 0.5


def test_wrong_colours_fail_colour_accuracy():
    sample = ShapesWorld(min_objects=2, max_objects=2).sample(0)
    video = sample.video.copy()
    first = sample.id_maps == 1
    video[first] = video[sample.id_maps == 2][0]  # paint object 1 in object 2's colour
    scores = score_video(video.astype(np.float32) / 255, sample, EvalConfig())
    assert scores["iou"] == 1.0 and scores["color_in_mask"] == 0.5


def test_grid_layout_and_a_report_without_new_metrics_keeps_todays_line():
    world = ShapesWorld()
    samples = [world.sample(i) for i in range(2)]
    videos = np.stack([s.video for s in samples]).astype(np.float32) / 255
    report = EvalReport(1, 0, 0, 1, 0, 1, 0.5, 2, samples=samples, masked=videos, unmasked=videos)
    frames = grid_frames(report, num=2, scale=2)
    assert frames.shape == (8, (2 * 32 + 2) * 2, (3 * 32 + 4) * 2, 3) and frames.dtype == np.uint8
    assert report.summary_line() == "miou_masked=1.0000 miou_unmasked=0.0000 color_acc=1.0000"
    assert report.metrics()["color_acc_unmasked"] == 0.5 and "text_color_acc" not in report.metrics()


class OraclePipe:
    """Draws exactly what it is given: each mask slot filled with the colour of its label (or, without labels,
    of the prompt's phrase at the slot's position; red for an empty prompt) on a flat grey; nothing when the
    masks are dropped. Records the calls."""

    def __init__(self, num_slots: int = 3):
        self.mask_encoder = SimpleNamespace(config=SimpleNamespace(num_mask_slots=num_slots))
        self.transformer = SimpleNamespace(config=SimpleNamespace(max_text_seq_length=16))
        self.calls: list[dict] = []

    def set_progress_bar_config(self, **kwargs):
        pass

    def encode_prompt(self, prompt, **kwargs):
        return SimpleNamespace(prompts=prompt), None

    def draw(self, prompt, mask_video, num_frames, height, width, mask_labels=None, prompt_embeds=None):
        prompt = prompt if prompt is not None else prompt_embeds.prompts
        self.calls.append({"prompt": list(prompt), "masked": mask_video is not None, "labels": mask_labels})
        video = np.full((len(prompt), num_frames, height, width, 3), 0.5, np.float32)
        if mask_video is None:
            return SimpleNamespace(frames=video)
        masks = mask_video.numpy() > 0.5  # (B, T, K, H, W)
        for b, text in enumerate(prompt):
            phrases = [f"{c} {s}" for c, s in parse_caption(text)] or ["red circle"] * masks.shape[2]
            for k in range(masks.shape[2]):
                label = mask_labels[b][k] if mask_labels is not None else (phrases + [None] * 3)[k]
                if label is not None:
                    video[b][masks[b, :, k]] = np.array(COLORS[label.split()[0]], np.float32) / 255
        return SimpleNamespace(frames=video)


class LabelledOracle(OraclePipe):
    def __call__(
        self, prompt, mask_video=None, num_frames=8, height=32, width=32, mask_labels=None, **kwargs
    ):
        return self.draw(
            prompt, mask_video, num_frames, height, width, mask_labels, kwargs.get("prompt_embeds")
        )


class SlotOrderOracle(OraclePipe):
    def __call__(self, prompt, mask_video=None, num_frames=8, height=32, width=32, **kwargs):
        return self.draw(prompt, mask_video, num_frames, height, width, None, kwargs.get("prompt_embeds"))


def test_a_model_that_draws_exactly_its_condition_gets_the_known_answers(tmp_path):
    pipe = LabelledOracle()
    assert accepts_mask_labels(pipe) and not accepts_mask_labels(SlotOrderOracle())
    config = EvalConfig(num_samples=6, first_sample=1000, batch_size=4, family_samples=2)
    report = evaluate(pipe, config, world=ShapesWorld())
    assert [s.caption for s in report.samples] == [
        ShapesWorld().sample(i, "eval").caption for i in range(1000, 1006)
    ]
    assert report.miou_masked == report.miou_frame == report.miou_shifted == report.miou_mask_only == 1.0
    assert report.miou_pair_union <= report.miou_frame and report.iou_original_place == 0.0
    assert report.color_acc == report.binding_acc == 1.0 and report.binding_with_labels
    assert report.bg_noise < 1e-3
    assert (
        report.miou_unmasked == report.text_color_acc == report.text_presence == 0.0
    )  # draws nothing from text
    assert set(report.families) == set(HELD_OUT_FAMILIES)
    assert all(f["miou_frame"] == 1.0 and f["color_acc"] == 1.0 for f in report.families.values())
    # the shuffled generations carried one label per slot, a non-identity order of the caption's phrases
    shuffled = [c for c in pipe.calls if c["labels"] is not None]
    assert len(shuffled) == 1
    for prompt, labels in zip(shuffled[0]["prompt"], shuffled[0]["labels"], strict=True):
        phrases = [f"{c} {s}" for c, s in parse_caption(prompt)]
        assert (
            len(labels) == 3
            and sorted(x for x in labels if x) == sorted(phrases)
            and labels[:2] != phrases[:2]
        )
    assert any(c["prompt"] == [""] * len(c["prompt"]) and c["masked"] for c in pipe.calls)
    metrics = report.metrics()
    assert set(SUMMARY_KEYS) <= set(metrics) and metrics["family/circular/miou_frame"] == 1.0
    line = report.summary_line()
    assert line.startswith("miou_masked=1.0000 miou_unmasked=0.0000 color_acc=1.0000 miou_frame=1.0000 ")
    assert "iou_original_place=0.0000" in line and "family/entering/miou_frame=1.0000" in line
    assert "binding_acc" in report.table() and "stop_reverse" in report.table()
    paths = save_grid(report, tmp_path, num=2)
    assert [p.name for p in paths] == ["grid.gif", "grid.png", "families.png"] and all(
        p.stat().st_size for p in paths
    )


def test_binding_fails_when_colour_goes_by_slot_order():
    config = EvalConfig(num_samples=6, batch_size=8, families=())
    report = evaluate(SlotOrderOracle(), config, world=ShapesWorld(min_objects=2))
    assert report.color_acc == 1.0 and not report.binding_with_labels
    assert report.binding_acc <= 1 / 3  # a non-identity order leaves at most one object of three in its slot
    assert report.families == {} and "(no mask_labels" in report.table()


def test_extras_and_families_can_be_skipped():
    pipe = LabelledOracle()
    report = evaluate(pipe, EvalConfig(num_samples=2, extras=False, families=()), world=ShapesWorld())
    assert len(pipe.calls) == 2  # with masks, mask dropped
    assert report.miou_shifted is None and report.binding_acc is None and report.miou_mask_only is None
    assert "miou_shifted" not in report.metrics() and "binding_acc" not in report.summary_line()
    assert report.miou_frame == 1.0


def test_evaluate_runs_end_to_end_on_a_tiny_random_pipeline(tmp_path):
    import torch

    from generation.mvideo.shapes.model import build_shapes_pipeline
    from generation.mvideo.training.config import SHAPES_TINY_SPEC

    torch.manual_seed(0)
    pipe = build_shapes_pipeline(SHAPES_TINY_SPEC, seed=0)
    families = ("circular", "crossing")
    config = EvalConfig(num_samples=2, num_inference_steps=2, family_samples=2, families=families)
    report = evaluate(pipe, config)
    assert report.samples[0].video.shape == (4, 16, 16, 3)
    metrics = report.metrics()
    for key in (
        "miou_frame",
        "miou_pair_union",
        "miou_shifted",
        "iou_original_place",
        "text_presence",
        "bg_noise",
    ):
        assert key in metrics and np.isfinite(metrics[key])
    assert 0.0 <= metrics["miou_frame"] <= 1.0 and metrics["bg_noise"] >= 0.0
    assert set(report.families) == set(families)
    again = evaluate(pipe, config)
    assert again.metrics() == metrics  # deterministic by seed
    assert save_grid(report, tmp_path, num=2)[-1].name == "families.png"


def test_the_text_only_mode_with_a_planned_layout_is_scored_apart_from_the_mask_dropped_model(tmp_path):
    pipe = LabelledOracle()  # draws nothing without masks, exactly its labelled masks with them
    config = EvalConfig(num_samples=6, batch_size=8, extras=False, families=(), text_only="layout")
    report = evaluate(pipe, config, world=ShapesWorld())
    assert report.color_acc_unmasked == report.text_presence_unmasked == 0.0  # the model alone draws nothing
    assert report.text_only == "layout" and report.text_color_acc >= 0.9 and report.text_presence >= 0.9
    planned = [c for c in pipe.calls if c["labels"] is not None]
    assert len(planned) == 1  # one batch, each slot labelled with its caption phrase
    for prompt, labels in zip(planned[0]["prompt"], planned[0]["labels"], strict=True):
        assert [x for x in labels if x] == [f"{c} {s}" for c, s in parse_caption(prompt)]
    metrics = report.metrics()
    assert metrics["text_color_acc"] == report.text_color_acc and metrics["text_presence_unmasked"] == 0.0
    assert "(planned layout)" in report.table()
    assert (
        grid_frames(report, num=1, scale=1).shape[2] == 4 * 32 + 3 * 2
    )  # condition | masked | dropped | planned
