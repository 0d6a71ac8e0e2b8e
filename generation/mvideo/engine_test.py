import pytest
import torch

from generation.mvideo.engine import load_mvideo_engine, torch_dtype


def test_dtype_auto_is_bfloat16_on_cuda_and_float32_on_cpu():
    assert torch_dtype("auto", "cuda:0") == torch.bfloat16
    assert torch_dtype("auto", "cpu") == torch.float32
    assert torch_dtype("float16", "cpu") == torch.float16
    with pytest.raises(ValueError, match="unknown dtype 'fp8'"):
        torch_dtype("fp8", "cpu")


def test_the_engine_loads_its_weights_in_the_asked_dtype():
    engine = load_mvideo_engine(path=None, tiny=True, device="cpu", dtype="bfloat16", torch_threads=1)
    assert engine.pipe.transformer.dtype == torch.bfloat16


def test_a_missing_pipeline_folder_says_how_to_make_one(tmp_path):
    with pytest.raises(FileNotFoundError, match="kmono mvideo train --recipe shapes-default"):
        load_mvideo_engine(path=str(tmp_path), tiny=False, device="cpu")


def test_a_long_job_runs_clip_by_clip_and_reports_every_step_across_clips():
    from generation.masks.synth import SyntheticObject, synthesize
    from generation.mvideo.engine import LONG_VIDEO_MOTION_STRENGTH
    from generation.mvideo.jobs import VideoLimits, VideoRequest, plan
    from generation.mvideo.longvideo import long_video_steps

    engine = load_mvideo_engine(path=None, tiny=True, device="cpu", torch_threads=1)
    masks = synthesize(
        [SyntheticObject("circle", (16, 16), width=8, height=8)], width=32, height=32, num_frames=17, fps=8
    )
    job = plan(
        VideoRequest(prompt="a ball", masks=masks, num_inference_steps=2, seed=1), engine.spec, VideoLimits()
    )
    steps, stages = [], []
    video = engine.generate(job, lambda step, total, preview: steps.append((step, total)), stages.append)
    total = long_video_steps(
        17, engine.spec.num_frames, 2, LONG_VIDEO_MOTION_STRENGTH, engine.spec.frame_step
    )
    assert video.frames.shape == (17, 32, 32, 3) and video.masks is masks
    assert [s for s, _ in steps] == list(range(1, total + 1)) and {t for _, t in steps} == {total}
    assert stages == ["denoising"]


def test_a_reference_video_without_a_mask_engine_is_refused_naming_the_field():
    from generation.mvideo.jobs import ReferenceVideo, VideoLimits, VideoRequest, plan
    from libs.errors import FieldError

    engine = load_mvideo_engine(path=None, tiny=True, device="cpu", torch_threads=1)
    job = plan(
        VideoRequest(prompt="a ball", reference=ReferenceVideo(b"mp4", "ball.")), engine.spec, VideoLimits()
    )
    with pytest.raises(FieldError) as error:
        engine.generate(job, lambda *args: None)
    assert error.value.field == "reference"


def test_a_text_only_job_gets_a_planned_layout_when_the_engine_says_so_and_the_client_gets_it_back():
    import dataclasses

    from generation.mvideo.jobs import VideoLimits, VideoRequest, plan

    engine = load_mvideo_engine(path=None, tiny=True, device="cpu", torch_threads=1)
    request = VideoRequest(prompt="a red circle and a blue square", num_inference_steps=1, seed=3)
    job = plan(request, engine.spec, VideoLimits())
    assert engine.generate(job, lambda *args: None).masks is None  # "model": the model's own text-only branch

    planner = dataclasses.replace(engine, spec=dataclasses.replace(engine.spec, text_only="layout"))
    stages = []
    video = planner.generate(job, lambda *args: None, stages.append)
    assert stages == ["planning layout", "denoising"]
    assert [o.label for o in video.masks.objects] == ["red circle", "blue square"]
    assert (video.masks.num_frames, video.masks.width, video.masks.height) == (
        job.num_frames,
        job.width,
        job.height,
    )
    again = planner.generate(job, lambda *args: None)
    assert (again.masks.to_dense() == video.masks.to_dense()).all()  # the plan follows the job's seed


def test_a_planned_layout_warns_of_the_objects_beyond_the_mask_slots():
    import dataclasses

    from generation.mvideo.jobs import VideoLimits, VideoRequest, plan

    engine = load_mvideo_engine(path=None, tiny=True, device="cpu", torch_threads=1)  # 2 mask slots
    planner = dataclasses.replace(engine, spec=dataclasses.replace(engine.spec, text_only="layout"))
    job = plan(VideoRequest(prompt="a red ball, a blue box and a green cone"), engine.spec, VideoLimits())
    warnings = planner.check_prompt(job).warnings
    assert any(w.endswith("draws at most 2, so the layout leaves out: green cone") for w in warnings), (
        warnings
    )
    assert not any(
        "layout" in w for w in engine.check_prompt(job).warnings
    )  # the model's own text-only branch
    two = plan(VideoRequest(prompt="a red ball and a blue box"), engine.spec, VideoLimits())
    assert not any("layout" in w for w in planner.check_prompt(two).warnings)
