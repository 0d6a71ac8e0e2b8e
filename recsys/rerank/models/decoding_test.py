import itertools

import pytest
import torch
from scipy.stats import chi2

from recsys.data.pages import PageBatch, within_author_cap
from recsys.rerank.models import decoding
from recsys.rerank.models.config import TINY
from recsys.rerank.models.decoding import (
    UNAVAILABLE,
    assignment,
    available,
    chosen_log_probs,
    contrastive,
    greedy,
    page_capacity,
    sample,
    sample_sequentially,
    step_log_probs,
)
from recsys.rerank.models.score_sort import ScoreAndSort
from recsys.rerank.models.student import NARStudent
from recsys.rerank.models.teacher import ARTeacher
from recsys.rerank.models.testing import random_page_batch


class FixedLogits(torch.nn.Module):
    """A NAR policy whose matching matrix is given: [B, m, n]."""

    decodes_autoregressively = False

    def __init__(self, values: torch.Tensor) -> None:
        super().__init__()
        self.values = values

    def logits(self, batch: PageBatch) -> torch.Tensor:
        return self.values

    def step_logits(self, batch: PageBatch, orders: torch.Tensor) -> torch.Tensor:
        return self.values.unsqueeze(1).expand(-1, orders.shape[1], -1, -1)


def _policies():
    torch.manual_seed(0)
    return {"teacher": ARTeacher(TINY).eval(), "student": NARStudent(TINY).eval(), "score": ScoreAndSort()}


def _capped_batch(seed=0, size=4):
    return random_page_batch(
        size, 9, 4, torch.Generator().manual_seed(seed), author_cap=1, authors=4, padding=2
    )


def _toy_batch(authors, cap, slots=2):
    candidates = len(authors)
    return PageBatch(
        features=torch.rand(1, candidates, 11, generator=torch.Generator().manual_seed(0)),
        authors=torch.tensor([authors]),
        valid=torch.ones(1, candidates, dtype=torch.bool),
        options=torch.tensor([[1.0, 0.5, 0.2, 0.1]]),
        author_cap=torch.tensor([cap]),
        layout=torch.tensor([1]),
        num_slots=slots,
    )


def _assert_pages_are_legal(batch: PageBatch, orders: torch.Tensor) -> None:
    """orders [B, K, m]: no repeats, only valid candidates, within the author cap."""
    slots = orders.shape[-1]
    assert all(len(set(page)) == slots for page in orders.reshape(-1, slots).tolist())
    assert batch.valid.gather(1, orders.flatten(1)).all()
    assert within_author_cap(batch, orders).all()


def test_available_and_step_log_probs_against_a_reference_loop():
    batch = _capped_batch()
    batch.author_cap[1] = 0  # one request without a cap
    generator = torch.Generator().manual_seed(1)
    orders = torch.stack([torch.randperm(7, generator=generator)[:4] for _ in range(4 * 3)]).view(4, 3, 4)
    logits = torch.randn(4, 3, 4, 9, generator=generator, requires_grad=True)
    keep = available(orders, batch)
    for row, page, slot in itertools.product(range(4), range(3), range(4)):
        before = orders[row, page, :slot].tolist()
        held = [int(batch.authors[row, i]) for i in before]
        cap = int(batch.author_cap[row])
        for candidate in range(9):
            author = int(batch.authors[row, candidate])
            expected = (
                bool(batch.valid[row, candidate])
                and candidate not in before
                and (cap == 0 or author < 0 or held.count(author) < cap)
            )
            assert bool(keep[row, page, slot, candidate]) == expected
    log_probs = step_log_probs(logits, orders, batch)
    assert torch.isfinite(log_probs).all()
    assert (log_probs[~keep] == UNAVAILABLE).all()
    rows = keep.any(dim=-1)
    normalised = log_probs.masked_fill(~keep, -torch.inf).logsumexp(dim=-1)
    torch.testing.assert_close(normalised[rows], torch.zeros(int(rows.sum())))
    chosen_log_probs(log_probs, orders).sum().backward()
    assert (logits.grad[~keep] == 0).all() and torch.isfinite(logits.grad).all()


