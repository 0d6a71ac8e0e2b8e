"""The rerank models' forwards, trimmed for batch-1 latency (functional calls, fewer views, cached masks), against
the plain reading they replaced: `reference_*` below are those forwards as they were, module calls and all,
run on the same modules' weights. Both the committed default model and random weights (with padding and
duplicate authors) must agree within 1e-6."""

import math

import pytest
import torch
import torch.nn.functional as F

from recsys.data.pages import LAYOUTS, OBJECTIVES, gather_pages, weighted_scores
from recsys.rerank.defaults import DEFAULT_MODEL_PATH
from recsys.rerank.models.config import TINY
from recsys.rerank.models.decoding import greedy
from recsys.rerank.models.encoder import masked_mean
from recsys.rerank.models.evaluator import PageEvaluator
from recsys.rerank.models.folder import load_model_folder
from recsys.rerank.models.layers import MASKED, key_padding_bias, same_author
from recsys.rerank.models.student import NARStudent
from recsys.rerank.models.teacher import ARTeacher
from recsys.rerank.models.testing import random_page_batch

TOLERANCE = 1e-6


def reference_key_padding_bias(keep):
    return torch.zeros(keep.shape, dtype=torch.float32).masked_fill(~keep, MASKED)[:, None, None]


def reference_same_author(authors):
    same = (authors.unsqueeze(-1) == authors.unsqueeze(-2)) & (authors >= 0).unsqueeze(-1)
    eye = torch.eye(authors.shape[-1], dtype=torch.bool)
    return (same & ~eye).to(torch.float32)


def reference_attention(attention, x, memory, bias):
    batch, queries, width = x.shape
    keys = memory.shape[1]
    weight, offset = attention.in_proj.weight, attention.in_proj.bias
    q = F.linear(x, weight[:width], offset[:width])
    k, v = F.linear(memory, weight[width:], offset[width:]).split(width, dim=-1)
    q = q.reshape(batch, queries, attention.heads, -1).transpose(1, 2)
    k = k.reshape(batch, keys, attention.heads, -1).transpose(1, 2)
    v = v.reshape(batch, keys, attention.heads, -1).transpose(1, 2)
    mixed = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
    return attention.out(mixed.transpose(1, 2).reshape(batch, queries, width))


def reference_block(block, x, self_bias, memory=None, memory_bias=None):
    if block.self_attention is not None:
        normed = block.self_norm(x)
        x = x + reference_attention(block.self_attention, normed, normed, self_bias)
    if block.cross_attention is not None:
        x = x + reference_attention(block.cross_attention, block.cross_norm(x), memory, memory_bias)
    return x + block.mlp(block.mlp_norm(x))


def reference_slots(embedding, layout, num_slots):
    return embedding.table(layout.unsqueeze(-1) * embedding.max_slots + torch.arange(num_slots))


def reference_pointer(pointer, queries, items):
    return pointer.scale * pointer.query(queries) @ pointer.key(items).transpose(-1, -2)


def reference_encoder(encoder, batch):
    condition = encoder.condition.options(batch.options) + encoder.condition.layout(batch.layout)
    inputs = torch.cat([batch.features, weighted_scores(batch).unsqueeze(-1)], dim=-1)
    x = encoder.item_in(inputs) + condition.unsqueeze(1)
    padding = reference_key_padding_bias(batch.valid)
    duplicates = reference_same_author(batch.authors).unsqueeze(1)
    for block, per_head in zip(encoder.blocks, encoder.same_author_bias, strict=True):
        x = reference_block(block, x, padding + per_head.view(1, encoder.heads, 1, 1) * duplicates)
    items = encoder.norm(x) * batch.valid.unsqueeze(-1)
    return items, encoder.context(torch.cat([masked_mean(items, batch.valid), condition], dim=-1))


