"""One entry point for both engines: `load_pipeline("mvideo" | "vace", folder or hub id)`, and the attention backend.

Both pipelines take the same call (prompt, `mask_video` as a MaskSequence or tensor, text and mask guidance
scales, mask schedule, `callback_on_step_end` with previews), so callers pick the engine by name: MVideo for
our mask-conditioned CogVideoX checkpoints (the shapes-world default included), Wan2.1-VACE for public
weights that follow masks without training. bfloat16 is the usual choice on CUDA; float32 on CPU.

    pipe = load_pipeline("vace", "Wan-AI/Wan2.1-VACE-1.3B-diffusers", torch_dtype=torch.bfloat16).to("cuda")
    set_attention_backend(pipe, "auto")   # -> "xformers" with the gpu extra installed, else "sdpa"

Attention backends (`ATTENTION_BACKENDS`), the same names for both engines:

- **sdpa**: PyTorch's `scaled_dot_product_attention` (the default of both; CogVideoX's
  `CogVideoXAttnProcessor2_0` for MVideo, diffusers' "native" attention backend for Wan).
- **xformers**: `xformers.ops.memory_efficient_attention` (the `gpu` extra; CUDA only, xformers has no CPU
  kernels): `MVideoXFormersAttnProcessor` for MVideo (CogVideoX's QK norm and rotary embeddings kept),
  diffusers' "xformers" attention backend for Wan.
- **auto**: xformers when it is installed and the pipeline executes on CUDA, else sdpa.
"""

from __future__ import annotations

import inspect
import logging
from typing import Any

import torch

from generation.mvideo.defaults import ATTENTION_BACKENDS, COGVIDEOX_FPS

logger = logging.getLogger(__name__)

ENGINES = ("mvideo", "vace")


def load_pipeline(
    engine: str, path_or_id: str, *, torch_dtype: torch.dtype | None = None, **kwargs: Any
) -> Any:
    """An `MVideoPipeline` ("mvideo") or `MaskGuidedVACEPipeline` ("vace") from a local folder or hub id.

    kwargs go to the engine's `from_pretrained` (e.g. `num_mask_slots` for VACE). An unknown engine is a
    ValueError naming the choices.
    """
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; choose one of: {', '.join(ENGINES)}")
    if torch_dtype is not None:
        kwargs["dtype"] = torch_dtype  # diffusers 0.42 renamed torch_dtype to dtype
    if engine == "mvideo":
        from generation.mvideo.pipelines.pipeline_mvideo import MVideoPipeline

        return MVideoPipeline.from_pretrained(path_or_id, **kwargs)
    from generation.mvideo.pipelines.pipeline_vace import MaskGuidedVACEPipeline

    return MaskGuidedVACEPipeline.from_pretrained(path_or_id, **kwargs)


def xformers_unavailable_reason(pipe: Any) -> str | None:
    """Why xformers attention cannot run for `pipe` (not installed, or not executing on CUDA); None if it can."""
    from diffusers.utils import is_xformers_available

    if not is_xformers_available():
        return "xformers is not installed"
    device = pipe._execution_device  # the offload hooks' device when model CPU offload is on
    if device.type != "cuda":
        return f"the pipeline executes on {device} and xformers has no kernels there (CUDA only)"
    return None


def set_attention_backend(pipe: Any, backend: str) -> str:
    """Switch the attention of an `MVideoPipeline` or `MaskGuidedVACEPipeline` to `backend` (one of
    `ATTENTION_BACKENDS`, see the module docstring); returns the backend now in use ("sdpa" or "xformers").

    "xformers" where it cannot run is a ValueError that says how to fix it; "auto" then falls back to "sdpa".
    Call it after moving the pipeline to its device (or enabling model CPU offload).
    """
    from generation.mvideo.models.transformer_mvideo import MVideoTransformer3DModel

    if backend not in ATTENTION_BACKENDS:
        raise ValueError(
            f"unknown attention backend {backend!r}; choose one of: {', '.join(ATTENTION_BACKENDS)}"
        )
    reason = xformers_unavailable_reason(pipe)
    if backend == "auto":
        backend = "sdpa" if reason else "xformers"
    elif backend == "xformers" and reason:
        raise ValueError(
            f"attention backend 'xformers' is unavailable: {reason}. Install the gpu extra "
            "(pip install 'kmono[gpu]') and move the pipeline to CUDA (pipe.to('cuda')), or use 'sdpa' or 'auto'."
        )
    use_xformers = backend == "xformers"
    transformers = [getattr(pipe, name, None) for name in ("transformer", "transformer_2")]
    for transformer in (t for t in transformers if t is not None):
        if isinstance(transformer, MVideoTransformer3DModel):
            transformer.set_use_memory_efficient_attention_xformers(use_xformers)
        else:  # diffusers' attention dispatcher (Wan)
            transformer.set_attention_backend("xformers" if use_xformers else "native")
    logger.info("attention backend: %s%s", backend, f" ({reason})" if reason and not use_xformers else "")
    return backend


def sampling_call_defaults(pipe: Any) -> dict:
    """fps, num_inference_steps and guidance_scale a published folder without `engine.json` samples with:
    the pipeline's own `__call__` defaults, at CogVideoX's 8 fps (the pipelines take no fps)."""
    params = inspect.signature(type(pipe).__call__).parameters
    return {
        "fps": COGVIDEOX_FPS,
        "num_inference_steps": params["num_inference_steps"].default,
        "guidance_scale": params["guidance_scale"].default,
    }
