"""The training loss of a GTR model, kept out of the model (torchrec's train-wrapper split): the model maps a
`GTRBatch` to one logit per task (`recsys.data.batches.TASKS`, task 0 = gift), the wrapper turns those logits and
the batch's labels into the scalar that is optimised.

    loss = BCE(gift) + sum_{t >= 1} w_t * BCE(task t)

Choices (the paper trains GTR with cross-entropy and multi-task heads but gives no weights; *ours*):
- **No `pos_weight` on the gift task.** Gifts are very sparse (about 1-2% of impressions), and reweighting
  positives is the usual way to get more gradient from them, but it moves the optimum of the loss from P(gift) to
  a distorted odds ratio: the scores then rank the same way but overstate GTR by about the weight. The GTR is used
  as a probability (multiplied by gift values, thresholded, compared across streamers), so we keep plain
  cross-entropy and let the batch size bring enough positives. `gift_pos_weight` exists for experiments and is
  off by default.
- **Auxiliary tasks (like, comment) weighted 0.2 each**, not normalised: the gift task's gradient keeps the same
  scale whatever the auxiliary weights, so a SIM backbone that learns the gift only (weights 0) trains with the
  same learning rate.
- The loss is computed in float32 even under bf16 autocast (logits are cast first).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from recsys.data.batches import TASKS, GTRBatch

DEFAULT_TASK_WEIGHTS = (1.0,) + (0.2,) * (len(TASKS) - 1)


def gtr_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    task_weights: torch.Tensor,
    gift_pos_weight: float | None = None,
) -> torch.Tensor:
    """Weighted sum over tasks of the mean binary cross-entropy; logits and labels [B, T], weights [T]."""
    logits = logits.float()
    labels = labels.float()
    per_task = F.binary_cross_entropy_with_logits(logits, labels, reduction="none").mean(dim=0)  # [T]
    if gift_pos_weight is not None:
        pos_weight = logits.new_tensor([gift_pos_weight])
        per_task = torch.cat(
            [
                F.binary_cross_entropy_with_logits(logits[:, 0], labels[:, 0], pos_weight=pos_weight).reshape(
                    1
                ),
                per_task[1:],
            ]
        )  # [T]
    return (per_task * task_weights.to(per_task)).sum()


class GTRTrainWrapper(nn.Module):
    """`forward(batch) -> (loss, logits)`: the model's logits [B, T] (detached) and the weighted loss."""

    def __init__(
        self,
        model: nn.Module,
        task_weights: Sequence[float] = DEFAULT_TASK_WEIGHTS,
        gift_pos_weight: float | None = None,
    ) -> None:
        super().__init__()
        weights = [float(w) for w in task_weights]
        if len(weights) != len(TASKS):
            raise ValueError(f"task_weights has {len(weights)} values, expected one per task {TASKS}")
        if weights[0] <= 0 or min(weights) < 0:
            raise ValueError(f"task_weights must be >= 0 with the gift weight > 0, got {weights}")
        if gift_pos_weight is not None and gift_pos_weight <= 0:
            raise ValueError(f"gift_pos_weight must be > 0, got {gift_pos_weight}")
        self.model = model
        self.gift_pos_weight = gift_pos_weight
        self.register_buffer("task_weights", torch.tensor(weights), persistent=False)

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return gtr_loss(logits, labels, self.task_weights, self.gift_pos_weight)

    def forward(self, batch: GTRBatch) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.model(batch)  # [B, T]
        return self.loss(logits, batch.labels), logits.detach()
