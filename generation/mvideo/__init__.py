"""MVideo: text-to-video generation conditioned on mask sequences (arXiv 2411.08328), on CogVideoX.

    from generation.mvideo import MVideoPipeline
    from generation.mvideo.shapes import load_shapes_default

Names load on first use (torch and diffusers take seconds to import), so `kmono --help` stays fast.
"""

import importlib

_LAZY = {
    "generate_long_video": "generation.mvideo.longvideo",
    "iter_long_video": "generation.mvideo.longvideo",
    "seam_metric": "generation.mvideo.longvideo",
    "MaskEncoder": "generation.mvideo.models",
    "MVideoTransformer3DModel": "generation.mvideo.models",
    "mask_sequence_to_slots": "generation.mvideo.models",
    "MaskGuidedVACEPipeline": "generation.mvideo.pipelines",
    "MVideoPipeline": "generation.mvideo.pipelines",
    "MVideoPipelineOutput": "generation.mvideo.pipelines",
    "load_pipeline": "generation.mvideo.pipelines",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
