import torch

from recsys.mmbee.modules.sim import SIM, OverArch


def _inputs(batch=3, history=10, dim=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    candidate = torch.randn(batch, 12, generator=g)
    keys, values = (
        torch.randn(batch, history, dim, generator=g),
        torch.randn(batch, history, dim, generator=g),
    )
    mask = torch.rand(batch, history, generator=g) < 0.7
    return candidate, keys, values, mask


def test_search_keeps_the_top_k_real_behaviours():
    torch.manual_seed(0)
    sim = SIM(query_dim=12, dim=8, top_k=3)
    candidate, keys, values, mask = _inputs()
    mask[:, :4] = True  # at least k real items per row
    out = sim(candidate, keys, values, mask)
    # reference: keep only the 3 real behaviours with the highest ⟨key, q⟩; the output must not change
    scores = torch.einsum("bhd,bd->bh", keys, sim.query(candidate)).masked_fill(~mask, float("-inf"))
    top = scores.topk(3, dim=1).indices
    only_top = torch.zeros_like(mask).scatter(1, top, True)
    torch.testing.assert_close(sim(candidate, keys, values, only_top), out)
    # and a behaviour outside the top-k does not matter
    changed = values.clone()
    changed[mask & ~only_top] += 100.0
    torch.testing.assert_close(sim(candidate, keys, changed, mask), out)


def test_padding_is_never_selected_ahead_of_real_items_and_never_matters():
    torch.manual_seed(0)
    sim = SIM(query_dim=12, dim=8, top_k=4)
    candidate, keys, values, mask = _inputs()
    out = sim(candidate, keys, values, mask)
    keys2, values2 = keys.clone(), values.clone()
    keys2[~mask] = 50.0  # padding with huge inner products
    values2[~mask] = -7.0
    torch.testing.assert_close(sim(candidate, keys2, values2, mask), out)


def test_empty_history_gives_the_empty_interest():
    sim = SIM(query_dim=12, dim=8, top_k=4)
    candidate, keys, values, _ = _inputs()
    out = sim(candidate, keys, values, torch.zeros(3, 10, dtype=torch.bool))
    torch.testing.assert_close(out, sim.empty.expand(3, -1))


def test_search_projection_learns_through_the_kept_scores():
    torch.manual_seed(0)
    sim = SIM(query_dim=12, dim=8, top_k=3)
    candidate, keys, values, mask = _inputs()
    sim(candidate, keys, values, mask).sum().backward()
    for name, p in sim.named_parameters():
        if name != "empty":
            assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_over_arch_shapes():
    assert OverArch(10, (16, 8), 3)(torch.randn(5, 10)).shape == (5, 3)
    assert OverArch(10, (), 2)(torch.randn(5, 10)).shape == (5, 2)
