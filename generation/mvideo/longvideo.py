"""Long videos with MVideo: clip by clip, each clip conditioned on the previous one (MVideo, arXiv 2411.08328).

    for chunk in iter_long_video(pipe, "a dog runs", mask_sequence, clip_frames=49):
        writer.write(chunk.frames)                       # (B, n, H, W, C) new frames, constant memory per chunk
    out = generate_long_video(pipe, "a dog runs", mask_sequence, clip_frames=49)   # all frames at once
    seam_metric(out.frames, out.chunk_starts)            # boundary vs within-chunk frame differences

The paper conditions each clip on the previous clip's last frame (appearance) and a low-resolution copy of the
previous clip (motion). How those conditions enter is ours, chosen to work with any MVideo checkpoint
(no extra trained inputs):

- **Chunks overlap by one frame.** Clip n + 1 starts at clip n's last frame: its global frames are
  [s, s + clip_frames) with s = the previous clip's last frame, so each later clip adds clip_frames - 1 new
  frames and the duplicate frame is dropped when stitching. The mask sequence is split the same way (each clip
  gets its own frames, read only when the clip is made); the last clip is shortened to the smallest valid
  length (1 + k * temporal ratio) that covers the rest, its mask padded with its last frame, and the output
  trimmed, so any length works.
- **Appearance: latent anchoring.** The previous clip's last decoded frame is VAE-encoded alone (with a causal
  VAE one frame is exactly one latent frame) and pins latent frame 0 of the next clip: after every denoising
  step that frame is replaced by the anchor noised to the current level, and by the anchor itself at the end
  (`MVideoPipeline(anchor_latents=...)`, inpainting-style replacement). The rest of the clip is denoised
  attending to it, so the new clip continues from the exact appearance where the old one stopped.
- **Motion: low-res previous clip as the starting point.** The previous clip's latents, low-passed
  (area-downsampled by `motion_downsample` latent cells and upsampled back: a low-resolution copy), are
  noised to the level of step (1 - motion_strength) * N and denoising starts there (SDEdit, as CogVideoX's
  video-to-video), so coarse layout and motion carry over while the masks reshape the details.
  `motion_strength=1` turns this off (pure noise start).
- **Constant memory per chunk.** Only one clip's latents, pixels and masks live at a time; the prompt is encoded
  once; `iter_long_video` yields each clip's new frames so a caller can stream them to disk.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from generation.mvideo.pipelines.pipeline_mvideo import (
    MVideoPipeline,
    _is_mask_sequence,
    denoising_steps,
    mask_video_batch,
    to_unit_frames,
)

__all__ = [
    "ChunkSpan",
    "LongVideoChunk",
    "LongVideoOutput",
    "SeamStats",
    "generate_long_video",
    "iter_long_video",
    "long_video_steps",
    "plan_chunks",
    "seam_metric",
]


@dataclass(frozen=True)
class ChunkSpan:
    """One clip of a long video: global frames [start, start + clip_frames), of which [keep_from, stop) are output."""

    index: int
    start: int
    clip_frames: int
    keep_from: int
    stop: int

    @property
    def num_new_frames(self) -> int:
        return self.stop - self.keep_from


def plan_chunks(num_frames: int, clip_frames: int, temporal_compression: int = 4) -> list[ChunkSpan]:
    """Split `num_frames` frames into clips of `clip_frames` (1 + k * temporal) that overlap by one frame."""
    t = temporal_compression
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if clip_frames < 1 + t or (clip_frames - 1) % t:
        raise ValueError(f"clip_frames must be 1 + k * {t} with k >= 1, got {clip_frames}")
    spans: list[ChunkSpan] = []
    start = 0
    while True:
        needed = num_frames - start  # frames this clip must cover, counting its first frame
        length = clip_frames if needed >= clip_frames else 1 + t * max(1, -(-(needed - 1) // t))
        stop = min(start + length, num_frames)
        spans.append(ChunkSpan(len(spans), start, length, start if not spans else start + 1, stop))
        if stop >= num_frames:
            return spans
        start = stop - 1


def long_video_steps(
    num_frames: int,
    clip_frames: int,
    num_inference_steps: int,
    motion_strength: float = 0.9,
    temporal_compression: int = 4,
) -> int:
    """Denoising steps `iter_long_video` runs in all: the first clip runs every step, later clips start from
    the previous clip's low-res latents and run the last `motion_strength` fraction (progress bars' total)."""
    spans = plan_chunks(num_frames, clip_frames, temporal_compression)
    later = denoising_steps(num_inference_steps, motion_strength)
    return num_inference_steps + (len(spans) - 1) * later


@dataclass
class LongVideoChunk:
    """One generated clip: its span, its new frames (B, n, H, W, C) float32 in [0, 1], and its conditions."""

    span: ChunkSpan
    frames: np.ndarray
    latents: torch.Tensor
    anchor_latents: torch.Tensor | None
    init_latents: torch.Tensor | None


@dataclass
class LongVideoOutput:
    """A long video: frames (B, T, H, W, C) float32 in [0, 1], the global index where each later clip's new
    frames begin, and the spans."""

    frames: np.ndarray
    chunk_starts: list[int]
    spans: list[ChunkSpan]


@dataclass(frozen=True)
class SeamStats:
    """Mean absolute frame-to-frame difference across clip boundaries and within clips, and their ratio."""

    boundary: float
    within: float

    @property
    def ratio(self) -> float:
        return self.boundary / self.within if self.within > 0 else float("inf")


def seam_metric(frames: np.ndarray | torch.Tensor, chunk_starts: list[int]) -> SeamStats:
    """Seams of a stitched video (T, H, W, C) or (B, T, H, W, C): the mean |f[s] - f[s-1]| over the chunk
    starts s, against the same over every other consecutive pair. A ratio near 1 means invisible seams."""
    x = torch.as_tensor(np.asarray(frames), dtype=torch.float32)
    if x.ndim == 4:
        x = x[None]
    diffs = (x[:, 1:] - x[:, :-1]).abs().flatten(2).mean(dim=(0, 2))  # (T-1,), diffs[i] = |f[i+1] - f[i]|
    boundary_index = sorted({s - 1 for s in chunk_starts if 0 < s < x.shape[1]})
    is_boundary = torch.zeros(len(diffs), dtype=torch.bool)
    is_boundary[boundary_index] = True
    boundary = float(diffs[is_boundary].mean()) if is_boundary.any() else float("nan")
    within = float(diffs[~is_boundary].mean()) if (~is_boundary).any() else float("nan")
    return SeamStats(boundary, within)


def _mask_frames(
    mask_video: Any, span: ChunkSpan, num_slots: int, total: int, prompt: str
) -> torch.Tensor | None:
    """The clip's mask frames (B, clip_frames, K, H, W), bound to the prompt's phrases and padded with the last
    frame past the end."""
    if mask_video is None:
        return None
    stop = min(span.start + span.clip_frames, total)
    clip = mask_video_batch(mask_video, num_slots, start=span.start, stop=stop, prompt=prompt)
    if clip.shape[1] < span.clip_frames:
        clip = torch.cat([clip, clip[:, -1:].expand(-1, span.clip_frames - clip.shape[1], -1, -1, -1)], dim=1)
    return clip


def _low_pass(latents: torch.Tensor, factor: int) -> torch.Tensor:
    """Area-downsample (B, F, C, h, w) latents by `factor` and upsample back (bilinear): a low-res copy."""
    b, f, c, h, w = latents.shape
    x = latents.reshape(b * f, c, h, w).float()
    if factor > 1:
        small = F.adaptive_avg_pool2d(x, (max(1, h // factor), max(1, w // factor)))
        x = F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)
    return x.reshape(b, f, c, h, w).to(latents.dtype)


def iter_long_video(
    pipe: MVideoPipeline,
    prompt: str,
    mask_video: Any = None,
    clip_frames: int | None = None,
    *,
    num_frames: int | None = None,
    negative_prompt: str | None = None,
    height: int | None = None,
    width: int | None = None,
    num_inference_steps: int = 50,
    guidance_scale: float = 6.0,
    mask_guidance_scale: float = 1.0,
    anchor_first_frame: bool = True,
    motion_strength: float = 0.9,
    motion_downsample: int = 2,
    generator: torch.Generator | None = None,
    **pipe_kwargs: Any,
) -> Iterator[LongVideoChunk]:
    """Generate a video of any length clip by clip; yields each clip's new frames (see the module docstring).

    Args:
        pipe: an `MVideoPipeline`.
        prompt: one prompt for the whole video.
        mask_video: `MaskSequence` (read clip by clip), or anything else `MVideoPipeline` takes (tensor/array
            (T, K, H, W) / (B, T, K, H, W), list of them or of MaskSequences) of any length; None makes a
            mask-free long video (then `num_frames` is required).
        clip_frames: frames per clip, 1 + k * temporal ratio (default: the transformer's `sample_frames`).
        num_frames: total frames (default: the mask's length).
        anchor_first_frame: pin each later clip's first latent frame to the previous clip's last frame.
        motion_strength: fraction of the steps run from the low-res previous clip (1 = start from noise).
        motion_downsample: latent-cell factor of the low-res copy.
        pipe_kwargs: passed to each `pipe(...)` call (e.g. `mask_guidance_start`, `eta`).
    """
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError("prompt must be a non-empty string")
    if not 0.0 < motion_strength <= 1.0:
        raise ValueError(f"motion_strength must be in (0, 1], got {motion_strength}")
    if motion_downsample < 1:
        raise ValueError(f"motion_downsample must be >= 1, got {motion_downsample}")
    slots = pipe.num_mask_slots
    if mask_video is not None:
        if _is_mask_sequence(mask_video):  # stays lazy: read clip by clip
            mask_frames, mask_height, mask_width = mask_video.num_frames, mask_video.height, mask_video.width
        else:  # in memory already: (B, T, K, H, W)
            mask_video = mask_video_batch(mask_video, slots, prompt=prompt)
            mask_frames, mask_height, mask_width = (
                mask_video.shape[1],
                mask_video.shape[3],
                mask_video.shape[4],
            )
        if num_frames is not None and num_frames != mask_frames:
            raise ValueError(f"num_frames={num_frames} but mask_video has {mask_frames} frames")
        num_frames = mask_frames
        height, width = height or mask_height, width or mask_width
    if num_frames is None:
        raise ValueError("num_frames is required when mask_video is None")
    clip_frames = clip_frames or pipe.transformer.config.sample_frames
    spans = plan_chunks(num_frames, clip_frames, pipe.vae_scale_factor_temporal)

    device = pipe._execution_device
    with torch.no_grad():  # inference: no autograd graph of the text encoder kept for the whole video
        prompt_embeds, negative_prompt_embeds = pipe.encode_prompt(
            prompt,
            negative_prompt,
            do_classifier_free_guidance=guidance_scale > 1.0,
            num_videos_per_prompt=pipe_kwargs.pop("num_videos_per_prompt", 1),
            max_sequence_length=pipe_kwargs.pop("max_sequence_length", None)
            or pipe.transformer.config.max_text_seq_length,
            device=device,
        )
    previous_latents: torch.Tensor | None = None
    last_frame: torch.Tensor | None = None
    for span in spans:
        anchor = init = None
        strength = 1.0
        if previous_latents is not None:
            if anchor_first_frame:
                with torch.no_grad():
                    anchor = pipe.encode_video(last_frame[:, None])  # (B, 1, C, h, w)
            if motion_strength < 1.0:
                frames = (span.clip_frames - 1) // pipe.vae_scale_factor_temporal + 1
                init = _low_pass(previous_latents[:, -frames:], motion_downsample)
                strength = motion_strength
        latents = pipe(
            prompt_embeds=prompt_embeds,
            negative_prompt_embeds=negative_prompt_embeds,
            mask_video=_mask_frames(mask_video, span, slots, num_frames, prompt),
            num_frames=span.clip_frames,
            height=height,
            width=width,
            num_inference_steps=num_inference_steps,
            guidance_scale=guidance_scale,
            mask_guidance_scale=mask_guidance_scale,
            generator=generator,
            init_latents=init,
            strength=strength,
            anchor_latents=anchor,
            output_type="latent",
            **pipe_kwargs,
        ).frames  # (B, F, C, h, w)
        with torch.no_grad():
            clip = to_unit_frames(pipe.decode_latents(latents))  # (B, clip_frames, C, H, W)
        last_frame = clip[:, -1]  # (B, C, H, W); every clip but the last is full length
        new = clip[:, span.keep_from - span.start : span.stop - span.start]
        yield LongVideoChunk(
            span=span,
            frames=new.permute(0, 1, 3, 4, 2).cpu().numpy(),
            latents=latents,
            anchor_latents=anchor,
            init_latents=init,
        )
        previous_latents = latents


def generate_long_video(
    pipe: MVideoPipeline, prompt: str, mask_video: Any = None, clip_frames: int | None = None, **kwargs: Any
) -> LongVideoOutput:
    """All frames of `iter_long_video` stitched: (B, T, H, W, C) float32 in [0, 1], T = the mask's length."""
    chunks = []
    spans = []
    for chunk in iter_long_video(pipe, prompt, mask_video, clip_frames, **kwargs):
        chunks.append(chunk.frames)
        spans.append(chunk.span)
    return LongVideoOutput(np.concatenate(chunks, axis=1), [span.keep_from for span in spans[1:]], spans)
