"""MVideo: text-to-video generation conditioned on mask sequences (arXiv 2411.08328), on CogVideoX."""

from generation.mvideo.longvideo import generate_long_video, iter_long_video, seam_metric
from generation.mvideo.models import MaskEncoder, MVideoTransformer3DModel, mask_sequence_to_slots
from generation.mvideo.pipelines import MaskGuidedVACEPipeline, MVideoPipeline, MVideoPipelineOutput

__all__ = [
    "MVideoPipeline",
    "MVideoPipelineOutput",
    "MVideoTransformer3DModel",
    "MaskEncoder",
    "MaskGuidedVACEPipeline",
    "generate_long_video",
    "iter_long_video",
    "mask_sequence_to_slots",
    "seam_metric",
]
