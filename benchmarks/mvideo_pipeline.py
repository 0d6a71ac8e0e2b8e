"""MVideo pipeline overhead on tiny components: mask conditioning vs plain CogVideoX, long video vs one clip.

    OMP_NUM_THREADS=1 python -m benchmarks.mvideo_pipeline            # 30-60 s on 1 thread
    OMP_NUM_THREADS=1 python -m benchmarks.mvideo_pipeline --repeats 31 --stat min   # on a busy machine

Everything runs in one process on the same tiny random components (`tiny_mvideo_components(seed=0)`: T5 with 2
layers, a 4-block CogVideoX VAE, a 1-layer transformer; 9 frames of 32 x 32), same prompt, steps and text
guidance (`guidance_scale=6`). Each time is the median (`--stat`) of `--repeats` runs after one warm-up run;
the cases run round-robin (one run of each per round), so load from other processes hits all of them alike.
The "noise" line gives the runs' spread, so that a busy machine shows: raise `--repeats` there, or take
`--stat min` (load from other processes only ever adds time, so the fastest run is the least disturbed one).
Tests never assert these times; compare ratios from one run, not absolute seconds across machines.

Baseline: diffusers' `CogVideoXPipeline(tokenizer, text_encoder, vae, transformer, scheduler)` with a plain
`CogVideoXTransformer3DModel` built from the MVideo transformer's config and loaded (strict) from its state
dict minus `mask_embed.*`: the same weights, diffusers' code. The script first checks that it gives the same
latents as `MVideoPipeline` without a mask (it stops otherwise), so both compute the same thing.

Pipeline ratios, `ratio <case>/CogVideoXPipeline`: time of the case / time of the baseline, end to end
(`output_type="np"`) and, in brackets, up to the latents (`output_type="latent"`: text encoding + denoising,
no VAE decode). The "transformer rows/step" column is counted with a forward hook, not assumed.

- `mvideo (no mask)`: same transformer batch as the baseline (2 rows a step: negative and positive prompt),
  expected 1.00; anything above it is our pipeline's own per-step overhead.
- `mvideo+mask(s_mask=1)`: eps = e_u + s_text (e_t - e_u) + s_mask (e_tm - e_t) has the weights (-5, 5, 1) on
  (uncond, text, text+mask) for s_text = 6, s_mask = 1, so with text CFG on this is three branches, not two:
  3 rows a step, plus the mask encoder once per call. Expected 1.5x where the transformer dominates (real
  models: 50 steps of a 2B/5B transformer); less here.
- `mvideo+mask(s_mask=2)`: also three branches, expected as s_mask=1 (s_mask only changes the weights).
- `mvideo+mask(s_mask=s_text=6)`: the text-only branch's weight s_text - s_mask is 0 and it is skipped: 2 rows
  a step, expected 1.0x plus the mask encoder: the one setting with text CFG and masks at the baseline's
  batch.

On the tiny components the VAE decode of 9 frames costs about as much as all the denoising steps together,
and a 1-layer transformer with 32 channels is dominated by per-op overhead, not arithmetic, so the pipeline
ratios stay well below 1.5. `ratio transformer forward ...` isolates one denoising step: the MVideo
transformer with 2 rows and no mask / the plain one with 2 rows (expected 1.00: `mask_latents=None` skips the
mask path), and with 3 rows and masks / plain with 2 rows (1.50 if compute-bound; near 1 when per-op overhead
dominates).

Long video (`iter_long_video`, a mask video of 49 frames = 6 clips of 9 overlapping by one frame, text CFG and
mask guidance 1 as above) against a single 9-frame clip through the same function (one chunk, no
continuation):

- `ratio long-video s/frame / single-chunk s/frame`. Every later clip is a full 9-frame clip that adds only
  8 new frames (its first frame is the previous clip's last), runs only round(motion_strength x steps)
  denoising steps (it starts from the low-res previous clip, SDEdit-style), adds one VAE encode of a single
  frame (the anchor) and reuses the prompt embeddings. With K clips of C frames and a later clip costing r
  times the first one: ratio = C / (1 + K (C - 1)) x (1 + (K - 1) r) = 9/49 x (1 + 5 r) here. r = 1 gives
  54/49 = 1.10 (and C / (C - 1) = 1.125 for very long videos); r = motion_strength = 0.9 (denoising-bound
  real models) gives 1.01. On the tiny components the VAE decode, which is not shortened, is a large share, so
  r is near 1 and the ratio near 1.1. The per-chunk times and the measured r are printed.
"""