def reference_student(student, batch):
    items, context = reference_encoder(student.encoder, batch)
    queries = reference_slots(student.slot_embedding, batch.layout, batch.num_slots) + context.unsqueeze(1)
    for block in student.blocks:
        queries = reference_block(block, queries, None, items, reference_key_padding_bias(batch.valid))
    return reference_pointer(student.pointer, student.norm(queries), items), items


def reference_teacher_hidden(teacher, batch, prefix):
    """Decoder states [R, t+1, d] of every request repeated R / B times, given `prefix` long [R, t]."""
    items, context = reference_encoder(teacher.encoder, batch)
    times = prefix.shape[0] // items.shape[0]
    items, context = items.repeat_interleave(times, 0), context.repeat_interleave(times, 0)
    slots = reference_slots(teacher.slot_embedding, batch.layout, batch.num_slots).repeat_interleave(times, 0)
    memory_bias = reference_key_padding_bias(batch.valid).repeat_interleave(times, 0)
    decoder = teacher.decoder
    rows, placed = prefix.shape
    width = items.shape[-1]
    index = prefix.unsqueeze(-1).expand(rows, placed, width)
    previous = torch.cat([decoder.start.expand(rows, 1, width), items.gather(1, index)], dim=1)
    x = previous + slots[:, : placed + 1] + context.unsqueeze(1)
    causal = torch.full((placed + 1, placed + 1), -1e9).triu(1)
    for block in decoder.blocks:
        x = reference_block(block, x, causal, items, memory_bias)
    return decoder.norm(x), items


def reference_engagement(evaluator, batch, orders):
    size, pages, slots = orders.shape
    inputs = torch.cat([batch.features, weighted_scores(batch).unsqueeze(-1)], dim=-1)
    placed = gather_pages(inputs, orders)
    condition = evaluator.condition.options(batch.options) + evaluator.condition.layout(batch.layout)
    where = reference_slots(evaluator.slot_embedding, batch.layout, slots) + condition.unsqueeze(1)
    x = (evaluator.item_in(placed) + where.unsqueeze(1)).reshape(size * pages, slots, -1)
    duplicates = reference_same_author(gather_pages(batch.authors, orders)).view(
        size * pages, 1, slots, slots
    )
    for block, per_head in zip(evaluator.blocks, evaluator.same_author_bias, strict=True):
        x = reference_block(block, x, per_head.view(1, evaluator.heads, 1, 1) * duplicates)
    a, b, c = evaluator.head(evaluator.norm(x)).view(size, pages, slots, 3).unbind(dim=-1)
    ctr, watch, satisfaction = gather_pages(batch.features[..., : len(OBJECTIVES)], orders).unbind(dim=-1)
    click = ctr * a.clamp(-6.0, 6.0).exp()
    return torch.stack([click, click * watch * b.clamp(-6.0, 6.0).exp(), click * (satisfaction + c)], dim=-1)


def _random_models():
    """TINY models with weights far from their initialisation (nonzero same-author bias, biases, norms)."""
    torch.manual_seed(0)
    models = ARTeacher(TINY).eval(), NARStudent(TINY).eval(), PageEvaluator(TINY).eval()
    with torch.no_grad():
        for model in models:
            for parameter in model.parameters():
                parameter.normal_(0.0, 0.3)
    return models


def _default_models():
    models = load_model_folder(DEFAULT_MODEL_PATH)
    return models.teacher, models.student, models.evaluator


CASES = {
    # name: (models, batch size, candidates, slots, padding)
    "default, one request n=50 m=10": (_default_models, 1, 50, 10, 0),
    "default, padded batch": (_default_models, 3, 20, 6, 4),
    "random weights, padded batch": (_random_models, 3, 9, 5, 2),
}


def _orders(batch, pages, seed=0):
    generator = torch.Generator().manual_seed(seed)
    size, valid = batch.valid.shape[0], int(batch.valid[0].sum())
    rows = [torch.randperm(valid, generator=generator)[: batch.num_slots] for _ in range(size * pages)]
    return torch.stack(rows).view(size, pages, batch.num_slots)


