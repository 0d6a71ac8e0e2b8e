from types import SimpleNamespace

import numpy as np
import PIL.Image
import pytest
import torch
from diffusers import CogVideoXDPMScheduler, CogVideoXPipeline

from generation.mvideo import MVideoPipeline, MVideoPipelineOutput
from generation.mvideo.pipelines.pipeline_mvideo import (
    guidance_weights,
    mask_video_batch,
    mask_window_steps,
    rotary_embeddings,
)
from generation.mvideo.pipelines.testing import (
    randomize_mask_path,
    tiny_mask_video,
    tiny_mvideo_components,
    tiny_transformer,
)
from libs.media import MaskObject, MaskSequence

PROMPT = "a red square moves right"


@pytest.fixture(scope="module")
def pipe():
    pipe = MVideoPipeline(**tiny_mvideo_components(seed=0))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _run(pipe, **kwargs):
    args = dict(
        prompt=PROMPT,
        mask_video=tiny_mask_video(),
        num_inference_steps=2,
        guidance_scale=3.0,
        mask_guidance_scale=1.5,
        generator=torch.Generator().manual_seed(0),
        output_type="latent",
    )
    args.update(kwargs)
    return pipe(**args).frames


class _CallRecorder:
    """Records, per transformer call, the batch size and whether a mask was given."""

    def __init__(self, transformer):
        self.calls = []
        self.handle = transformer.register_forward_pre_hook(self, with_kwargs=True)

    def __call__(self, module, args, kwargs):
        self.calls.append((kwargs["hidden_states"].shape[0], kwargs.get("mask_latents") is not None))

    def close(self):
        self.handle.remove()


def _record(pipe, **kwargs):
    recorder = _CallRecorder(pipe.transformer)
    try:
        _run(pipe, **kwargs)
    finally:
        recorder.close()
    return recorder.calls


def test_output_types(pipe):
    assert _run(pipe).shape == (1, 3, 4, 4, 4)
    video = _run(pipe, output_type="np")
    assert video.shape == (1, 9, 32, 32, 3) and video.min() >= 0 and video.max() <= 1
    assert _run(pipe, output_type="pt").shape == (1, 9, 3, 32, 32)
    frames = _run(pipe, output_type="pil")
    assert len(frames) == 1 and len(frames[0]) == 9 and isinstance(frames[0][0], PIL.Image.Image)
    out = pipe(
        PROMPT, mask_video=tiny_mask_video(), num_inference_steps=1, output_type="latent", return_dict=False
    )
    assert isinstance(out, tuple) and out[0].shape == (1, 3, 4, 4, 4)
    assert isinstance(pipe(PROMPT, num_inference_steps=1, output_type="latent"), MVideoPipelineOutput)


def test_deterministic_with_generator(pipe):
    assert torch.equal(_run(pipe), _run(pipe))


def test_each_guidance_scale_changes_the_output(pipe):
    reference = _run(pipe)
    assert not torch.allclose(reference, _run(pipe, guidance_scale=6.0), atol=1e-4)
    assert not torch.allclose(reference, _run(pipe, mask_guidance_scale=3.0), atol=1e-4)


def test_mask_guidance_zero_equals_no_mask(pipe):
    no_mask = _run(pipe, mask_video=None)
    assert torch.equal(_run(pipe, mask_guidance_scale=0.0), no_mask)
    assert not torch.allclose(_run(pipe, mask_guidance_scale=1.0), no_mask, atol=1e-4)
    # an empty mask window is the same as no mask
    assert torch.equal(_run(pipe, mask_guidance_start=0.0, mask_guidance_end=0.0), no_mask)


def test_batch_is_3x_with_both_guidances_2x_with_one_1x_with_none(pipe):
    assert _record(pipe) == [(3, True)] * 2
    assert _record(pipe, guidance_scale=1.0) == [(2, True)] * 2
    assert _record(pipe, mask_video=None) == [(2, False)] * 2
    assert _record(pipe, mask_guidance_scale=0.0) == [(2, False)] * 2
    assert _record(pipe, guidance_scale=1.0, mask_guidance_scale=1.0) == [(1, True)] * 2
    assert _record(pipe, guidance_scale=1.0, mask_video=None) == [(1, False)] * 2


