import numpy as np
import torch

from recsys.rerank.models import TINY, ARTeacher, NARStudent, PageEvaluator
from recsys.rerank.models.testing import random_page_batch
from recsys.rerank.training.loop import StageConfig, fit_stage
from recsys.rerank.training.offline import (
    LoggedData,
    best_pages,
    evaluator_loss,
    sequence_log_probs,
    skd_loss,
    teacher_imitation_loss,
    teacher_sequences,
)


def _batch(size=6, candidates=6, slots=3, cap=0):
    return random_page_batch(size, candidates, slots, torch.Generator().manual_seed(0), author_cap=cap)


def _models():
    torch.manual_seed(0)
    return ARTeacher(TINY).eval(), NARStudent(TINY).eval()


class _Copy(torch.nn.Module):
    """A "student" whose step distributions are the teacher's, plus a trainable offset that starts at 0."""

    decodes_autoregressively = False

    def __init__(self, teacher):
        super().__init__()
        self.teacher = teacher
        self.offset = torch.nn.Parameter(torch.zeros(()))

    def step_logits(self, batch, orders):
        return self.teacher.step_logits(batch, orders) + self.offset


def test_skd_is_zero_for_a_student_that_copies_the_teacher_and_positive_otherwise():
    teacher, student = _models()
    batch = _batch(cap=1)
    sequences = teacher_sequences(teacher, batch, 3, torch.Generator().manual_seed(1))
    assert sequences.shape == (6, 3, 3)
    copied = skd_loss(_Copy(teacher), teacher, batch, sequences).detach()
    assert float(copied) < 1e-6  # a shared shift of every logit cancels in the masked softmax
    assert float(skd_loss(student, teacher, batch, sequences)) > 1e-3


def test_skd_trains_the_student_only_and_brings_it_to_the_teacher():
    teacher, student = _models()
    batch = _batch(size=16)
    sequences = teacher_sequences(teacher, batch, 2, torch.Generator().manual_seed(1))
    before = float(skd_loss(student, teacher, batch, sequences))
    teacher_weights = [p.clone() for p in teacher.parameters()]
    fit_stage(
        "skd", student, lambda s, rows: skd_loss(s, teacher, batch, sequences), 16,
        StageConfig(epochs=40, batch_size=16, lr=1e-2, progress=False),
    )  # fmt: skip
    assert float(skd_loss(student, teacher, batch, sequences)) < 0.5 * before
    for a, b in zip(teacher_weights, teacher.parameters(), strict=True):
        assert torch.equal(a, b)


def test_imitation_weights_the_better_logged_page_more():
    teacher, _ = _models()
    batch = _batch(size=1)
    orders = torch.tensor([[[0, 1, 2], [3, 4, 5]]])
    data = LoggedData(batch, orders, torch.tensor([[1.0, 0.0]]), torch.zeros(1, 2, 3, 3))
    sharp = teacher_imitation_loss(teacher, data, temperature=1e-3)  # all weight on the first page
    likelihood = sequence_log_probs(teacher, batch, orders)[0]
    torch.testing.assert_close(sharp, -likelihood[0])
    flat = teacher_imitation_loss(teacher, data, temperature=1e3)  # equal weights
    torch.testing.assert_close(flat, -likelihood.mean(), rtol=1e-3, atol=1e-3)


def test_best_pages_is_the_evaluators_favourite_of_the_pool():
    teacher, _ = _models()
    torch.manual_seed(2)
    evaluator = PageEvaluator(TINY).eval()
    batch = _batch(size=5)
    orders = torch.stack([torch.randperm(6)[:3] for _ in range(5 * 4)]).view(5, 4, 3)
    data = LoggedData(batch, orders, torch.zeros(5, 4), torch.zeros(5, 4, 3, 3))
    best = best_pages(teacher, evaluator, data, 8, torch.Generator().manual_seed(3))
    with torch.no_grad():
        chosen = evaluator.utility(batch, best[:, None])[:, 0]
        logged = evaluator.utility(batch, orders)
    assert (chosen >= logged.max(dim=1).values - 1e-6).all()


def test_evaluator_loss_is_the_mean_squared_error_of_the_engagement():
    torch.manual_seed(0)
    evaluator = PageEvaluator(TINY).eval()
    batch = _batch(size=3)
    orders = torch.tensor([[[0, 1, 2]], [[2, 1, 0]], [[5, 4, 3]]])
    target = torch.rand(3, 1, 3, 3)
    data = LoggedData(batch, orders, torch.zeros(3, 1), target)
    expected = ((evaluator.engagement(batch, orders) - target) ** 2).mean()
    torch.testing.assert_close(evaluator_loss(evaluator, data), expected)
    assert len(data.rows(np.array([0, 2]))) == 2
