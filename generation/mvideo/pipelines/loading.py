"""One entry point for both engines: `load_pipeline("mvideo" | "vace", folder or hub id)`.

Both pipelines take the same call (prompt, `mask_video` as a MaskSequence or tensor, text and mask guidance
scales, mask schedule, `callback_on_step_end` with previews), so callers pick the engine by name: MVideo for
our mask-conditioned CogVideoX checkpoints (the shapes-world default included), Wan2.1-VACE for public
weights that follow masks without training. bfloat16 is the usual choice on CUDA; float32 on CPU.
"""

from __future__ import annotations

from typing import Any

import torch

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