def test_mask_applied_only_inside_the_schedule_window(pipe):
    calls = _record(pipe, num_inference_steps=4, mask_guidance_start=0.25, mask_guidance_end=0.75)
    assert [with_mask for _, with_mask in calls] == [False, True, True, False]
    assert mask_window_steps(4, 0.0, 0.5) == [True, True, False, False]
    assert mask_window_steps(3, 0.0, 1.0) == [True] * 3


def test_guidance_weights_formula():
    e_u, e_t, e_tm = torch.tensor(1.0), torch.tensor(2.0), torch.tensor(5.0)
    s_text, s_mask = 4.0, 2.5
    w = guidance_weights(s_text, s_mask)
    combined = w["uncond"] * e_u + w["text"] * e_t + w["text_mask"] * e_tm
    assert combined == e_u + s_text * (e_t - e_u) + s_mask * (e_tm - e_t)
    assert guidance_weights(None, None) == {"text": 1.0}
    assert guidance_weights(None, 1.0) == {"text_mask": 1.0}
    assert set(guidance_weights(3.0, None)) == {"uncond", "text"}


@pytest.mark.parametrize("patch_size_t", [None, 2], ids=["cogvideox-1.0", "cogvideox-1.5"])
def test_rotary_embeddings_match_diffusers_cogvideox(patch_size_t):
    transformer = tiny_transformer(
        attention_head_dim=16,
        patch_size_t=patch_size_t,
        use_rotary_positional_embeddings=True,
        sample_width=6,
    )
    cpu = torch.device("cpu")
    ours = rotary_embeddings(transformer.config, 4, 4, 6, cpu)  # latents (F, h, w) = (4, 4, 6)
    host = SimpleNamespace(
        vae_scale_factor_spatial=8, transformer=transformer
    )  # what diffusers' method reads
    theirs = CogVideoXPipeline._prepare_rotary_positional_embeddings(host, 32, 48, 4, cpu)
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs, strict=True))
    assert rotary_embeddings(tiny_transformer().config, 4, 4, 6, cpu) is None


def test_callback_gets_step_indices_tensors_and_previews(pipe):
    seen = []

    def callback(p, step, timestep, kwargs):
        seen.append((step, int(timestep), sorted(kwargs), kwargs.get("preview")))
        return {}

    _run(
        pipe,
        num_inference_steps=3,
        callback_on_step_end=callback,
        callback_on_step_end_tensor_inputs=["latents", "mask_latents"],
        preview_every=2,
    )
    assert [s[0] for s in seen] == [0, 1, 2]
    assert seen[0][1] > seen[1][1] > seen[2][1]
    assert seen[0][2] == ["latents", "mask_latents"] and seen[0][3] is None
    preview = seen[1][3]
    assert seen[1][2] == ["latents", "mask_latents", "preview"]
    assert preview.shape == (1, 9, 3, 16, 16) and 0 <= preview.min() and preview.max() <= 1


def test_callback_can_replace_latents(pipe):
    def zero_latents(p, step, timestep, kwargs):
        return {"latents": torch.zeros_like(kwargs["latents"])}

    assert torch.count_nonzero(_run(pipe, callback_on_step_end=zero_latents)) == 0


def test_mask_sequence_input_and_batches(pipe):
    mask = tiny_mask_video(num_slots=2)[0]  # (T, K, H, W)
    id_maps = (mask[:, 0] * 3 + mask[:, 1] * 5 * (mask[:, 0] == 0)).numpy().astype(np.int32)
    sequence = MaskSequence.from_id_maps(id_maps, [MaskObject(3, "red square"), MaskObject(5, "ball")], fps=8)
    from_sequence = _run(pipe, mask_video=sequence)
    from_tensor = _run(
        pipe, mask_video=(torch.from_numpy(id_maps)[:, None] == torch.tensor([3, 5])[:, None, None])
    )
    assert torch.equal(from_sequence, from_tensor)
    batch = _run(pipe, prompt=[PROMPT, "a blue ball"], mask_video=[sequence, mask], num_videos_per_prompt=2)
    assert batch.shape == (4, 3, 4, 4, 4)


