"""Long-video benchmark for MVideo on tiny components: seams and per-chunk memory, 2-chunk vs 6-chunk videos.

    python -m benchmarks.mvideo_longvideo                     # long-video figures (about 10 s on 2 CPU cores)
    python -m benchmarks.mvideo_longvideo --mask-encoder-cost # MaskEncoder vs VAE-encoding masks (minutes: a CogVideoX-2b VAE on CPU)

Printed ratios and their baselines:
- per-chunk peak tensor memory of a 6-chunk video / that of a 2-chunk video (constant memory: 1.00), and
  a one-shot clip as long as the 6-chunk video / one chunk (what chunking saves);
- seam ratio = mean |frame difference| across clip boundaries / within clips, for our continuation
  (last-frame anchor + low-res motion init) against independent clips (no conditioning) as the baseline.
The tiny model is random: seams measure the mechanism (the anchor makes clip n+1 start where clip n ended),
not visual quality; run the same script against the embedded shapes-world model for quality.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from generation.mvideo import MVideoPipeline
from generation.mvideo.longvideo import iter_long_video, seam_metric
from generation.mvideo.pipelines.testing import PeakTensorMemory, tiny_mask_video, tiny_mvideo_components
from libs.media import MaskObject, MaskSequence

CLIP = 9


def _mask_sequence(num_frames: int) -> MaskSequence:
    """Two moving squares as a MaskSequence (the long-video input: read clip by clip, never held whole)."""
    masks = tiny_mask_video(num_frames=num_frames)[0]  # (T, 2, H, W)
    id_maps = torch.where(masks[:, 0] > 0, 1, torch.where(masks[:, 1] > 0, 2, 0)).numpy().astype(np.int32)
    return MaskSequence.from_id_maps(id_maps, [MaskObject(1, "red square"), MaskObject(2, "ball")], fps=8)


def _long_video(pipe: MVideoPipeline, num_frames: int, **kwargs):
    """Frames, chunk starts, per-chunk peak tensor bytes and seconds."""
    masks = _mask_sequence(num_frames)
    chunks, peaks, seconds = [], [], []
    iterator = iter_long_video(
        pipe,
        "a red square moves right",
        masks,
        clip_frames=CLIP,
        num_inference_steps=4,
        guidance_scale=3.0,
        generator=torch.Generator().manual_seed(0),
        **kwargs,
    )
    while True:
        start = time.perf_counter()
        with PeakTensorMemory() as memory:
            chunk = next(iterator, None)
        if chunk is None:
            break
        seconds.append(time.perf_counter() - start)
        peaks.append(memory.peak)
        chunks.append(chunk)
    frames = torch.cat([torch.from_numpy(c.frames) for c in chunks], dim=1)
    return frames, [c.span.keep_from for c in chunks[1:]], peaks, seconds


def long_video_report() -> None:
    torch.set_num_threads(1)
    pipe = MVideoPipeline(**tiny_mvideo_components(seed=0))
    pipe.set_progress_bar_config(disable=True)
    six = 1 + 6 * (CLIP - 1)
    results = {}
    for name, frames in (("2 chunks", 1 + 2 * (CLIP - 1)), ("6 chunks", six)):
        results[name] = _long_video(pipe, frames, motion_strength=0.75)
        video, starts, peaks, seconds = results[name]
        seams = seam_metric(video, starts)
        print(
            f"{name}: {video.shape[1]} frames, per-chunk peak tensor memory "
            f"{[round(p / 1024) for p in peaks]} KiB, {sum(seconds) / len(seconds):.3f} s/chunk, "
            f"seam ratio {seams.ratio:.2f} (boundary {seams.boundary:.4f}, within {seams.within:.4f})"
        )
    per_chunk_2 = max(results["2 chunks"][2])
    per_chunk_6 = max(results["6 chunks"][2])
    print(
        f"ratio per-chunk peak, 6 chunks / 2 chunks: {per_chunk_6 / per_chunk_2:.2f} (constant memory = 1.00)"
    )

    with PeakTensorMemory() as one_shot:
        pipe(
            "a red square moves right",
            mask_video=tiny_mask_video(num_frames=six),
            num_inference_steps=4,
            guidance_scale=3.0,
            output_type="np",
            generator=torch.Generator().manual_seed(0),
        )
    print(
        f"ratio one-shot {six}-frame clip / one chunk, peak tensor memory: {one_shot.peak / per_chunk_6:.2f}"
    )

    independent = _long_video(pipe, six, anchor_first_frame=False, motion_strength=1.0)
    ours = seam_metric(results["6 chunks"][0], results["6 chunks"][1])
    baseline = seam_metric(independent[0], independent[1])
    print(
        f"seam ratio, anchored continuation {ours.ratio:.2f} vs independent clips {baseline.ratio:.2f}: "
        f"ratio {ours.ratio / baseline.ratio:.2f} (< 1 = smoother seams than the baseline)"
    )


def _time(fn, repeats: int = 3) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def mask_encoder_cost_report(threads: int = 1) -> None:
    """Parameters and seconds to encode one slot of a mask video: VAE (tiny, CogVideoX-2b config) vs MaskEncoder."""
    from diffusers import AutoencoderKLCogVideoX

    from generation.mvideo.models.mask_encoder import MaskEncoder
    from generation.mvideo.pipelines.testing import tiny_vae

    torch.set_num_threads(threads)
    realistic = AutoencoderKLCogVideoX().eval()  # CogVideoX-2b's config (random weights)
    encoders = {
        "CogVideoX VAE, tiny test config": tiny_vae(),
        "CogVideoX VAE, CogVideoX-2b config": realistic,
    }
    ours = MaskEncoder().eval()  # defaults: 4 slots, 16 channels, 8x / 4x
    sizes = [(9, 64, 64), (9, 240, 360), (49, 480, 720)]
    print(f"threads={threads}; VAE rows: encoder half only, 1 slot as a grey 3-channel video")
    with torch.no_grad():
        for name, vae in encoders.items():
            params = sum(p.numel() for p in vae.encoder.parameters())
            row = []
            for frames, height, width in sizes:
                if frames * height * width > 9 * 240 * 360:
                    row.append("skipped (too slow on CPU)")
                    continue
                x = torch.rand(1, 3, frames, height, width) * 2 - 1
                row.append(f"{_time(lambda vae=vae, x=x: vae.encode(x), repeats=1):.4f} s")
            print(f"{name}: {params / 1e6:.3f} M params; {dict(zip(sizes, row, strict=True))}")
        params = sum(p.numel() for p in ours.parameters())
        row = []
        for frames, height, width in sizes:
            x = (torch.rand(1, frames, 4, height, width) > 0.5).float()
            row.append(f"{_time(lambda x=x: ours(x)):.4f} s")
        print(
            f"MaskEncoder defaults (4 slots): {params / 1e6:.3f} M params; {dict(zip(sizes, row, strict=True))}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--mask-encoder-cost", action="store_true", help="measure the mask encoder choice instead"
    )
    args = parser.parse_args()
    if args.mask_encoder_cost:
        mask_encoder_cost_report()
    else:
        long_video_report()


if __name__ == "__main__":
    main()