@pytest.mark.parametrize("name", ["teacher", "student", "score"])
def test_every_decoder_makes_legal_pages(name):
    policy = _policies()[name]
    batch = _capped_batch()
    decoded = greedy(policy, batch)
    _assert_pages_are_legal(batch, decoded.orders.unsqueeze(1))
    assert ((decoded.probs > 0) & (decoded.probs <= 1)).all()
    generator = torch.Generator().manual_seed(0)
    for sampler in (sample, sample_sequentially):
        orders, log_probs = sampler(policy, batch, 5, generator)
        assert orders.shape == log_probs.shape == (4, 5, 4)
        _assert_pages_are_legal(batch, orders)
        assert (log_probs <= 0).all() and (log_probs > UNAVAILABLE / 2).all()
    if name == "student":
        for decoded in (assignment(policy, batch), contrastive(policy, batch, alpha=0.5)):
            _assert_pages_are_legal(batch, decoded.orders.unsqueeze(1))


@pytest.mark.parametrize("name", ["teacher", "student", "score"])
def test_sampled_log_probs_equal_the_recomputed_ones(name):
    policy = _policies()[name]
    batch = _capped_batch(seed=5)
    for sampler in (sample, sample_sequentially):
        orders, log_probs = sampler(policy, batch, 6, torch.Generator().manual_seed(2))
        with torch.no_grad():
            recomputed = chosen_log_probs(
                step_log_probs(policy.step_logits(batch, orders), orders, batch), orders
            )
        torch.testing.assert_close(log_probs, recomputed, atol=1e-5, rtol=1e-5)


def test_sampling_is_deterministic_by_generator():
    student, batch = _policies()["student"], _capped_batch()
    first = sample(student, batch, 8, torch.Generator().manual_seed(7))[0]
    assert torch.equal(first, sample(student, batch, 8, torch.Generator().manual_seed(7))[0])
    assert not torch.equal(first, sample(student, batch, 8, torch.Generator().manual_seed(8))[0])


def _exact_page_probabilities(policy, batch):
    """P(page) = product of the masked per-step probabilities, for every ordered page of the toy."""
    pages = torch.tensor(list(itertools.permutations(range(batch.num_candidates), batch.num_slots)))
    orders = pages.unsqueeze(0)  # [1, P, m]
    with torch.no_grad():
        log_probs = chosen_log_probs(step_log_probs(policy.step_logits(batch, orders), orders, batch), orders)
    return pages, log_probs.sum(dim=-1).exp().squeeze(0)


def _chi_square_holds(pages, expected, orders):
    counts = torch.tensor([(orders == page).all(dim=-1).sum().item() for page in pages], dtype=torch.float64)
    total = counts.sum()
    possible = expected > 1e-6
    assert counts[~possible].sum() == 0  # pages that break the cap are never drawn
    expected_counts = expected[possible].double() * total
    statistic = ((counts[possible] - expected_counts) ** 2 / expected_counts).sum()
    return statistic < chi2.ppf(0.999, int(possible.sum()) - 1)


@pytest.mark.parametrize("name", ["fixed", "teacher"])
def test_gumbel_sample_frequencies_match_the_masked_softmax(name):
    batch = _toy_batch(authors=[0, 0, 1], cap=1)  # 0 and 1 never share a page
    if name == "fixed":
        policy = FixedLogits(torch.tensor([[[1.0, 0.3, -0.5], [-0.2, 0.8, 0.4]]]))
    else:
        policy = _policies()["teacher"]
        torch.nn.init.normal_(policy.pointer.query.weight, std=2.0)  # a peaked, slot-dependent distribution
    pages, expected = _exact_page_probabilities(policy, batch)
    torch.testing.assert_close(expected.sum(), torch.tensor(1.0))
    orders, _ = sample(policy, batch, 20000, torch.Generator().manual_seed(0))
    assert _chi_square_holds(pages, expected, orders[0])
    orders, _ = sample_sequentially(policy, batch, 2000, torch.Generator().manual_seed(0))
    assert _chi_square_holds(pages, expected, orders[0])


