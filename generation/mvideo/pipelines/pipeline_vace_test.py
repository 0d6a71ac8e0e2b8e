import json

import numpy as np
import PIL.Image
import pytest
import torch
from diffusers import DiffusionPipeline, WanVACEPipeline

from generation.mvideo.pipelines.pipeline_vace import (
    BACKGROUND,
    SLOT_COLORS,
    MaskGuidedVACEPipeline,
    render_layout_video,
)
from generation.mvideo.pipelines.testing import tiny_mask_video, tiny_vace_components, tiny_vace_pipeline

PROMPT = "a red square moves right"


@pytest.fixture(scope="module")
def vace():
    pipe = MaskGuidedVACEPipeline(**tiny_vace_components(seed=0), num_mask_slots=2)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _run(vace, **kwargs):
    args = dict(
        prompt=PROMPT,
        mask_video=tiny_mask_video(),
        num_inference_steps=2,
        guidance_scale=3.0,
        mask_guidance_scale=1.0,
        generator=torch.Generator().manual_seed(0),
        output_type="latent",
        max_sequence_length=16,
        height=32,
        width=32,
        num_frames=9,
    )
    args.update(kwargs)
    return vace(**args).frames


def test_layout_rendering_is_slot_colours_on_grey():
    slots = tiny_mask_video(num_frames=2)[0]
    frames = render_layout_video(slots)
    assert len(frames) == 2 and frames[0].size == (32, 32)
    pixels = np.asarray(frames[1])
    assert tuple(pixels[0, 0]) == BACKGROUND
    for k in range(2):
        ys, xs = torch.nonzero(slots[1, k], as_tuple=True)
        assert tuple(pixels[ys[0], xs[0]]) == SLOT_COLORS[k]


def test_feeds_layout_video_and_all_white_mask_with_scale_as_conditioning(vace, monkeypatch):
    seen = {}
    original = WanVACEPipeline.__call__

    def spy(self, **kwargs):
        seen.update(kwargs)
        return original(self, **kwargs)

    monkeypatch.setattr(WanVACEPipeline, "__call__", spy)
    _run(vace, mask_guidance_scale=0.7)
    assert seen["conditioning_scale"] == 0.7
    assert all(np.asarray(m).min() == 255 for m in seen["mask"])
    assert [np.asarray(f).tolist() for f in seen["video"]] == [
        np.asarray(f).tolist() for f in render_layout_video(tiny_mask_video()[0])
    ]


def test_output_types(vace):
    assert _run(vace, output_type="np").shape == (1, 9, 32, 32, 3)
    assert _run(vace, output_type="pt").shape == (1, 9, 3, 32, 32)
    frames = _run(vace, output_type="pil")
    assert len(frames) == 1 and len(frames[0]) == 9 and isinstance(frames[0][0], PIL.Image.Image)
    assert _run(vace, prompt=[PROMPT, "a ball"], num_videos_per_prompt=2).shape[0] == 4


def test_scales_change_output_and_zero_mask_scale_equals_no_mask(vace):
    reference = _run(vace)
    assert not torch.allclose(reference, _run(vace, mask_guidance_scale=2.0), atol=1e-5)
    assert not torch.allclose(reference, _run(vace, guidance_scale=6.0), atol=1e-5)
    assert torch.equal(_run(vace, mask_guidance_scale=0.0), _run(vace, mask_video=None))


def test_mask_schedule_zeroes_conditioning_outside_the_window(vace):
    scales = []
    handle = vace.transformer.register_forward_pre_hook(
        lambda m, a, kw: scales.append(float(kw["control_hidden_states_scale"].abs().sum())), with_kwargs=True
    )
    try:
        _run(
            vace, num_inference_steps=4, guidance_scale=1.0, mask_guidance_start=0.25, mask_guidance_end=0.75
        )
    finally:
        handle.remove()
    assert [scale > 0 for scale in scales] == [False, True, True, False]
    out_window = _run(
        vace, num_inference_steps=2, guidance_scale=1.0, mask_guidance_start=0.0, mask_guidance_end=0.0
    )
    assert torch.equal(out_window, _run(vace, num_inference_steps=2, guidance_scale=1.0, mask_video=None))


