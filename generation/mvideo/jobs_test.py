import json

import numpy as np
import pytest

from generation.masks.synth import SyntheticObject, synthesize
from generation.mvideo.defaults import SHAPES_DEFAULT_PATH
from generation.mvideo.defaults.engine_file import ENGINE_FILE, save_engine_defaults
from generation.mvideo.engine import TINY_SPEC
from generation.mvideo.jobs import VideoLimits, VideoRequest, fit_masks, plan, spec_from_dir
from generation.mvideo.shapes.spec import SHAPES_SAMPLING
from libs.errors import FieldError
from libs.media import MaskObject, MaskSequence

VACE_LIKE = TINY_SPEC.__class__(**{**TINY_SPEC.__dict__, "name": "vace", "long_video": False})


def circle(num_frames=9, size=32, fps=8.0, objects=1):
    shapes = [SyntheticObject("circle", (16, 16), width=8, height=8, label=f"o{i}") for i in range(objects)]
    return synthesize(shapes, width=size, height=size, num_frames=num_frames, fps=fps)


def field_of(request, spec=TINY_SPEC, limits=None):
    with pytest.raises(FieldError) as error:
        plan(request, spec, limits or VideoLimits())
    return error.value.field


def test_defaults_come_from_the_masks_then_the_engine():
    job = plan(VideoRequest(prompt="p", masks=circle(num_frames=13)), TINY_SPEC, VideoLimits())
    assert (job.width, job.height, job.num_frames, job.fps) == (32, 32, 13, 8.0)
    assert (job.num_inference_steps, job.guidance_scale) == (
        TINY_SPEC.num_inference_steps,
        TINY_SPEC.guidance_scale,
    )
    bare = plan(VideoRequest(prompt="p"), TINY_SPEC, VideoLimits())
    assert (bare.num_frames, bare.width, bare.fps) == (TINY_SPEC.num_frames, TINY_SPEC.width, TINY_SPEC.fps)


def test_masks_are_resampled_to_the_asked_fps():
    job = plan(
        VideoRequest(prompt="p", masks=circle(num_frames=3, fps=4.0), fps=12.0), TINY_SPEC, VideoLimits()
    )
    assert job.masks.fps == 12.0 and job.num_frames == job.masks.num_frames == 9


def test_each_rule_blames_the_field_that_set_the_value():
    assert field_of(VideoRequest(prompt="p", width=40)) == "width"  # not a multiple of 16
    assert field_of(VideoRequest(prompt="p", masks=circle(size=40))) == "masks"  # the masks set the width
    assert field_of(VideoRequest(prompt="p", masks=circle(), width=48)) == "width"  # disagrees with the masks
    assert field_of(VideoRequest(prompt="p", num_frames=10)) == "num_frames"  # not 1 + 4k
    assert field_of(VideoRequest(prompt="p", masks=circle(objects=3))) == "masks.objects"  # 2 slots
    assert (
        field_of(VideoRequest(prompt="p", num_inference_steps=5), limits=VideoLimits(max_steps=4))
        == "num_inference_steps"
    )
    too_long = VideoRequest(prompt="p", num_frames=13)
    with pytest.raises(FieldError, match="one clip") as error:
        plan(too_long, VACE_LIKE, VideoLimits())
    assert error.value.code == "MASK_SEQUENCE_TOO_LARGE"
    assert plan(too_long, TINY_SPEC, VideoLimits()).num_frames == 13  # MVideo continues clip by clip


def test_a_huge_fps_is_refused_before_any_resampling():
    masks = circle(num_frames=9)
    with pytest.raises(FieldError, match="more than this server generates") as error:
        plan(VideoRequest(prompt="p", masks=masks, fps=800.0), TINY_SPEC, VideoLimits())
    assert error.value.field == "masks"


def test_the_shapes_default_keeps_its_sampling_defaults_in_its_folder():
    saved = json.loads((SHAPES_DEFAULT_PATH / ENGINE_FILE).read_text())
    assert saved["num_inference_steps"] == SHAPES_SAMPLING["num_inference_steps"]
    assert saved["guidance_scale"] == SHAPES_SAMPLING["guidance_scale"]
    spec = spec_from_dir(SHAPES_DEFAULT_PATH)
    assert (spec.num_inference_steps, spec.guidance_scale, spec.fps) == (50, 1.0, 8.0)


