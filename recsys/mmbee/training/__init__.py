"""Training of the MMBee GTR models: the loss wrapper (`wrapper`) and the accelerate loop with checkpoints and
resume (`loop`); CPU, one GPU and multi-GPU DDP run the same `train` call.

from recsys.mmbee.training import GTRTrainWrapper, TrainConfig, train
"""

from recsys.mmbee.training.loop import EvalRecord, TrainConfig, TrainResult, latest_checkpoint, train
from recsys.mmbee.training.wrapper import DEFAULT_TASK_WEIGHTS, GTRTrainWrapper, gtr_loss

__all__ = [
    "DEFAULT_TASK_WEIGHTS",
    "EvalRecord",
    "GTRTrainWrapper",
    "TrainConfig",
    "TrainResult",
    "gtr_loss",
    "latest_checkpoint",
    "train",
]
