import numpy as np
import pytest
import torch

from generation.mvideo import MVideoPipeline
from generation.mvideo.longvideo import (
    _low_pass,
    generate_long_video,
    iter_long_video,
    long_video_steps,
    plan_chunks,
    seam_metric,
)
from generation.mvideo.pipelines.testing import tiny_mask_video, tiny_mvideo_components
from libs.media import MaskObject, MaskSequence


@pytest.fixture(scope="module")
def pipe():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: one thread avoids OpenMP spinning on the 2 shared cores
    pipe = MVideoPipeline(**tiny_mvideo_components(seed=0))
    pipe.set_progress_bar_config(disable=True)
    yield pipe
    torch.set_num_threads(threads)


def _generate(pipe, num_frames, **kwargs):
    args = dict(
        clip_frames=9, num_inference_steps=2, guidance_scale=2.0, generator=torch.Generator().manual_seed(0)
    )
    args.update(kwargs)
    return list(iter_long_video(pipe, "a red square", tiny_mask_video(num_frames=num_frames)[0], **args))


@pytest.mark.parametrize(
    ("num_frames", "clips", "last_clip"),
    [(9, 1, 9), (7, 1, 9), (10, 2, 5), (17, 2, 9), (23, 3, 9), (26, 4, 5)],
)
def test_plan_covers_any_length_with_one_frame_overlap(num_frames, clips, last_clip):
    spans = plan_chunks(num_frames, clip_frames=9, temporal_compression=4)
    assert len(spans) == clips and spans[-1].clip_frames == last_clip
    assert sum(s.num_new_frames for s in spans) == num_frames
    for before, after in zip(spans, spans[1:], strict=False):
        assert after.start == before.stop - 1 and after.keep_from == before.stop


@pytest.mark.parametrize(("num_frames", "clips"), [(9, 1), (14, 2), (23, 3)])
def test_output_length_and_chunk_count(pipe, num_frames, clips):
    out = generate_long_video(
        pipe, "a red square", tiny_mask_video(num_frames=num_frames)[0], clip_frames=9, num_inference_steps=1
    )
    assert out.frames.shape == (1, num_frames, 32, 32, 3)
    assert len(out.spans) == clips and len(out.chunk_starts) == clips - 1


@pytest.mark.parametrize("motion_strength", [1.0, 0.5])
def test_long_video_steps_counts_every_step_callback(pipe, motion_strength):
    seen = []

    def count(pipe, step, timestep, kwargs):
        seen.append(step)
        return {}

    _generate(pipe, 23, num_inference_steps=4, motion_strength=motion_strength, callback_on_step_end=count)
    assert len(seen) == long_video_steps(23, 9, 4, motion_strength, temporal_compression=4)
    assert long_video_steps(23, 9, 4, 1.0) == 3 * 4 and long_video_steps(23, 9, 4, 0.5) == 4 + 2 * 2


def test_next_clip_is_anchored_on_the_previous_clips_last_frame(pipe):
    first, second = _generate(pipe, 17, motion_strength=1.0)
    last = torch.from_numpy(first.frames[:, -1]).permute(0, 3, 1, 2)  # (B, C, H, W)
    expected_anchor = pipe.encode_video(last[:, None])
    torch.testing.assert_close(second.anchor_latents, expected_anchor, rtol=1e-4, atol=1e-5)
    assert torch.equal(second.latents[:, :1], second.anchor_latents.to(second.latents.dtype))
    assert first.anchor_latents is None and second.init_latents is None
    assert not second.anchor_latents.requires_grad  # inference keeps no autograd graph across clips
    unanchored = _generate(pipe, 17, motion_strength=1.0, anchor_first_frame=False)[1]
    assert unanchored.anchor_latents is None
    assert not torch.allclose(unanchored.latents[:, :1], second.latents[:, :1])


def test_motion_condition_is_the_low_res_previous_clip(pipe):
    first, second = _generate(pipe, 17, motion_strength=0.5, motion_downsample=2)
    assert torch.equal(second.init_latents, _low_pass(first.latents, 2))
    low = second.init_latents[0, 0, 0]  # 4 x 4 latent grid from 2 x 2 cells: smooth, not the original
    assert not torch.allclose(low, first.latents[0, 0, 0])
    assert not torch.allclose(second.latents, _generate(pipe, 17, motion_strength=1.0)[1].latents)