def test_mask_video_batch_reads_a_frame_window_of_every_input_kind():
    mask = tiny_mask_video(num_slots=2)[0]
    id_maps = (mask[:, 0] * 3 + mask[:, 1] * 5 * (mask[:, 0] == 0)).numpy().astype(np.int32)
    sequence = MaskSequence.from_id_maps(id_maps, [MaskObject(3, "red square"), MaskObject(5, "ball")], fps=8)
    slots = (
        torch.from_numpy(id_maps)[:, None] == torch.tensor([3, 5])[:, None, None]
    ).float()  # (T, K, H, W)
    for value in (sequence, slots, slots.numpy(), slots[None], [slots], [slots.numpy()], [sequence]):
        assert torch.equal(mask_video_batch(value, 2), slots[None]), type(value)
        assert torch.equal(mask_video_batch(value, 2, start=2, stop=5), slots[None, 2:5]), type(value)
    with pytest.raises(ValueError, match=r"frame range \[5, 12\)"):
        mask_video_batch(slots, 2, start=5, stop=12)
    with pytest.raises(ValueError, match=r"must be \(B, T, K, H, W\) or \(T, K, H, W\)"):
        mask_video_batch(slots[0], 2)


def test_dpm_scheduler(pipe):
    components = dict(pipe.components)
    components["scheduler"] = CogVideoXDPMScheduler.from_config(pipe.scheduler.config)
    dpm = MVideoPipeline(**components)
    dpm.set_progress_bar_config(disable=True)
    assert _run(dpm, num_inference_steps=3).shape == (1, 3, 4, 4, 4)


def test_anchor_pins_first_latent_frame_and_strength_runs_fewer_steps(pipe):
    anchor = torch.randn(1, 1, 4, 4, 4, generator=torch.Generator().manual_seed(1))
    out = _run(pipe, anchor_latents=anchor)
    assert torch.equal(out[:, :1], anchor)
    calls = _record(pipe, num_inference_steps=4, init_latents=torch.zeros(1, 3, 4, 4, 4), strength=0.5)
    assert len(calls) == 2


@pytest.fixture(scope="module")
def pipe_15():
    """CogVideoX 1.5-style: the transformer patches 2 latent frames at a time (patch_size_t=2, rotary)."""
    components = tiny_mvideo_components(seed=0)
    transformer = tiny_transformer(
        seed=0, patch_size_t=2, use_rotary_positional_embeddings=True, attention_head_dim=16
    )
    randomize_mask_path(transformer)
    components["transformer"] = transformer
    pipe = MVideoPipeline(**components)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_sizes_callers_read_match_the_components(pipe, pipe_15):
    # the same names as on MaskGuidedVACEPipeline: what the video engine reads to size its requests
    assert (pipe.vae_scale_factor_spatial, pipe.vae_scale_factor_temporal) == (8, 4)
    assert pipe.patch_size_spatial == pipe.transformer.config.patch_size == 2
    assert pipe.num_mask_slots == pipe.mask_encoder.config.num_mask_slots == 2
    assert pipe_15.patch_size_spatial == 2


def test_cogvideox_15_anchor_counts_latent_frames_without_the_temporal_padding(pipe_15):
    # 9 frames -> 3 latent frames (odd), padded at the front to 4 = a multiple of patch_size_t
    anchor = torch.randn(1, 3, 4, 4, 4, generator=torch.Generator().manual_seed(1))
    pinned = _run(pipe_15, anchor_latents=anchor)
    assert pinned.shape == (1, 3, 4, 4, 4) and torch.equal(pinned, anchor)
    first = _run(pipe_15, anchor_latents=anchor[:, :1])
    assert first.shape == (1, 3, 4, 4, 4) and torch.equal(first[:, :1], anchor[:, :1])
    assert not torch.equal(first[:, 1:], anchor[:, 1:])
    with pytest.raises(
        ValueError, match=r"`anchor_latents` must be \(B, Fa <= 3, 4, 4, 4\), got \(1, 4, 4, 4, 4\)"
    ):
        _run(pipe_15, anchor_latents=torch.zeros(1, 4, 4, 4, 4))


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"prompt": ""}, "prompt"),
        ({"prompt": ["ok", "  "]}, "prompt"),
        ({"mask_video": tiny_mask_video(num_frames=5), "num_frames": 9}, "mask_video"),
        ({"mask_video": tiny_mask_video(height=64), "height": 32}, "mask_video"),
        ({"mask_video": tiny_mask_video(num_slots=3)}, "mask_video"),
        ({"mask_video": tiny_mask_video() * 2}, "mask_video"),
        ({"num_frames": 8, "mask_video": None}, "num_frames"),
        ({"height": 24}, "height"),
        ({"guidance_scale": -1.0}, "guidance_scale"),
        ({"mask_guidance_scale": -0.5}, "mask_guidance_scale"),
        ({"mask_guidance_start": 0.6, "mask_guidance_end": 0.4}, "mask_guidance_start"),
        ({"mask_guidance_end": 1.5}, "mask_guidance_end"),
        ({"output_type": "gif"}, "output_type"),
        ({"num_inference_steps": 0}, "num_inference_steps"),
        ({"preview_every": 1}, "preview_every"),
        ({"callback_on_step_end_tensor_inputs": ["noise"]}, "callback_on_step_end_tensor_inputs"),
        ({"strength": 0.5}, "strength"),
        ({"prompt": [PROMPT] * 3, "mask_video": tiny_mask_video(batch_size=2)}, "mask_video"),
    ],
)
def test_bad_inputs_raise_value_error_naming_them(pipe, kwargs, name):
    with pytest.raises(ValueError, match=name):
        _run(pipe, **kwargs)


