"""MMBee compositions (torchrec's `models/`): the ranker, its config and its export wrappers.

from recsys.mmbee.models import MMBeeConfig, MMBeeModel, ExportableMMBee, ExportableFusion, flatten_batch
from recsys.mmbee.models import ExportableRequestMMBee  # one viewer's request, the viewer's work done once
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
from recsys.mmbee.models.request import (
    REQUEST_VIEWER_INPUT_NAMES,
    ExportableRequestMMBee,
    request_input_names,
    with_viewer_of,
)

__all__ = [
    "FLAT_INPUT_NAMES",
    "FUSION_INPUT_NAMES",
    "H_M_SCORER_INPUT_NAMES",
    "ExportableFusion",
    "ExportableMMBee",
    "ExportableRequestMMBee",
    "MMBeeConfig",
    "MMBeeModel",
    "REQUEST_VIEWER_INPUT_NAMES",
    "batch_inputs",
    "flatten_batch",
    "request_input_names",
    "with_viewer_of",
]