class _CountingSequence:
    """A MaskSequence proxy that counts frame reads."""

    def __init__(self, sequence):
        self._sequence = sequence
        self.reads = []

    def __getattr__(self, name):
        return getattr(self._sequence, name)

    def id_map(self, t):
        self.reads.append(t)
        return self._sequence.id_map(t)


def test_memory_per_chunk_is_independent_of_total_length(pipe):
    """Per chunk: the same tensor sizes through the transformer and VAE, and only the chunk's mask frames read."""
    sizes = []
    hooks = [
        pipe.transformer.register_forward_pre_hook(
            lambda m, a, kw: sizes.append(("transformer", tuple(kw["hidden_states"].shape))), with_kwargs=True
        ),
        pipe.vae.decoder.register_forward_pre_hook(lambda m, a: sizes.append(("decode", tuple(a[0].shape)))),
    ]

    def per_chunk_peaks(num_frames):
        masks = tiny_mask_video(num_frames=num_frames)[0]
        ids = (masks[:, 0] * 1 + masks[:, 1] * 2 * (masks[:, 0] == 0)).numpy().astype(np.int32)
        sequence = _CountingSequence(MaskSequence.from_id_maps(ids, [MaskObject(1), MaskObject(2)], fps=8))
        peaks = []
        for chunk in iter_long_video(pipe, "a red square", sequence, clip_frames=9, num_inference_steps=1):
            peaks.append((max(s for _, s in sizes), len(sequence.reads)))
            assert len(sequence.reads) <= 9 and set(sequence.reads) <= set(
                range(chunk.span.start, chunk.span.stop)
            )
            sizes.clear()
            sequence.reads.clear()
        return peaks

    try:
        short, long = per_chunk_peaks(17), per_chunk_peaks(41)
    finally:
        for hook in hooks:
            hook.remove()
    assert len(short) == 2 and len(long) == 5
    assert set(short) == set(long) == {short[0]}


def test_every_mask_input_the_pipeline_takes_makes_the_same_long_video(pipe):
    masks = tiny_mask_video(num_frames=14)[0]
    ids = (masks[:, 0] * 1 + masks[:, 1] * 2 * (masks[:, 0] == 0)).numpy().astype(np.int32)
    sequence = MaskSequence.from_id_maps(ids, [MaskObject(1), MaskObject(2)], fps=8)
    slots = (torch.from_numpy(ids)[:, None] == torch.tensor([1, 2])[:, None, None]).float()  # (T, K, H, W)

    def latents(mask_video):
        chunks = iter_long_video(
            pipe,
            "a red square",
            mask_video,
            clip_frames=9,
            num_inference_steps=1,
            generator=torch.Generator().manual_seed(0),
        )
        return [chunk.latents for chunk in chunks]

    expected = latents(sequence)
    for mask_video in (slots, slots.numpy(), slots[None], [slots], [sequence]):
        assert all(torch.equal(a, b) for a, b in zip(latents(mask_video), expected, strict=True))
    # the pipeline's own check and message
    with pytest.raises(
        ValueError, match=r"mask_video must be \(B, T, K, H, W\) or \(T, K, H, W\), got shape"
    ):
        next(iter_long_video(pipe, "a red square", slots[:, 0], clip_frames=9))


def test_seam_metric():
    frames = np.zeros((9, 2, 2, 3), dtype=np.float32)
    frames[:, :, :, 0] = np.arange(9)[:, None, None] * 0.1  # constant motion: no seam
    assert seam_metric(frames, [5]).ratio == pytest.approx(1.0)
    frames[5:, :, :, 0] += 0.5  # a jump at frame 5
    stats = seam_metric(frames[None], [5])
    assert stats.boundary > stats.within and stats.ratio == pytest.approx((0.1 + 0.5) / 0.1, rel=1e-5)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"prompt": " "}, "prompt"),
        ({"clip_frames": 8}, "clip_frames"),
        ({"num_frames": 12}, "num_frames"),
        ({"motion_strength": 0.0}, "motion_strength"),
    ],
)
def test_bad_arguments_raise(pipe, kwargs, message):
    args = {"prompt": "a red square", "mask_video": tiny_mask_video(num_frames=13)[0], "clip_frames": 9}
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        next(iter_long_video(pipe, **args))