def test_callback_and_previews(vace):
    seen = []

    def callback(p, step, timestep, kwargs):
        seen.append((step, sorted(kwargs), kwargs.get("preview")))
        return {}

    _run(vace, num_inference_steps=2, callback_on_step_end=callback, preview_every=2)
    assert [s[0] for s in seen] == [0, 1]
    assert seen[0][2] is None and seen[1][1] == ["latents", "preview"]
    assert seen[1][2].shape == (1, 9, 3, 16, 16)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"prompt": ""}, "prompt"),
        ({"mask_video": tiny_mask_video(num_frames=5)}, "mask_video"),
        ({"mask_video": tiny_mask_video(height=48)}, "mask_video"),
        ({"num_frames": 8, "mask_video": None}, "num_frames"),
        ({"mask_guidance_scale": -1.0}, "mask_guidance_scale"),
        ({"mask_guidance_start": 0.8, "mask_guidance_end": 0.2}, "mask_guidance_start"),
        ({"output_type": "gif"}, "output_type"),
    ],
)
def test_bad_inputs_raise(vace, kwargs, name):
    with pytest.raises(ValueError, match=name):
        _run(vace, **kwargs)


def test_is_a_diffusion_pipeline_with_the_wan_modules_and_mvideo_sizes(vace):
    assert isinstance(vace, DiffusionPipeline) and isinstance(vace, WanVACEPipeline)
    assert set(vace.components) == {
        "tokenizer",
        "text_encoder",
        "vae",
        "scheduler",
        "transformer",
        "transformer_2",
    }
    assert vace.to("cpu") is vace and vace.device.type == "cpu"
    # what the video engine reads to size its requests: 8x spatial / 4x temporal VAE, 1 x 2 x 2 patches
    assert (vace.vae_scale_factor_spatial, vace.vae_scale_factor_temporal) == (8, 4)
    assert vace.patch_size_spatial == 2 and vace.num_mask_slots == 2
    with pytest.raises(ValueError, match="num_frames"):
        _run(vace, num_frames=10, mask_video=None)
    with pytest.raises(ValueError, match="multiples of 16"):
        _run(vace, height=40, width=40, mask_video=None)


def test_from_pipe_shares_the_modules_of_a_plain_wan_pipeline(vace):
    wan = tiny_vace_pipeline(seed=0)
    ours = MaskGuidedVACEPipeline.from_pipe(wan, num_mask_slots=2)
    ours.set_progress_bar_config(disable=True)
    assert ours.transformer is wan.transformer and ours.num_mask_slots == 2
    assert torch.equal(_run(ours), _run(vace))


def test_save_pretrained_from_pretrained_round_trip(vace, tmp_path):
    vace.save_pretrained(tmp_path)
    index = json.loads((tmp_path / "model_index.json").read_text())
    assert index["_class_name"] == "MaskGuidedVACEPipeline" and index["num_mask_slots"] == 2
    loaded = MaskGuidedVACEPipeline.from_pretrained(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    assert loaded.num_mask_slots == 2
    assert torch.equal(_run(loaded), _run(vace))
    assert MaskGuidedVACEPipeline.from_pretrained(tmp_path, num_mask_slots=3).num_mask_slots == 3


def test_loads_a_plain_wan_folder_with_the_vae_in_float32(tmp_path):
    tiny_vace_pipeline(seed=0).save_pretrained(tmp_path)  # what a published Wan VACE folder holds
    loaded = MaskGuidedVACEPipeline.from_pretrained(tmp_path, dtype=torch.bfloat16, num_mask_slots=2)
    assert isinstance(loaded, MaskGuidedVACEPipeline) and loaded.num_mask_slots == 2
    assert loaded.transformer.dtype == torch.bfloat16 and loaded.vae.dtype == torch.float32
    assert MaskGuidedVACEPipeline.from_pretrained(tmp_path).num_mask_slots == 4  # the default


def test_model_cpu_offload_gives_the_same_output(vace):
    offloaded = MaskGuidedVACEPipeline(**tiny_vace_components(seed=0), num_mask_slots=2)
    offloaded.set_progress_bar_config(disable=True)
    offloaded.enable_model_cpu_offload(device="cpu")
    assert offloaded._offload_device is not None
    assert all(
        hasattr(offloaded.components[name], "_hf_hook") for name in ("text_encoder", "transformer", "vae")
    )
    assert torch.equal(_run(offloaded), _run(vace))


def test_set_progress_bar_config(capsys):
    pipe = MaskGuidedVACEPipeline(**tiny_vace_components(seed=0), num_mask_slots=2)
    _run(pipe, num_inference_steps=1)
    assert "1/1" in capsys.readouterr().err
    pipe.set_progress_bar_config(disable=True)
    _run(pipe, num_inference_steps=1)
    assert capsys.readouterr().err == ""
