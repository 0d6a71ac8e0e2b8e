"""MVideo pipelines: the mask-conditioned CogVideoX pipeline and the Wan2.1-VACE engine with the same surface."""

from generation.mvideo.pipelines.loading import (
    ATTENTION_BACKENDS,
    ENGINES,
    load_pipeline,
    set_attention_backend,
)
from generation.mvideo.pipelines.pipeline_mvideo import (
    MVideoPipeline,
    MVideoPipelineOutput,
    guidance_weights,
    mask_window_steps,
)
from generation.mvideo.pipelines.pipeline_vace import MaskGuidedVACEPipeline

__all__ = [
    "ATTENTION_BACKENDS",
    "ENGINES",
    "MVideoPipeline",
    "MVideoPipelineOutput",
    "MaskGuidedVACEPipeline",
    "guidance_weights",
    "load_pipeline",
    "mask_window_steps",
    "set_attention_backend",
]
