import torch

from recsys.rerank.models.config import TINY
from recsys.rerank.models.decoding import greedy
from recsys.rerank.models.student import NARStudent
from recsys.rerank.models.testing import random_page_batch


def test_matching_matrix_shapes_and_step_logits_broadcast():
    torch.manual_seed(0)
    student = NARStudent(TINY).eval()
    batch = random_page_batch(2, 6, 4, torch.Generator().manual_seed(0))
    logits, items = student(batch)
    assert logits.shape == (2, 4, 6) and items.shape == (2, 6, TINY.d_model)
    orders = torch.stack([torch.randperm(6)[:4] for _ in range(6)]).view(2, 3, 4)
    steps = student.step_logits(batch, orders)
    assert steps.shape == (2, 3, 4, 6)
    for page in range(3):
        torch.testing.assert_close(steps[:, page], logits)
    assert not torch.allclose(logits[:, 0], logits[:, 1])  # slots differ


def test_one_forward_per_greedy_decode():
    torch.manual_seed(0)
    student = NARStudent(TINY).eval()
    calls = {"student": 0, "encoder": 0}
    student.register_forward_hook(lambda *_: calls.__setitem__("student", calls["student"] + 1))
    student.encoder.register_forward_hook(lambda *_: calls.__setitem__("encoder", calls["encoder"] + 1))
    greedy(student, random_page_batch(3, 8, 5, torch.Generator().manual_seed(0), author_cap=1))
    assert calls == {"student": 1, "encoder": 1}


def test_a_student_can_be_lighter_than_its_teacher():
    from dataclasses import replace

    two = replace(TINY, layers=2)
    light = replace(two, student_layers=1)
    assert len(NARStudent(light).blocks) == 1 and len(NARStudent(light).encoder.blocks) == 1
    assert len(NARStudent(two).blocks) == 2  # 0: as deep as the teacher
    assert type(light).from_dict(light.to_dict()) == light
    batch = random_page_batch(2, 6, 4, torch.Generator().manual_seed(0))
    assert NARStudent(light).logits(batch).shape == (2, 4, 6)
