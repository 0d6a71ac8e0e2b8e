"""MVideo: text-to-video generation conditioned on mask sequences (arXiv 2411.08328), on CogVideoX.

    from generation.mvideo import MVideoPipeline
    from generation.mvideo.shapes import load_shapes_default

Names load on first use (torch and diffusers take seconds to import), so `kmono --help` stays fast.
"""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "longvideo": ["generate_long_video", "iter_long_video", "seam_metric"],
        "models": ["MVideoTransformer3DModel", "MaskEncoder", "mask_sequence_to_slots"],
        "pipelines": ["MVideoPipeline", "MVideoPipelineOutput", "MaskGuidedVACEPipeline", "load_pipeline"],
    },
)