from __future__ import annotations

import argparse
import inspect
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from diffusers import CogVideoXPipeline, CogVideoXTransformer3DModel

from generation.mvideo import MVideoPipeline
from generation.mvideo.longvideo import iter_long_video, plan_chunks
from generation.mvideo.pipelines.pipeline_mvideo import denoising_steps
from generation.mvideo.pipelines.testing import tiny_mask_video, tiny_mvideo_components

PROMPT = "a red square moves right"
CLIP = 9
GUIDANCE = 6.0
BASELINE = "CogVideoXPipeline"
Stat = Callable[[list[float]], float]
"""How the repeats of one case become one time: `statistics.median` (default) or `min`."""
STATISTICS: dict[str, Stat] = {"median": statistics.median, "min": min}


def plain_cogvideox_transformer(transformer: CogVideoXTransformer3DModel) -> CogVideoXTransformer3DModel:
    """diffusers' `CogVideoXTransformer3DModel` with the MVideo transformer's weights minus the mask path."""
    names = set(inspect.signature(CogVideoXTransformer3DModel.__init__).parameters) - {"self"}
    plain = CogVideoXTransformer3DModel(**{k: v for k, v in transformer.config.items() if k in names})
    state = {k: v for k, v in transformer.state_dict().items() if not k.startswith("mask_embed.")}
    plain.load_state_dict(state, strict=True)
    dtype = next(transformer.parameters()).dtype
    return (plain if dtype == torch.float32 else plain.to(dtype)).eval()


def cogvideox_pipeline(components: dict[str, Any]) -> CogVideoXPipeline:
    """diffusers' `CogVideoXPipeline` on the MVideo components (its own scheduler: schedulers hold state)."""
    scheduler = components["scheduler"]
    pipe = CogVideoXPipeline(
        tokenizer=components["tokenizer"],
        text_encoder=components["text_encoder"],
        vae=components["vae"],
        transformer=plain_cogvideox_transformer(components["transformer"]),
        scheduler=type(scheduler).from_config(scheduler.config),
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _round_robin(cases: dict[str, Callable[[], Any]], repeats: int) -> dict[str, list[float]]:
    """Seconds of each case: one warm-up run each, then `repeats` rounds running every case once."""
    for fn in cases.values():
        fn()
    seconds: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeats):
        for name, fn in cases.items():
            start = time.perf_counter()
            fn()
            seconds[name].append(time.perf_counter() - start)
    return seconds


def _spread(times: list[float]) -> float:
    """Interquartile range / median: how noisy a case's runs were (load from other processes)."""
    q1, q2, q3 = statistics.quantiles(times, n=4) if len(times) > 1 else (times[0],) * 3
    return (q3 - q1) / q2