def test_memory_and_attention_options(pipe):
    assert pipe.model_cpu_offload_seq.split("->")[:3] == ["text_encoder", "mask_encoder", "transformer"]
    assert set(pipe.model_cpu_offload_seq.split("->")) <= set(pipe.components)
    pipe.enable_vae_tiling()
    pipe.enable_vae_slicing()
    assert pipe.vae.use_tiling and pipe.vae.use_slicing
    pipe.disable_vae_tiling()
    pipe.disable_vae_slicing()
    assert not pipe.vae.use_tiling and not pipe.vae.use_slicing
    with pytest.raises(ValueError, match="xformers"):
        pipe.enable_xformers_memory_efficient_attention()


def test_save_load_round_trip(pipe, tmp_path):
    pipe.save_pretrained(tmp_path)
    loaded = MVideoPipeline.from_pretrained(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    assert type(loaded.transformer).__name__ == "MVideoTransformer3DModel"
    assert type(loaded.mask_encoder).__name__ == "MaskEncoder"
    assert torch.equal(_run(pipe), _run(loaded))


def test_precomputed_prompt_embeds_match_the_prompt(pipe):
    with torch.no_grad():
        embeds, negative = pipe.encode_prompt(PROMPT, None, True, max_sequence_length=16)
    reused = _run(pipe, prompt=None, prompt_embeds=embeds, negative_prompt_embeds=negative)
    assert torch.equal(reused, _run(pipe))
    pair = _run(
        pipe, prompt=None, prompt_embeds=embeds, negative_prompt_embeds=negative, num_videos_per_prompt=2
    )
    assert pair.shape[0] == 2 and torch.equal(pair[:1], _run(pipe, num_videos_per_prompt=2)[:1])


def test_mask_sequences_are_bound_to_the_prompt_phrases_by_their_labels():
    from generation.mvideo.pipelines.pipeline_mvideo import mask_video_batch

    id_maps = np.zeros((2, 4, 4), dtype=np.int32)
    id_maps[:, 0, 0] = 1  # the circle
    id_maps[:, 3, 3] = 2  # the square
    seq = MaskSequence.from_id_maps(id_maps, [MaskObject(1, "red circle"), MaskObject(2, "blue square")], 8.0)
    unbound = mask_video_batch(seq, 3)
    assert unbound[0, 0, 0, 0, 0] == 1  # ascending ids without a prompt
    bound = mask_video_batch(seq, 3, prompt="a blue square and a red circle")
    assert bound[0, 0, 0, 3, 3] == 1 and bound[0, 0, 1, 0, 0] == 1
    # tensors bind through mask_labels; without labels the order is kept
    assert torch.equal(mask_video_batch(unbound, 3, prompt="a blue square and a red circle"), unbound)
    relabelled = mask_video_batch(
        unbound, 3, prompt="a blue square", mask_labels=["red circle", "blue square"]
    )
    assert relabelled[0, 0, 0, 3, 3] == 1 and relabelled[0, 0, 1, 0, 0] == 1
