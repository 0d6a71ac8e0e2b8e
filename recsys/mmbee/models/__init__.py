"""MMBee compositions (torchrec's `models/`): the ranker, its config and its export wrapper.

from recsys.mmbee.models import MMBeeConfig, MMBeeModel, ExportableMMBee, flatten_batch
"""

from recsys.mmbee.models.mmbee import (
    FLAT_INPUT_NAMES,
    ExportableMMBee,
    MMBeeConfig,
    MMBeeModel,
    flatten_batch,
)

__all__ = ["FLAT_INPUT_NAMES", "ExportableMMBee", "MMBeeConfig", "MMBeeModel", "flatten_batch"]
