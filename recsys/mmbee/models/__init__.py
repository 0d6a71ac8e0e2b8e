"""MMBee compositions (torchrec's `models/`): the ranker, its config and its export wrappers.

from recsys.mmbee.models import MMBeeConfig, MMBeeModel, ExportableMMBee, ExportableFusion, flatten_batch
"""

from recsys.mmbee.models.mmbee import (
    FLAT_INPUT_NAMES,
    FUSION_INPUT_NAMES,
    H_M_SCORER_INPUT_NAMES,
    ExportableFusion,
    ExportableMMBee,
    MMBeeConfig,
    MMBeeModel,
    batch_inputs,
    flatten_batch,
)

__all__ = [
    "FLAT_INPUT_NAMES",
    "FUSION_INPUT_NAMES",
    "H_M_SCORER_INPUT_NAMES",
    "ExportableFusion",
    "ExportableMMBee",
    "MMBeeConfig",
    "MMBeeModel",
    "batch_inputs",
    "flatten_batch",
]