def test_spec_from_dir_reads_engine_json(tmp_path):
    for part, config in {
        "transformer": {"sample_height": 4, "sample_width": 6, "sample_frames": 9, "patch_size": 2},
        "mask_encoder": {
            "num_mask_slots": 3,
            "spatial_compression_ratio": 8,
            "temporal_compression_ratio": 4,
        },
        "vae": {},
    }.items():
        (tmp_path / part).mkdir()
        (tmp_path / part / "config.json").write_text(json.dumps(config))
    with pytest.raises(FileNotFoundError, match="engine.json"):
        spec_from_dir(tmp_path)
    fallback = {"fps": 8.0, "num_inference_steps": 50, "guidance_scale": 6.0}
    assert spec_from_dir(tmp_path, fallback).num_inference_steps == 50
    save_engine_defaults(tmp_path, fps=12.0, num_inference_steps=7, guidance_scale=3.5)
    spec = spec_from_dir(tmp_path, fallback)
    assert (spec.height, spec.width, spec.size_multiple, spec.frame_step) == (32, 48, 16, 4)
    assert (spec.fps, spec.num_inference_steps, spec.guidance_scale) == (12.0, 7, 3.5)


def test_fit_masks_keeps_the_best_scored_objects_at_the_output_size_and_length():
    # 6 frames of 64 x 48: three objects side by side (left: id 1, middle: id 2, right: id 3)
    id_maps = np.zeros((6, 48, 64), np.int32)
    id_maps[:, 8:40, 0:16], id_maps[:, 8:40, 24:40], id_maps[:, 8:40, 48:64] = 1, 2, 3
    objects = [MaskObject(1, "a", 0.9), MaskObject(2, "b", 0.2), MaskObject(3, "c", 0.5)]
    seq = MaskSequence.from_id_maps(id_maps, objects, fps=8)

    fitted = fit_masks(seq, width=32, height=32, num_frames=9, max_objects=2)

    assert (fitted.width, fitted.height, fitted.num_frames) == (32, 32, 9)
    assert [o.id for o in fitted.objects] == [1, 3]  # the lowest score (id 2) is dropped
    assert fitted.fps == 12.0  # 6 frames stretched to 9: the same duration
    first = fitted.id_map(0)
    assert set(np.unique(first).tolist()) == {0, 1, 3}
    assert (first[:, :8] == 1).any() and (first[:, 24:] == 3).any()  # nearest resize keeps the layout


def test_sizes_past_what_the_transformer_renders_are_refused_naming_the_field():
    bounded = TINY_SPEC.__class__(**{**TINY_SPEC.__dict__, "max_height": 32, "max_width": 32})
    assert field_of(VideoRequest(prompt="p", width=48), spec=bounded) == "width"
    assert field_of(VideoRequest(prompt="p", masks=circle(size=48)), spec=bounded) == "masks"
    assert plan(VideoRequest(prompt="p", width=16, height=32), bounded, VideoLimits()).width == 16
    assert field_of(VideoRequest(prompt="p", fps=1e-7)) == "fps"
    assert field_of(VideoRequest(prompt="p", masks=circle(fps=1e-4))) == "masks"  # the masks' own rate


def test_engine_json_says_how_text_only_requests_are_answered(tmp_path):
    from generation.mvideo.defaults.engine_file import read_engine_defaults

    save_engine_defaults(tmp_path, fps=8.0, num_inference_steps=5, guidance_scale=1.0)
    assert "text_only" not in read_engine_defaults(tmp_path)  # "model", the default, is not written
    save_engine_defaults(tmp_path, fps=8.0, num_inference_steps=5, guidance_scale=1.0, text_only="layout")
    assert read_engine_defaults(tmp_path)["text_only"] == "layout"
    with pytest.raises(ValueError, match="text_only must be one of model, layout"):
        save_engine_defaults(tmp_path, fps=8.0, num_inference_steps=5, guidance_scale=1.0, text_only="llm")
    assert spec_from_dir(SHAPES_DEFAULT_PATH).text_only == "layout"
