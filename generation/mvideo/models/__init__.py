"""MVideo models: the mask-conditioned CogVideoX transformer and the mask encoder."""

from generation.mvideo.models.mask_encoder import MaskEncoder, mask_sequence_to_slots
from generation.mvideo.models.transformer_mvideo import MVideoTransformer3DModel, MVideoXFormersAttnProcessor

__all__ = ["MVideoTransformer3DModel", "MVideoXFormersAttnProcessor", "MaskEncoder", "mask_sequence_to_slots"]