def test_assignment_maximises_the_total_log_prob():
    batch = random_page_batch(3, 5, 3, torch.Generator().manual_seed(0), padding=1)
    logits = 3 * torch.randn(3, 3, 5, generator=torch.Generator().manual_seed(1))
    logits[0, 0] = torch.tensor([5.0, 4.9, 0.0, 0.0, 9.0])  # greedy takes 0 at slot 0 and ...
    logits[0, 1] = torch.tensor([5.0, 0.0, 0.0, 0.0, 9.0])  # ... leaves slot 1 a poor choice
    policy = FixedLogits(logits)
    log_probs = logits.masked_fill(~batch.valid.unsqueeze(1), -torch.inf).log_softmax(dim=-1)
    decoded = assignment(policy, batch)
    _assert_pages_are_legal(batch, decoded.orders.unsqueeze(1))
    total = log_probs.gather(-1, decoded.orders.unsqueeze(-1)).sum(dim=(1, 2))
    for row in range(3):
        best = max(
            sum(float(log_probs[row, slot, item]) for slot, item in enumerate(page))
            for page in itertools.permutations(range(4), 3)
        )
        assert abs(float(total[row]) - best) < 1e-5
    greedy_total = log_probs.gather(-1, greedy(policy, batch).orders.unsqueeze(-1)).sum(dim=(1, 2))
    assert total[0] > greedy_total[0] + 1.0
    torch.testing.assert_close(
        decoded.probs, log_probs.gather(-1, decoded.orders.unsqueeze(-1)).squeeze(-1).exp()
    )


def test_assignment_falls_back_to_greedy_where_the_cap_can_bind():
    batch = _capped_batch(seed=4)
    logits = torch.randn(4, 4, 9, generator=torch.Generator().manual_seed(0))
    assert torch.equal(
        assignment(FixedLogits(logits), batch).orders, greedy(FixedLogits(logits), batch).orders
    )


def test_contrastive_without_alpha_is_greedy_and_with_alpha_one_avoids_similar_items():
    student, batch = _policies()["student"], _capped_batch(seed=2)
    batch.author_cap[:] = 0
    assert torch.equal(contrastive(student, batch, alpha=0.0).orders, greedy(student, batch).orders)
    orders = contrastive(student, batch, alpha=1.0).orders
    with torch.no_grad():
        unit = torch.nn.functional.normalize(student(batch)[1], dim=-1)
    for row in range(batch.size):
        first = orders[row, 0]
        similarity = unit[row] @ unit[row, first]  # [n]
        similarity[first] = torch.inf
        similarity[~batch.valid[row]] = torch.inf
        assert orders[row, 1] == similarity.argmin()


def test_requests_whose_cap_cannot_be_met_are_refused():
    batch = _toy_batch(authors=[0, 0, 0, -1], cap=1, slots=3)
    assert page_capacity(batch).tolist() == [2]
    with pytest.raises(ValueError, match=r"requests \[0\] cannot fill 3 slots"):
        greedy(ScoreAndSort(), batch)
    batch.author_cap[:] = 2
    assert page_capacity(batch).tolist() == [3]
    _assert_pages_are_legal(batch, greedy(ScoreAndSort(), batch).orders.unsqueeze(1))


def _random_requests(count, seed):
    """Single requests of random shape: caps 0-3, padding, authorless candidates, small author pools."""
    generator = torch.Generator().manual_seed(seed)
    for _ in range(count):
        candidates, slots = int(torch.randint(4, 12, (1,), generator=generator)), 0
        slots = int(torch.randint(1, candidates - 1, (1,), generator=generator))
        padding = int(torch.randint(0, candidates - slots + 1, (1,), generator=generator))
        yield random_page_batch(
            1,
            candidates,
            slots,
            generator,
            author_cap=int(torch.randint(0, 4, (1,), generator=generator)),
            authors=int(torch.randint(1, 5, (1,), generator=generator)),
            padding=padding,
        )


