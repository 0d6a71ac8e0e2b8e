"""MVideo at CogVideoX scale on a GPU: step time, 50-step run, peak memory, TFLOP/s, SDPA vs xFormers, mask cost.

    python -m benchmarks.gpu_mvideo                          # both models on the GPU (bf16), a few minutes on an H100
    python -m benchmarks.gpu_mvideo --model 2b --json out.json
    python -m benchmarks.gpu_mvideo --device cpu             # no CUDA: a SCALED-DOWN shape, seconds; not the GPU figure

What runs. An `MVideoTransformer3DModel` with random weights in bf16, sized as a published CogVideoX transformer
(diffusers' configs; `MODELS` below), at 49 frames of 480 x 720 (latents 13 x 60 x 90; CogVideoX 1.5's temporal
patch of 2 needs an even latent frame count, so it gets one front-padded latent frame, 14, as diffusers'
CogVideoX 1.5 pipeline and `MVideoPipeline` do), with 226 text tokens of random T5-sized embeddings, and a
`MaskEncoder` (its defaults: 4 object slots, 16 mask channels) turning a random 49-frame 4-slot mask video into
the mask latents. The transformer's zero-initialised mask projection gets random weights (as after training), so
the check below can see the mask change the output.

- 2b: CogVideoX-2B: 30 layers, 30 heads x 64, patch 2, no temporal patch, sin-cos positions.
- 5b: CogVideoX-1.5-5B (text-to-video): 42 layers, 48 heads x 64, patch 2 x 2 x 2 (`patch_size_t=2`), rotary
  positions, no patch bias, 16 input channels (the image-to-video model has 32).

Every figure is printed with its ratio against a named baseline measured in the same run:

- **step**: one transformer forward = one denoising step, at `--batch` rows (default 2: classifier-free
  guidance's negative and positive prompt; MVideo's separate text and mask guidance runs 3, see
  benchmarks/mvideo_pipeline.py), every row with mask latents. Baseline: diffusers' plain
  `CogVideoXTransformer3DModel` (the same transformer with `mask_in_channels=0`) holding the very same weight
  tensors (shared, not copied), without mask latents. Before timing, the script checks that the MVideo model
  without a mask gives the plain model's output and that masks change it (it stops otherwise).
  `ratio mvideo+mask / plain` is the mask path's overhead per step; the mask encoder (once per video, not per
  step) is timed on its own and shown against one plain step.
- **run**: `--steps` (default 50) real denoising steps, not steps x the step time: the mask encoder once, then per
  step the transformer forward at `--batch` rows, the guidance combination and a `CogVideoXDDIMScheduler` step
  (CogVideoX-2B's scheduler settings; the scheduler's cost is negligible for either model). No text encoder, no
  VAE. Baselines: `--steps` x the plain step (the whole MVideo overhead over a run) and `--steps` x the MVideo
  step (the loop's own overhead).
- **TFLOP/s**: FLOPs of one forward counted analytically (`transformer_flops`: every matmul, convolution and
  attention product from the config and shape, 2 FLOPs per multiply-add; the attention products are 4 S^2 D per
  layer and row for S tokens of width D; layer norms, activations and rotary embeddings are not counted), checked
  against `torch.utils.flop_counter.FlopCounterMode` on one real forward (printed as a ratio; 1.000 expected; on
  CPU the counter needs SDPA's math backend to see the attention products, so that forward uses it). Achieved =
  analytic FLOPs / median step time. Baseline: the bf16 peak of one large square `torch.matmul` (8192^3 on CUDA),
  best of `--repeats` x 4 calls in the same run.
- **attention**: the MVideo step with `MVideoXFormersAttnProcessor` (xFormers' memory-efficient kernel, keeping
  CogVideoX's QK norm and rotary embeddings) against the same with PyTorch SDPA (`CogVideoXAttnProcessor2_0`,
  diffusers' default for CogVideoX; it calls `F.scaled_dot_product_attention` directly, so diffusers'
  `set_attention_backend` does not reach it). "xformers not installed" when it is not importable; skipped on CPU
  (xFormers has no CPU kernels).
- **memory**: on CUDA, the allocator's peak during one call (weights included) and the working memory (peak minus
  what was allocated before the call), for the plain step, the MVideo step, the MVideo step with xFormers, and the
  run; ratio against the plain step. On CPU, the working memory only (`PeakTensorMemory`: tensors made during
  the call and alive at once).

Step times are medians of `--repeats` calls after `--warmup` calls each, run round-robin (one call of each case
per round); the run is timed once, after them (its steps average themselves). CUDA calls are timed with CUDA
events after a synchronize. Results go to stdout and, with `--json OUT`, to a JSON file.

On a machine without CUDA (or with `--device cpu`) every model is scaled down (2 layers, 2 heads x 32, text width
64, 9 frames of 64 x 96, float32) and the output says so: those numbers exercise the code path; they are not the
GPU figures (on a busy machine raise `--repeats`: other processes' load makes single calls take twice as long at
random).
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import inspect
import json
import logging
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from diffusers import CogVideoXDDIMScheduler, CogVideoXTransformer3DModel
from diffusers.utils import logging as diffusers_logging
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from generation.mvideo.models import MaskEncoder, MVideoTransformer3DModel
from generation.mvideo.pipelines.pipeline_mvideo import rotary_embeddings
from generation.mvideo.pipelines.testing import PeakTensorMemory, randomize_mask_path

logger = logging.getLogger(__name__)

GIB = 2**30
VAE_SPATIAL = 8
"""Pixels per latent cell along H and W (CogVideoX's VAE, and `MaskEncoder`'s default)."""
_COGVIDEOX_COMMON: dict[str, Any] = dict(
    attention_head_dim=64,
    in_channels=16,
    out_channels=16,
    time_embed_dim=512,
    text_embed_dim=4096,
    max_text_seq_length=226,
    patch_size=2,
    temporal_compression_ratio=4,
)
MODELS: dict[str, tuple[str, dict[str, Any]]] = {
    "2b": (
        "CogVideoX-2B",
        dict(
            _COGVIDEOX_COMMON,
            num_layers=30,
            num_attention_heads=30,
            patch_size_t=None,
            sample_frames=49,
            sample_height=60,
            sample_width=90,
            use_rotary_positional_embeddings=False,
        ),
    ),
    "5b": (
        "CogVideoX-1.5-5B",
        dict(
            _COGVIDEOX_COMMON,
            num_layers=42,
            num_attention_heads=48,
            patch_size_t=2,
            patch_bias=False,
            sample_frames=81,
            sample_height=300,
            sample_width=300,
            use_rotary_positional_embeddings=True,
        ),
    ),
}
"""Model key -> (published name, `MVideoTransformer3DModel` config: the transformer config of the diffusers
checkpoint, fields not named keep their defaults, which are the published ones)."""


@dataclass(frozen=True)
class Shape:
    frames: int
    height: int
    width: int
    text_tokens: int = 226
    mask_slots: int = 4
    matmul_size: int = 8192
    dtype: str = "bfloat16"


GPU_SHAPE = Shape(frames=49, height=480, width=720)
CPU_SHAPE = Shape(frames=9, height=64, width=96, matmul_size=512, dtype="float32")
CPU_SCALE_DOWN = dict(
    num_layers=2, num_attention_heads=2, attention_head_dim=32, text_embed_dim=64, time_embed_dim=64
)
"""What the CPU run changes in each model's config (besides sin-cos sample sizes, set to its latent grid)."""
GUIDANCE = 6.0
BASELINE = "plain CogVideoXTransformer3DModel"