def _transformer_rows(transformer: torch.nn.Module, fn: Callable[[], Any]) -> list[int]:
    """Batch rows of every transformer forward during `fn()`."""
    rows: list[int] = []

    def hook(module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        hidden = kwargs.get("hidden_states", args[0] if args else None)
        rows.append(int(hidden.shape[0]))

    handle = transformer.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        fn()
    finally:
        handle.remove()
    return rows


def transformer_report(
    mvideo: MVideoPipeline, cog: CogVideoXPipeline, repeats: int, stat: Stat, calls: int = 20
) -> None:
    """Seconds of one transformer forward (one denoising step) as each pipeline batches it."""
    config = mvideo.transformer.config
    spatial = mvideo.vae_scale_factor_spatial
    shape = mvideo.latent_shape(1, CLIP, config.sample_height * spatial, config.sample_width * spatial)
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(shape, generator=generator)
    text = torch.randn(1, config.max_text_seq_length, config.text_embed_dim, generator=generator)
    mask = torch.randn(shape[0], shape[1], config.mask_in_channels, *shape[3:], generator=generator)

    def forward(model: torch.nn.Module, rows: int, mask_latents: torch.Tensor | None) -> Callable[[], None]:
        inputs = dict(
            hidden_states=latents.expand(rows, *shape[1:]),
            encoder_hidden_states=text.expand(rows, -1, -1),
            timestep=torch.full((rows,), 500),
            return_dict=False,
        )
        if mask_latents is not None:
            inputs["mask_latents"] = mask_latents

        def fn() -> None:
            with torch.no_grad():
                for _ in range(calls):
                    model(**inputs)

        return fn

    three_masks = torch.cat([torch.zeros_like(mask), torch.zeros_like(mask), mask])
    cases = {
        "plain, 2 rows": forward(cog.transformer, 2, None),
        "mvideo, 2 rows, no mask": forward(mvideo.transformer, 2, None),
        "mvideo, 3 rows, masks": forward(mvideo.transformer, 3, three_masks),
    }
    ms = {name: stat(t) / calls * 1e3 for name, t in _round_robin(cases, repeats).items()}
    print("transformer forward (one step): " + ", ".join(f"{name} {v:.3f} ms" for name, v in ms.items()))
    base = ms["plain, 2 rows"]
    no_mask, masks = ms["mvideo, 2 rows, no mask"] / base, ms["mvideo, 3 rows, masks"] / base
    print(
        f"ratio transformer forward mvideo 2 rows (no mask) / plain 2 rows: {no_mask:.2f}; "
        f"mvideo 3 rows (masks) / plain 2 rows: {masks:.2f} (compute-bound: 1.50)"
    )


def pipeline_report(steps: int, repeats: int, stat: Stat = statistics.median) -> None:
    components = tiny_mvideo_components(seed=0)
    mvideo = MVideoPipeline(**components)
    mvideo.set_progress_bar_config(disable=True)
    cog = cogvideox_pipeline(components)
    mask = tiny_mask_video(num_frames=CLIP)
    common = dict(num_frames=CLIP, num_inference_steps=steps, guidance_scale=GUIDANCE)

    def call(pipe: Any, output_type: str, **kwargs: Any) -> Callable[[], Any]:
        extra = {"max_sequence_length": pipe.transformer.config.max_text_seq_length} if pipe is cog else {}
        return lambda: pipe(
            PROMPT,
            output_type=output_type,
            generator=torch.Generator().manual_seed(0),
            **common,
            **extra,
            **kwargs,
        )

    variants: dict[str, tuple[Any, dict[str, Any]]] = {
        BASELINE: (cog, {}),
        "mvideo (no mask)": (mvideo, {}),
        "mvideo+mask(s_mask=1)": (mvideo, {"mask_video": mask, "mask_guidance_scale": 1.0}),
        "mvideo+mask(s_mask=2)": (mvideo, {"mask_video": mask, "mask_guidance_scale": 2.0}),
        f"mvideo+mask(s_mask=s_text={GUIDANCE:g})": (
            mvideo,
            {"mask_video": mask, "mask_guidance_scale": GUIDANCE},
        ),
    }

    same = (call(cog, "latent")().frames - call(mvideo, "latent")().frames).abs().max().item()
    if same > 1e-4:
        raise RuntimeError(f"baseline and MVideo without a mask differ (max |latents diff| {same:.2e})")
    print(
        f"steps={steps}, repeats={repeats} ({stat.__name__}), threads={torch.get_num_threads()}, "
        f"{CLIP} frames of 32x32, guidance_scale={GUIDANCE:g}; baseline check: max |latents diff| "
        f"{BASELINE} vs mvideo (no mask) {same:.1e}"
    )

    cases = {}
    for name, (pipe, kwargs) in variants.items():
        cases[name] = call(pipe, "np", **kwargs)
        cases[name + " [latent]"] = call(pipe, "latent", **kwargs)
    runs = _round_robin(cases, repeats)
    seconds = {name: stat(times) for name, times in runs.items()}
    base, base_latent = seconds[BASELINE], seconds[BASELINE + " [latent]"]
    spreads = [_spread(times) for times in runs.values()]
    print(
        f"noise: interquartile range / median of a case's runs, median over the cases "
        f"{statistics.median(spreads):.0%}, worst {max(spreads):.0%} (ratio differences below that are noise)"
    )
    for name, (pipe, kwargs) in variants.items():
        rows = _transformer_rows(pipe.transformer, call(pipe, "latent", **kwargs))
        per_step = "/".join(str(r) for r in sorted(set(rows)))
        print(
            f"{name}: {seconds[name]:.4f} s end to end, {seconds[name + ' [latent]']:.4f} s to latents, "
            f"transformer rows/step {per_step}"
        )
    for name in list(variants)[1:]:
        print(
            f"ratio {name}/{BASELINE}: {seconds[name] / base:.2f} "
            f"(to latents: {seconds[name + ' [latent]'] / base_latent:.2f})"
        )
    transformer_report(mvideo, cog, repeats, stat)


def long_video_report(
    steps: int, repeats: int, motion_strength: float, stat: Stat = statistics.median
) -> None:
    pipe = MVideoPipeline(**tiny_mvideo_components(seed=0))
    pipe.set_progress_bar_config(disable=True)
    long_frames = 1 + 6 * (CLIP - 1)
    spans = plan_chunks(long_frames, CLIP, pipe.vae_scale_factor_temporal)
    masks = {"single": tiny_mask_video(num_frames=CLIP), "long": tiny_mask_video(num_frames=long_frames)}
    chunk_seconds: dict[str, list[list[float]]] = {"single": [], "long": []}
    new_frames: dict[str, int] = {}

    def run(name: str) -> Callable[[], None]:
        def fn() -> None:
            iterator = iter_long_video(
                pipe,
                PROMPT,
                masks[name],
                clip_frames=CLIP,
                num_inference_steps=steps,
                guidance_scale=GUIDANCE,
                motion_strength=motion_strength,
                generator=torch.Generator().manual_seed(0),
            )
            seconds, frames = [], 0
            while True:
                start = time.perf_counter()
                chunk = next(iterator, None)
                if chunk is None:
                    break
                seconds.append(time.perf_counter() - start)
                frames += chunk.frames.shape[1]
            chunk_seconds[name].append(seconds)
            new_frames[name] = frames

        return fn

    _round_robin({"single": run("single"), "long": run("long")}, repeats)
    timed = {name: runs[1:] for name, runs in chunk_seconds.items()}  # drop the warm-up run
    total = {name: stat([sum(r) for r in runs]) for name, runs in timed.items()}
    per_chunk = [stat([r[i] for r in timed["long"]]) for i in range(len(spans))]
    later_steps = denoising_steps(steps, motion_strength)
    per_frame = {name: total[name] / new_frames[name] for name in total}
    print(
        f"long video: {new_frames['long']} frames in {len(spans)} clips of {CLIP} (new frames "
        f"{[s.num_new_frames for s in spans]}), steps {steps} then {later_steps} a clip "
        f"(motion_strength={motion_strength:g}); {total['long']:.4f} s, {per_frame['long']:.5f} s/frame"
    )
    print(
        f"long video per-chunk s: {[round(s, 4) for s in per_chunk]}; later/first chunk "
        f"r = {statistics.median(per_chunk[1:]) / per_chunk[0]:.2f}"
    )
    print(
        f"single chunk: {new_frames['single']} frames, {total['single']:.4f} s, "
        f"{per_frame['single']:.5f} s/frame"
    )
    print(f"ratio long-video s/frame / single-chunk s/frame: {per_frame['long'] / per_frame['single']:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=20, help="denoising steps per clip (default 20)")
    parser.add_argument("--repeats", type=int, default=15, help="timed runs per case (default 15)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument(
        "--motion-strength",
        type=float,
        default=0.9,
        help="long video: fraction of the steps later clips run (default 0.9, iter_long_video's)",
    )
    parser.add_argument(
        "--stat",
        choices=sorted(STATISTICS),
        default="median",
        help="median (default) or min of the repeats; min is steadier on a busy machine",
    )
    args = parser.parse_args()
    if args.steps < 1 or args.repeats < 1 or args.threads < 1:
        parser.error("--steps, --repeats and --threads must be >= 1")
    torch.set_num_threads(args.threads)
    stat = STATISTICS[args.stat]
    pipeline_report(args.steps, args.repeats, stat)
    long_video_report(args.steps, args.repeats, args.motion_strength, stat)


if __name__ == "__main__":
    main()