def _tied_scores(rows, slots, candidates, generator):
    """Scores from a few values, so that ties (broken towards the lower index) are common."""
    return torch.randint(0, 3, (rows, slots, candidates), generator=generator).float()


def test_python_walk_equals_the_tensor_argmax_loop_with_caps_and_ties():
    generator = torch.Generator().manual_seed(3)
    for batch in _random_requests(40, seed=0):
        for repeats in (1, 3):
            scores = _tied_scores(repeats, batch.num_slots, batch.num_candidates, generator)
            state = decoding._FewOpen(batch, repeats)
            walked = decoding._walk(scores, state)
            looped = decoding._argmax_loop(scores, decoding._Open(batch, repeats))
            assert torch.equal(walked, looped)
            pages = walked.view(1, repeats, -1)
            assert torch.equal(~state.blocked(), available(pages, batch).view(repeats, batch.num_slots, -1))


def test_python_page_capacity_equals_the_tensor_one(monkeypatch):
    batches = list(_random_requests(30, seed=4))
    python = [page_capacity(batch).tolist() for batch in batches]
    _tensor_path(monkeypatch)
    assert python == [page_capacity(batch).tolist() for batch in batches]
    assert len({capacity[0] for capacity in python}) > 3  # the caps bind differently across requests


def _tensor_path(monkeypatch):
    monkeypatch.setattr(decoding, "FEW_ROWS", 0)


@pytest.mark.parametrize("name", ["teacher", "student", "score", "tied"])
def test_served_greedy_equals_the_tensor_implementation(name, monkeypatch):
    """A single request decodes through `_FewOpen`; forcing the tensor path (the implementation before it)
    must give the same slots and probabilities, the latter as `step_log_probs` computes them."""
    policies = _policies()
    generator = torch.Generator().manual_seed(1)
    results = []
    for batch in _random_requests(12, seed=1):
        if name == "tied":
            policy = FixedLogits(_tied_scores(1, batch.num_slots, batch.num_candidates, generator))
        else:
            policy = policies[name]
        results.append((batch, policy, greedy(policy, batch)))
    _tensor_path(monkeypatch)
    for batch, policy, served in results:
        reference = greedy(policy, batch)
        assert torch.equal(served.orders, reference.orders)
        pages = reference.orders.unsqueeze(1)
        with torch.no_grad():
            steps = step_log_probs(policy.step_logits(batch, pages), pages, batch)
        assert torch.equal(served.probs, reference.probs)
        if name == "teacher":  # teacher forcing is another computation than incremental decoding
            torch.testing.assert_close(served.probs, chosen_log_probs(steps, pages).exp()[:, 0])
        else:  # the formula greedy used before the list path, bit for bit
            assert torch.equal(served.probs, chosen_log_probs(steps, pages).exp()[:, 0])


def test_few_row_sampling_equals_the_tensor_implementation(monkeypatch):
    policies = _policies()
    batches = list(_random_requests(6, seed=2))
    samples = decoding.FEW_ROWS  # as many pages as the list path takes
    served = {
        (index, name): sample(policies[name], batch, samples, torch.Generator().manual_seed(index))
        for index, batch in enumerate(batches)
        for name in ("teacher", "student")
    }
    _tensor_path(monkeypatch)
    for (index, name), (orders, log_probs) in served.items():
        reference = sample(policies[name], batches[index], samples, torch.Generator().manual_seed(index))
        assert torch.equal(orders, reference[0])
        torch.testing.assert_close(log_probs, reference[1])


def test_refusal_is_the_same_on_both_paths(monkeypatch):
    batch = _toy_batch(authors=[0, 0, 0, -1, 1, 1], cap=1, slots=4)
    with pytest.raises(ValueError, match=r"requests \[0\] cannot fill 4 slots: at most \[3\]"):
        greedy(ScoreAndSort(), batch)
    _tensor_path(monkeypatch)
    with pytest.raises(ValueError, match=r"requests \[0\] cannot fill 4 slots: at most \[3\]"):
        greedy(ScoreAndSort(), batch)
