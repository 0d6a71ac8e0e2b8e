"""The offline stages, from the simulator's logs to a distilled student: the losses, written down exactly.

Logs: requests (a `PageBatch`) and, per request, K pages a logging policy showed with what the user did on each
slot (sampled clicks, watch, satisfaction) and the page's observed reward (`simulator.logs.LoggedPages`).

1. **Evaluator** (`evaluator_loss`): per-slot engagement regression on the logged pages,
   L_E = mean over pages, slots, objectives of (ê − e)², e the observed (sampled) engagement. Squared error on
   Bernoulli-sampled targets is minimised by their expectation, so ê estimates expected engagement.

2. **AR teacher**, two steps, both on the logged requests only:
   a. *imitation* (`teacher_imitation_loss`): reward-weighted sequence likelihood of the logged pages,
      L_I = − Σ_k w_k Σ_t log p_T(o_k,t | o_k,<t),  w = softmax(r / τ) over the K pages of a request,
      τ = the std of the logged rewards (so the weights do not depend on the reward's unit);
   b. *improvement against the evaluator* (`teacher_improvement_loss`, our choice where the paper is silent:
      the paper trains its teacher on logs, and a policy that only imitates logged pages cannot beat the
      logging policy): per request, S pages are sampled from the teacher itself (no gradient) and pooled with
      the logged ones; the evaluator's utility Û picks the best, and the teacher maximises its likelihood,
      L_B = − Σ_t log p_T(o*_t | o*_<t),  o* = argmax_{o ∈ samples ∪ logged} Û(o)
      (self-imitation / expert iteration with a learned critic).

3. **Sequential knowledge distillation** (`skd_loss`, Dual-Rerank's SKD as we read it): the NAR student
   matches the teacher's per-step distributions along the teacher's own sequences. For D sequences o per
   request (the teacher's greedy page and D − 1 samples), at every step t both models' distributions are taken
   over the candidates still available after the prefix o_<t (`decoding.step_log_probs`: no repeats, author
   caps), and
      L_SKD = (1 / (D·m)) Σ_o Σ_t KL( p_T(· | o_<t) ‖ p_S,t(· | o_<t) ).
   The student's step-t distribution is its slot-t row of the matching matrix, masked by the prefix. Matching
   the full distributions (not only the teacher's argmax) along sequences is what prevents "ranking collapse":
   a student trained on argmax labels per slot puts its mass on the few items that are often first and decodes
   them into every slot; masked per-step matching teaches slot t what is best *given* what came before.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from recsys.data.pages import PageBatch
from recsys.rerank.models.decoding import chosen_log_probs, greedy, sample, step_log_probs


@dataclass
class LoggedData:
    """Requests and their logged pages, indexable by request rows."""

    batch: PageBatch
    orders: torch.Tensor
    """long [B, K, m] the pages shown."""
    rewards: torch.Tensor
    """float [B, K] observed reward of each page."""
    engagement: torch.Tensor
    """float [B, K, m, len(OBJECTIVES)] observed engagement per slot."""

    def __len__(self) -> int:
        return self.batch.size

    def rows(self, rows: np.ndarray) -> LoggedData:
        index = torch.as_tensor(rows, dtype=torch.long)
        return LoggedData(
            self.batch.select(index), self.orders[index], self.rewards[index], self.engagement[index]
        )


def sequence_log_probs(policy, batch: PageBatch, orders: torch.Tensor) -> torch.Tensor:
    """Each page's log-likelihood under `policy`: orders [B, K, m] -> [B, K]."""
    steps = step_log_probs(policy.step_logits(batch, orders), orders, batch)
    return chosen_log_probs(steps, orders).sum(dim=-1)


def evaluator_loss(evaluator, data: LoggedData) -> torch.Tensor:
    predicted = evaluator.engagement(data.batch, data.orders)
    return torch.nn.functional.mse_loss(predicted, data.engagement)


def teacher_imitation_loss(teacher, data: LoggedData, temperature: float) -> torch.Tensor:
    weights = torch.softmax(data.rewards / temperature, dim=-1)
    return -(weights * sequence_log_probs(teacher, data.batch, data.orders)).sum(dim=-1).mean()


def best_pages(
    teacher, evaluator, data: LoggedData, num_samples: int, generator: torch.Generator
) -> torch.Tensor:
    """The evaluator's favourite among the teacher's samples and the logged pages: long [B, m]."""
    with torch.no_grad():
        sampled, _ = sample(teacher, data.batch, num_samples, generator)
        pool = torch.cat([sampled, data.orders], dim=1)
        value = evaluator.utility(data.batch, pool)
        best = value.argmax(dim=1)
    return pool[torch.arange(pool.shape[0]), best]


def teacher_improvement_loss(
    teacher, evaluator, data: LoggedData, num_samples: int, generator: torch.Generator
) -> torch.Tensor:
    target = best_pages(teacher, evaluator, data, num_samples, generator)
    return -sequence_log_probs(teacher, data.batch, target[:, None]).mean()


def teacher_sequences(
    teacher, batch: PageBatch, num_sequences: int, generator: torch.Generator
) -> torch.Tensor:
    """The pages SKD follows: the teacher's greedy page, then `num_sequences - 1` samples: long [B, D, m]."""
    with torch.no_grad():
        pages = [greedy(teacher, batch).orders[:, None]]
        if num_sequences > 1:
            pages.append(sample(teacher, batch, num_sequences - 1, generator)[0])
    return torch.cat(pages, dim=1)


def skd_loss(student, teacher, batch: PageBatch, sequences: torch.Tensor) -> torch.Tensor:
    """L_SKD above, for sequences [B, D, m] (from `teacher_sequences`)."""
    with torch.no_grad():
        teacher_steps = step_log_probs(teacher.step_logits(batch, sequences), sequences, batch)
    student_steps = step_log_probs(student.step_logits(batch, sequences), sequences, batch)
    teacher_probs = teacher_steps.exp()
    kl = (teacher_probs * (teacher_steps - student_steps)).sum(dim=-1)  # [B, D, m]
    return kl.mean()
