"""Reusable layers of MMBee (torchrec's `modules/`): MFQ, GIE, the SIM and MMoE backbones and their parts.

`recsys.mmbee.models.mmbee` composes them; import what you need:

    from recsys.mmbee.modules import GIE, MFQ, MMoE, SIM, OverArch
"""

from recsys.mmbee.modules.attention import AttentionBlock, MultiHeadAttention, masked_attention_pool
from recsys.mmbee.modules.gie import GIE, GIEOutput
from recsys.mmbee.modules.history import BehaviourEncoder, masked_mean
from recsys.mmbee.modules.mfq import MFQ, MODALITIES, orthogonal_complete
from recsys.mmbee.modules.mmoe import MMoE
from recsys.mmbee.modules.sim import SIM, OverArch

__all__ = [
    "GIE",
    "MFQ",
    "MODALITIES",
    "SIM",
    "AttentionBlock",
    "BehaviourEncoder",
    "GIEOutput",
    "MMoE",
    "MultiHeadAttention",
    "OverArch",
    "masked_attention_pool",
    "masked_mean",
    "orthogonal_complete",
]