def _close(actual, expected):
    assert actual.shape == expected.shape
    assert (actual - expected).abs().max().item() <= TOLERANCE


@pytest.fixture(params=list(CASES), scope="module")
def case(request):
    make, size, candidates, slots, padding = CASES[request.param]
    generator = torch.Generator().manual_seed(3)
    batch = random_page_batch(size, candidates, slots, generator, author_cap=2, padding=padding)
    return (*make(), batch)


@torch.inference_mode()
def test_student_forward_equals_the_plain_reading(case):
    _, student, _, batch = case
    logits, items = student(batch)
    expected_logits, expected_items = reference_student(student, batch)
    _close(logits, expected_logits)
    _close(items, expected_items)
    _close(student.encoder(batch)[1], reference_encoder(student.encoder, batch)[1])


@torch.inference_mode()
def test_teacher_forward_equals_the_plain_reading(case):
    teacher, _, _, batch = case
    orders = _orders(batch, pages=2)
    prefix = orders.flatten(0, 1)[:, :-1]
    hidden, items = reference_teacher_hidden(teacher, batch, prefix)
    expected = reference_pointer(teacher.pointer, hidden, items).view(*orders.shape, -1)
    _close(teacher.step_logits(batch, orders), expected)
    state = teacher.start(batch).repeat(2)
    for slot in range(batch.num_slots):  # incremental: the prefix alone, its last row
        hidden, items = reference_teacher_hidden(teacher, batch, prefix[:, :slot])
        _close(
            teacher.next_logits(state, prefix[:, :slot]),
            reference_pointer(teacher.pointer, hidden[:, -1:], items)[:, 0],
        )


@torch.inference_mode()
def test_evaluator_forward_equals_the_plain_reading(case):
    _, _, evaluator, batch = case
    orders = _orders(batch, pages=3)
    _close(evaluator.engagement(batch, orders), reference_engagement(evaluator, batch, orders))


class _FixedLogits:
    """A NAR policy with a given matching matrix."""

    decodes_autoregressively = False

    def __init__(self, logits):
        self.matrix = logits

    def logits(self, batch):
        return self.matrix


def test_greedy_pages_are_those_of_the_plain_reading():
    _, student, _ = _default_models()
    batch = random_page_batch(1, 50, 10, torch.Generator().manual_seed(0), author_cap=2)
    with torch.inference_mode():
        expected = greedy(_FixedLogits(reference_student(student, batch)[0]), batch)
    decoded = greedy(student, batch)
    assert torch.equal(decoded.orders, expected.orders)
    _close(decoded.probs, expected.probs)


def test_training_gradients_equal_those_of_the_plain_reading():
    _, student, _ = _random_models()
    student.train()
    batch = random_page_batch(2, 8, 4, torch.Generator().manual_seed(1), author_cap=1, padding=1)
    weights = torch.randn(2, 4, 8, generator=torch.Generator().manual_seed(2))
    gradients = []
    for forward in (student, lambda b: reference_student(student, b)):
        student.zero_grad()
        (forward(batch)[0] * weights).sum().backward()
        gradients.append([parameter.grad.clone() for parameter in student.parameters()])
    for actual, expected in zip(*gradients, strict=True):
        torch.testing.assert_close(actual, expected, atol=1e-5, rtol=1e-5)


def test_helpers_equal_their_plain_reading():
    authors = torch.tensor([[3, 3, -1, -1, 2, 3], [0, 1, 0, 5, 5, -1]])
    assert torch.equal(same_author(authors), reference_same_author(authors))
    keep = torch.tensor([[True, False, True], [True, True, False]])
    assert torch.equal(key_padding_bias(keep), reference_key_padding_bias(keep))
    assert key_padding_bias(keep).dtype == torch.float32 and math.isfinite(MASKED)
    student = _random_models()[1]
    layout = torch.arange(len(LAYOUTS))
    assert torch.equal(student.slot_embedding(layout, 4), reference_slots(student.slot_embedding, layout, 4))
