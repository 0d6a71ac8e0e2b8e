import numpy as np

from generation.mvideo.shapes.evaluation import (
    EvalConfig,
    EvalReport,
    grid_frames,
    score_video,
)
from generation.mvideo.shapes.world import ShapesWorld


def test_ground_truth_videos_score_perfectly_and_other_videos_do_not():
    world, config = ShapesWorld(), EvalConfig()
    for i in range(12):
        sample = world.sample(i, "eval")
        scores = score_video(sample.video.astype(np.float32) / 255, sample, config)
        assert scores["iou"] == 1.0 and scores["iou_color"] == 1.0
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


def test_grid_layout():
    world = ShapesWorld()
    samples = [world.sample(i) for i in range(2)]
    videos = np.stack([s.video for s in samples]).astype(np.float32) / 255
    report = EvalReport(1, 0, 0, 1, 0, 1, 0, 2, samples=samples, masked=videos, unmasked=videos)
    frames = grid_frames(report, num=2, scale=2)
    assert frames.shape == (8, (2 * 32 + 2) * 2, (3 * 32 + 4) * 2, 3) and frames.dtype == np.uint8
    assert report.summary_line() == "miou_masked=1.0000 miou_unmasked=0.0000 color_acc=1.0000"


def test_evaluate_scores_the_chosen_sample_range(monkeypatch):
    import generation.mvideo.shapes.evaluation as evaluation

    def perfect_when_masked(pipe, samples, config, with_masks, first_seed):
        videos = np.stack([s.video if with_masks else s.background for s in samples])
        return videos.astype(np.float32) / 255

    monkeypatch.setattr(evaluation, "generate", perfect_when_masked)
    world = ShapesWorld()
    pipe = type("Pipe", (), {"set_progress_bar_config": lambda self, **kw: None})()
    report = evaluation.evaluate(pipe, EvalConfig(num_samples=3, first_sample=1000), world=world)
    assert [s.caption for s in report.samples] == [
        world.sample(i, "eval").caption for i in (1000, 1001, 1002)
    ]
    assert report.miou_masked == 1.0 and report.miou_unmasked == 0.0 and report.color_acc == 1.0