def model_config(key: str, shape: Shape, scaled_down: bool) -> dict[str, Any]:
    """The transformer config of model `key`, scaled down for a CPU run when `scaled_down`."""
    config = dict(MODELS[key][1])
    if scaled_down:
        config.update(CPU_SCALE_DOWN)
        if not config["use_rotary_positional_embeddings"]:  # sin-cos table built for the run's latent grid
            config.update(
                sample_frames=shape.frames,
                sample_height=shape.height // VAE_SPATIAL,
                sample_width=shape.width // VAE_SPATIAL,
            )
    return config


def latent_grid(config: dict[str, Any], shape: Shape) -> tuple[int, int, int, int]:
    """(video latent frames, padded latent frames, latent height, width): CogVideoX's causal VAE gives
    1 + (T - 1) / 4 frames; a temporal patch of p_t needs a multiple of p_t, padded at the front."""
    frames = 1 + (shape.frames - 1) // config["temporal_compression_ratio"]
    p_t = config.get("patch_size_t") or 1
    return frames, frames + (-frames) % p_t, shape.height // VAE_SPATIAL, shape.width // VAE_SPATIAL


def transformer_flops(
    config: dict[str, Any],
    batch: int,
    latent_frames: int,
    height: int,
    width: int,
    text_tokens: int,
    mask: bool,
) -> int:
    """FLOPs of one CogVideoX / MVideo transformer forward (2 per multiply-add), from its config.

    Counted: the timestep MLP, text projection, video (and mask) patch projections, per layer the two adaptive
    norms' modulation linears, Q/K/V/output projections, attention (Q K^T and A V: 2 x 2 S^2 D) and the 4x
    feed-forward, then the output norm's modulation and the output projection. Not counted: element-wise work.
    """
    d = config["num_attention_heads"] * config["attention_head_dim"]
    t_dim, p, p_t = config["time_embed_dim"], config["patch_size"], config.get("patch_size_t") or 1
    video = (latent_frames // p_t) * (height // p) * (width // p)
    s = text_tokens + video
    patch_inputs = p * p * p_t
    per_row = 2 * (d * t_dim + t_dim * t_dim)  # timestep embedding MLP
    per_row += 2 * text_tokens * config["text_embed_dim"] * d  # text projection
    per_row += 2 * video * config["in_channels"] * patch_inputs * d  # video patch projection
    if mask:
        per_row += 2 * video * config.get("mask_in_channels", 16) * patch_inputs * d
    per_layer = 2 * 2 * t_dim * 6 * d  # norm1, norm2 modulation (6 D each)
    per_layer += 2 * 4 * s * d * d  # Q, K, V, output projections
    per_layer += 2 * 2 * s * s * d  # Q K^T and A V over all heads
    per_layer += 2 * 2 * s * d * 4 * d  # feed-forward D -> 4D -> D
    per_row += config["num_layers"] * per_layer
    per_row += 2 * t_dim * 2 * d  # output norm modulation
    per_row += 2 * video * d * patch_inputs * config["out_channels"]  # output projection
    return batch * per_row


def plain_transformer(mvideo: MVideoTransformer3DModel) -> CogVideoXTransformer3DModel:
    """diffusers' `CogVideoXTransformer3DModel` holding `mvideo`'s own weight tensors (shared, no copy) minus the
    mask projection: the plain model of the same size, and no second 5B model in GPU memory."""
    names = set(inspect.signature(CogVideoXTransformer3DModel.__init__).parameters) - {"self"}
    with torch.device("meta"):
        plain = CogVideoXTransformer3DModel(**{k: v for k, v in mvideo.config.items() if k in names})
    state = {k: v for k, v in mvideo.state_dict().items() if not k.startswith("mask_embed.")}
    plain.load_state_dict(state, strict=True, assign=True)
    for (
        name,
        buffer,
    ) in mvideo.named_buffers():  # non-persistent buffers (sin-cos tables) are not in the state
        module_name, _, buffer_name = name.rpartition(".")
        owner = plain.get_submodule(module_name) if module_name else plain
        owner.register_buffer(buffer_name, buffer, persistent=buffer_name in owner.state_dict())
    return plain.eval()


def cast(module: torch.nn.Module, dtype: torch.dtype) -> None:
    """`module.to(dtype)` without diffusers' warning about modules to keep in float32 (these models list none)."""
    verbosity = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()
    try:
        module.to(dtype)
    finally:
        diffusers_logging.set_verbosity(verbosity)


class Timer:
    """Seconds of calls: CUDA events around each call on a GPU, `time.perf_counter` on CPU."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def seconds(self, fn: Callable[[], object]) -> float:
        if not self.cuda:
            start = time.perf_counter()
            fn()
            return time.perf_counter() - start
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize()
        start.record()
        fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3

    def round_robin(
        self, calls: dict[str, Callable[[], object]], repeats: int, warmup: int
    ) -> dict[str, list[float]]:
        """Seconds of each call: `warmup` untimed calls each, then `repeats` rounds calling every case once."""
        for fn in calls.values():
            for _ in range(warmup):
                fn()
        self.sync()
        times: dict[str, list[float]] = {name: [] for name in calls}
        for _ in range(repeats):
            for name, fn in calls.items():
                times[name].append(self.seconds(fn))
        return times


def memory(fn: Callable[[], object], device: torch.device, timer: Timer | None = None) -> dict[str, float]:
    """GiB of one call: on CUDA the allocator's peak (weights included) and the working memory (peak minus what
    was allocated before); on CPU the working memory of the tensors made during the call. With `timer`, also the
    call's seconds: on CUDA of the same call (the allocator's statistics do not slow it), on CPU of a second
    call outside the tracker (which does)."""
    if device.type != "cuda":
        with PeakTensorMemory() as tracker:
            fn()
        result = {"working_gib": tracker.peak / GIB}
        return result if timer is None else {**result, "seconds": timer.seconds(fn)}
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    if timer is None:
        fn()
    else:
        seconds = timer.seconds(fn)
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated()
    result = {"peak_gib": peak / GIB, "working_gib": (peak - before) / GIB}
    return result if timer is None else {**result, "seconds": seconds}


def matmul_peak(shape: Shape, device: torch.device, dtype: torch.dtype, timer: Timer, repeats: int) -> dict:
    """TFLOP/s of one large square `torch.matmul` in `dtype`, best of `repeats` x 4 calls after 10 warm-up calls
    (a GPU reaches its clocks under load)."""
    n = shape.matmul_size
    generator = torch.Generator(device).manual_seed(0)
    a = torch.randn(n, n, device=device, dtype=dtype, generator=generator)
    b = torch.randn(n, n, device=device, dtype=dtype, generator=generator)
    with torch.inference_mode():
        seconds = timer.round_robin({"matmul": lambda: torch.matmul(a, b)}, 4 * repeats, 10)["matmul"]
    best = min(seconds)
    return {"size": n, "best_s": best, "tflops": 2 * n**3 / best / 1e12}


def xformers_state(device: torch.device) -> str:
    """'ok', 'not installed', or why it is skipped."""
    if importlib.util.find_spec("xformers") is None:
        return "not installed"
    if device.type != "cuda":
        return "skipped on CPU (xFormers has no CPU kernels)"
    return "ok"


def _guided(out: torch.Tensor, rows: int) -> torch.Tensor:
    """Combine a forward's rows into one prediction: as is (1), CFG (2: uncond, text) or MVideo's text + mask
    guidance (3: uncond, text, text+mask, with s_mask = 1)."""
    chunks = out.chunk(rows)
    if rows == 1:
        return chunks[0]
    guided = chunks[0] + GUIDANCE * (chunks[1] - chunks[0])
    return guided if rows == 2 else guided + (chunks[2] - chunks[1])


def bench_model(
    key: str, shape: Shape, device: torch.device, args: argparse.Namespace, timer: Timer, peak: dict
) -> dict[str, Any]:
    """Every figure for one model (see the module docstring); prints them and returns them."""
    scaled_down = device.type != "cuda"
    name, _ = MODELS[key]
    dtype = getattr(torch, shape.dtype)
    config = model_config(key, shape, scaled_down)
    video_frames, frames, height, width = latent_grid(config, shape)
    rows = args.batch
    torch.manual_seed(args.seed)
    with torch.device(device):  # initialised on the device (a 5B model on the CPU takes minutes)
        mvideo = MVideoTransformer3DModel(**config)
        mask_encoder = MaskEncoder(
            num_mask_slots=shape.mask_slots, mask_in_channels=mvideo.config.mask_in_channels
        )
    randomize_mask_path(mvideo, args.seed)
    cast(mvideo.eval(), dtype)
    cast(mask_encoder.eval(), dtype)
    plain = plain_transformer(mvideo)
    if device.type == "cuda":
        torch.cuda.empty_cache()
    params = sum(p.numel() for p in mvideo.parameters())
    mask_params = sum(p.numel() for p in mvideo.mask_embed.parameters())

    generator = torch.Generator(device).manual_seed(args.seed)
    channels = config["in_channels"]
    latents = torch.randn(1, frames, channels, height, width, generator=generator, device=device, dtype=dtype)
    text = torch.randn(rows, shape.text_tokens, config["text_embed_dim"], generator=generator, device=device)
    text = text.to(dtype)
    mask_video = torch.rand(
        1, shape.frames, shape.mask_slots, shape.height, shape.width, generator=generator, device=device
    )
    mask_video = (mask_video > 0.9).to(dtype)
    rotary = rotary_embeddings(mvideo.config, frames, height, width, device)
    timestep = torch.full((rows,), 500, device=device)

    def encode_masks() -> torch.Tensor:
        mask_latents = mask_encoder(mask_video)  # (1, video_frames, Cm, h, w)
        pad = mask_latents[:, :1].expand(-1, frames - video_frames, -1, -1, -1)  # as the pipeline pads
        return torch.cat([pad, mask_latents], dim=1).expand(rows, -1, -1, -1, -1)

    with torch.inference_mode():
        mask_latents = encode_masks()
    batch_latents = latents.expand(rows, -1, -1, -1, -1)

    def forward(
        model: torch.nn.Module, masks: torch.Tensor | None, x: torch.Tensor = batch_latents, t=timestep
    ):
        extra = {} if masks is None else {"mask_latents": masks}
        return model(
            hidden_states=x,
            encoder_hidden_states=text,
            timestep=t,
            image_rotary_emb=rotary,
            return_dict=False,
            **extra,
        )[0]

    def run() -> torch.Tensor:
        scheduler = CogVideoXDDIMScheduler(
            beta_schedule="scaled_linear",
            prediction_type="v_prediction",
            rescale_betas_zero_snr=True,
            timestep_spacing="trailing",
            snr_shift_scale=3.0,
            clip_sample=False,
        )
        scheduler.set_timesteps(args.steps, device=device)
        masks = encode_masks()
        x = latents
        for t in scheduler.timesteps:
            model_input = scheduler.scale_model_input(x.expand(rows, -1, -1, -1, -1), t)
            out = forward(mvideo, masks, model_input, t.expand(rows)).float()
            x = scheduler.step(_guided(out, rows), t, x, return_dict=False)[0].to(dtype)
        return x

    # Baseline check (also the first warm-up): no mask = the plain model; masks change the output.
    with torch.inference_mode():
        plain_out = forward(plain, None).float()
        no_mask_diff = (forward(mvideo, None).float() - plain_out).abs().max().item()
        mask_change = (forward(mvideo, mask_latents).float() - plain_out).abs().mean().item()
    if no_mask_diff > 0 or mask_change == 0:
        raise RuntimeError(
            f"baseline check failed: max |mvideo(no mask) - plain| = {no_mask_diff:.3g} (0 expected), "
            f"mean |mvideo(masks) - plain| = {mask_change:.3g} (> 0 expected)"
        )

    analytic = transformer_flops(config, rows, frames, height, width, shape.text_tokens, mask=True)
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        if device.type == "cuda":
            forward(mvideo, mask_latents)
        else:  # CPU's fused SDPA kernel is invisible to the counter; the math backend is made of counted bmm's
            with sdpa_kernel(SDPBackend.MATH):
                forward(mvideo, mask_latents)
    counted = counter.get_total_flops()

    xformers = xformers_state(device)
    calls: dict[str, Callable[[], object]] = {
        BASELINE: lambda: forward(plain, None),
        "mvideo+mask": lambda: forward(mvideo, mask_latents),
        "mask encoder": encode_masks,
    }
    with torch.inference_mode():
        steps_s = timer.round_robin(calls, args.repeats, args.warmup)
        mem = {case: memory(fn, device) for case, fn in calls.items() if case != "mask encoder"}
        if xformers == "ok":
            sdpa_out = forward(mvideo, mask_latents).float()
            mvideo.set_use_memory_efficient_attention_xformers(True)
            try:
                xformers_diff = (forward(mvideo, mask_latents).float() - sdpa_out).abs().max().item()
                xformers_step = lambda: forward(mvideo, mask_latents)  # noqa: E731
                times = timer.round_robin({"xformers": xformers_step}, args.repeats, args.warmup)
                steps_s["mvideo+mask, xformers"] = times["xformers"]
                mem["mvideo+mask, xformers"] = memory(xformers_step, device)
            except Exception as error:  # an xFormers build that does not fit this torch or GPU: say so, go on
                logger.exception("xFormers attention failed")
                xformers = f"failed ({type(error).__name__}: {error})"
            finally:
                mvideo.set_use_memory_efficient_attention_xformers(False)
        mem["run"] = memory(run, device, timer)
        run_s = mem["run"].pop("seconds")
    step = {case: statistics.median(values) for case, values in steps_s.items()}

    plain_s, mvideo_s = step[BASELINE], step["mvideo+mask"]
    achieved = analytic / mvideo_s / 1e12
    plain_achieved = transformer_flops(config, rows, frames, height, width, shape.text_tokens, mask=False)
    plain_achieved = plain_achieved / plain_s / 1e12
    result: dict[str, Any] = {
        "name": name,
        "config": config,
        "params": params,
        "mask_params": mask_params,
        "weights_gib": sum(p.numel() * p.element_size() for p in mvideo.parameters()) / GIB,
        "latents": [rows, frames, channels, height, width],
        "video_latent_frames": video_frames,
        "tokens": shape.text_tokens
        + (frames // (config.get("patch_size_t") or 1)) * (height // 2) * (width // 2),
        "baseline_check": {"max_abs_no_mask_vs_plain": no_mask_diff, "mean_abs_mask_vs_plain": mask_change},
        "step_s": step,
        "step_s_all": steps_s,
        "ratio_step_mvideo_mask_over_plain": mvideo_s / plain_s,
        "ratio_mask_encoder_over_plain_step": step["mask encoder"] / plain_s,
        "flops_per_step_analytic": analytic,
        "flops_per_step_counted": counted,
        "ratio_flops_analytic_over_counted": analytic / counted if counted else None,
        "tflops_achieved": achieved,
        "tflops_achieved_plain": plain_achieved,
        "ratio_achieved_over_matmul_peak": achieved / peak["tflops"],
        "ratio_plain_achieved_over_matmul_peak": plain_achieved / peak["tflops"],
        "xformers": xformers,
        "steps": args.steps,
        "run_s": run_s,
        "ratio_run_over_steps_x_plain_step": run_s / (args.steps * plain_s),
        "ratio_run_over_steps_x_mvideo_step": run_s / (args.steps * mvideo_s),
        "memory_gib": mem,
    }
    if "mvideo+mask, xformers" in step:
        result["ratio_step_xformers_over_sdpa"] = step["mvideo+mask, xformers"] / mvideo_s
        result["xformers_max_abs_diff_vs_sdpa"] = xformers_diff
    _print_model(result, rows)
    return result


def _print_model(r: dict[str, Any], rows: int) -> None:
    step = r["step_s"]
    b, f, c, h, w = r["latents"]
    print(
        f"\n[{r['name']}] {r['params'] / 1e6:.5g}M parameters ({r['mask_params'] / 1e3:.4g}k in the mask path), "
        f"{r['weights_gib']:.3g} GiB of weights; latents {b} x {f} x {c} x {h} x {w} "
        f"({r['video_latent_frames']} video latent frames), {r['tokens']} tokens a row"
    )
    print(
        f"  baseline check: max |mvideo(no mask) - plain| = {r['baseline_check']['max_abs_no_mask_vs_plain']:.1g}, "
        f"mean |mvideo(masks) - plain| = {r['baseline_check']['mean_abs_mask_vs_plain']:.3g} (masks act)"
    )
    print(
        f"  step ({rows} rows): {BASELINE} {step[BASELINE] * 1e3:.1f} ms, mvideo+mask {step['mvideo+mask'] * 1e3:.1f} ms; "
        f"ratio mvideo+mask / plain {r['ratio_step_mvideo_mask_over_plain']:.3f}"
    )
    print(
        f"  mask encoder (once per video): {step['mask encoder'] * 1e3:.2f} ms; "
        f"ratio mask encoder / plain step {r['ratio_mask_encoder_over_plain_step']:.4f}"
    )
    counted = r["ratio_flops_analytic_over_counted"]
    print(
        f"  FLOPs per step: {r['flops_per_step_analytic'] / 1e12:.4g} TFLOP analytic; ratio analytic / FlopCounterMode "
        + (f"{counted:.3f}" if counted else "n/a (counter saw nothing)")
    )
    print(
        f"  achieved: mvideo+mask {r['tflops_achieved']:.4g} TFLOP/s, plain {r['tflops_achieved_plain']:.4g} TFLOP/s; "
        f"ratio achieved / matmul peak {r['ratio_achieved_over_matmul_peak']:.3f} "
        f"(plain {r['ratio_plain_achieved_over_matmul_peak']:.3f})"
    )
    if "ratio_step_xformers_over_sdpa" in r:
        print(
            f"  attention: xformers {step['mvideo+mask, xformers'] * 1e3:.1f} ms vs SDPA {step['mvideo+mask'] * 1e3:.1f} ms; "
            f"ratio xformers / SDPA {r['ratio_step_xformers_over_sdpa']:.3f} "
            f"(max |output difference| {r['xformers_max_abs_diff_vs_sdpa']:.3g})"
        )
    else:
        print(
            f"  attention: xformers {r['xformers']}"
            if r["xformers"] != "not installed"
            else "  xformers not installed"
        )
    print(
        f"  run ({r['steps']} denoising steps + mask encoder): {r['run_s']:.3f} s; ratio run / ({r['steps']} x plain "
        f"step) {r['ratio_run_over_steps_x_plain_step']:.3f}, run / ({r['steps']} x mvideo step) "
        f"{r['ratio_run_over_steps_x_mvideo_step']:.3f}"
    )
    base = r["memory_gib"][BASELINE]
    for case, mem in r["memory_gib"].items():
        peak = (
            f"peak {mem['peak_gib']:.2f} GiB ({mem['peak_gib'] / base['peak_gib']:.3f}x plain), "
            if "peak_gib" in mem
            else ""
        )
        ratio = mem["working_gib"] / base["working_gib"] if base["working_gib"] else float("nan")
        print(f"  memory {case}: {peak}working {mem['working_gib']:.3f} GiB ({ratio:.3f}x plain)")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model", choices=["2b", "5b", "both"], default="both", help="which CogVideoX size (default both)"
    )
    parser.add_argument("--steps", type=int, default=50, help="denoising steps of the run (default 50)")
    parser.add_argument(
        "--batch",
        type=int,
        choices=[1, 2, 3],
        default=2,
        help="transformer rows a step: 1 no guidance, 2 CFG (default), 3 MVideo's text + mask guidance",
    )
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per case (default 5)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls per case first (default 2)")
    parser.add_argument(
        "--device",
        choices=["auto", "cuda", "cpu"],
        default="auto",
        help="auto (default): CUDA when available, else CPU with the scaled-down shape",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the random weights and inputs (default 0)"
    )
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.repeats < 1 or args.warmup < 0:
        parser.error("--steps and --repeats must be >= 1, --warmup >= 0")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available")
    use_cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    device = torch.device("cuda" if use_cuda else "cpu")
    shape = GPU_SHAPE if use_cuda else CPU_SHAPE
    timer = Timer(device)

    if use_cuda:
        where = f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}, {shape.dtype}"
    else:
        where = (
            f"CPU, torch {torch.__version__}, {torch.get_num_threads()} threads, {shape.dtype}. SCALED DOWN "
            f"(no CUDA): {CPU_SCALE_DOWN}, {shape.frames} frames of {shape.height} x {shape.width}; these "
            "numbers check the code path, they are NOT the GPU figures"
        )
    print(f"gpu_mvideo: {where}")
    print(
        f"{shape.frames} frames of {shape.height} x {shape.width}, {shape.text_tokens} text tokens, {args.batch} rows a step"
    )
    peak = matmul_peak(shape, device, getattr(torch, shape.dtype), timer, args.repeats)
    print(
        f"matmul peak ({shape.dtype} {peak['size']}^3 torch.matmul, best call): {peak['tflops']:.4g} TFLOP/s"
    )

    keys = ["2b", "5b"] if args.model == "both" else [args.model]
    results = {
        "device": where,
        "scaled_down": not use_cuda,
        "shape": asdict(shape),
        "batch": args.batch,
        "repeats": args.repeats,
        "warmup": args.warmup,
        "matmul_peak": peak,
        "models": {},
    }
    for key in keys:
        results["models"][key] = bench_model(key, shape, device, args, timer, peak)
        gc.collect()  # the model's closures hold it: free its GPU memory before the next model is built
        if use_cuda:
            torch.cuda.empty_cache()
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2, default=str))
        print(f"\nwrote {args.json}")
    return results


if __name__ == "__main__":
    main()
