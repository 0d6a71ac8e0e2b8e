import pytest
import torch

from recsys.data.batches import METAPATH_TARGET, METAPATHS
from recsys.mmbee.modules.gie import GIE

U, A, DT = 8, 6, 5


def _gie(**kwargs):
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    kwargs.setdefault("theta_users", torch.randn(U + 1, DT, generator=g))
    kwargs.setdefault("theta_authors", torch.randn(A + 1, DT, generator=g))
    return GIE(num_users=U, num_authors=A, theta_dim=DT, dim=8, **kwargs)


def _neighbours(batch=4, k=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {
        name: torch.randint(0, (U if METAPATH_TARGET[name] == "user" else A) + 1, (batch, k), generator=g)
        for name in METAPATHS
    }


def test_padding_count_and_order_do_not_change_h_g():
    gie = _gie()
    users, authors = torch.tensor([1, 0, 3, 8]), torch.tensor([2, 6, 0, 1])
    neighbours = _neighbours()
    out = gie(users, authors, neighbours)
    assert out.h_g.shape == out.theta_user.shape == out.theta_author.shape == (4, 8)
    padded = {
        name: torch.cat([torch.zeros(4, 2, dtype=torch.long), n.flip(1)], dim=1)
        for name, n in neighbours.items()
    }
    torch.testing.assert_close(gie(users, authors, padded).h_g, out.h_g)


def test_all_padding_lists_give_the_learned_empty_vectors():
    gie = _gie(metapaths=("a2a",))
    with torch.no_grad():
        gie.empty.normal_()
    empty = {"a2a": torch.zeros(2, 3, dtype=torch.long)}
    h_g = gie(torch.tensor([1, 2]), torch.tensor([1, 2]), empty).h_g
    torch.testing.assert_close(h_g, gie.output(torch.cat([gie.empty[0], torch.zeros(1)])).expand(2, -1))
    assert not torch.equal(
        h_g, gie(torch.tensor([1, 2]), torch.tensor([1, 2]), {"a2a": torch.ones(2, 3, dtype=torch.long)}).h_g
    )


def test_theta_is_frozen_and_copied_but_learnable_without_theta():
    theta_users = torch.randn(U + 1, DT)
    gie = _gie(theta_users=theta_users)
    names = {name for name, _ in gie.named_parameters()}
    assert "theta_users" not in names and "theta_users" in gie.state_dict()
    theta_users += 1.0
    assert not torch.equal(gie.theta_users, theta_users)
    learnable = _gie(use_theta=False, theta_users=None, theta_authors=None)
    assert {"theta_users", "theta_authors"} <= {name for name, _ in learnable.named_parameters()}
    with pytest.raises(ValueError, match="theta_authors must have shape"):
        _gie(theta_authors=torch.randn(A, DT))


def test_theta_rows_are_the_projected_tables():
    gie = _gie()
    out = gie(torch.tensor([3]), torch.tensor([5]), _neighbours(batch=1))
    torch.testing.assert_close(out.theta_user[0], gie.user_projection(gie.theta_users[3]))
    torch.testing.assert_close(out.theta_author[0], gie.author_projection(gie.theta_authors[5]))


def test_neighbour_space_follows_the_metapath_target():
    gie = _gie(metapaths=("u2a2u",))
    neighbours = {
        "u2a2u": torch.tensor([[U, 0]])
    }  # index U exists only among users (the author table has A + 1 rows)
    before = gie(torch.tensor([1]), torch.tensor([1]), neighbours).h_g
    with torch.no_grad():
        gie.theta_users[U] += 1.0
    assert (gie(torch.tensor([1]), torch.tensor([1]), neighbours).h_g - before).abs().max() > 1e-4


def test_without_metapaths_there_is_no_h_g_and_no_neighbour_is_read():
    gie = _gie(metapaths=())
    out = gie(torch.tensor([1, 2]), torch.tensor([3, 4]), {})
    assert out.h_g is None and out.theta_user.shape == (2, 8)
    assert sum(p.numel() for p in gie.parameters()) == 2 * (DT * 8 + 8)


def test_query_context_changes_the_pooling_weights():
    gie = _gie(query_context_dim=4)
    users, authors, neighbours = torch.tensor([1, 2]), torch.tensor([3, 4]), _neighbours(batch=2, k=4)
    a = gie(users, authors, neighbours, torch.zeros(2, 4)).h_g
    b = gie(users, authors, neighbours, torch.ones(2, 4) * 3).h_g
    assert (a - b).abs().max() > 1e-4
    with pytest.raises(ValueError, match="query_context"):
        gie(users, authors, neighbours)


def test_pooling_all_metapaths_at_once_equals_pooling_each_alone():
    gie = _gie(metapaths=("a2a", "u2a2u", "a2u2a"))
    with torch.no_grad():
        gie.empty.normal_()
    users, authors = torch.tensor([1, 2, 0]), torch.tensor([3, 4, 5])
    neighbours = _neighbours(batch=3, k=4)
    neighbours["a2a"] = neighbours["a2a"][:, :2]  # lists of unequal length
    neighbours["a2a"][0] = 0
    pooled, closest = [], []
    order = gie.user_metapaths + gie.author_metapaths
    assert order == ("u2a2u", "a2a", "a2u2a")
    query = gie.query_projection(gie.embed_authors(authors)).unflatten(-1, (3, 8))  # [B, P, d]
    for p, name in enumerate(order):
        index = neighbours[name]
        nodes = gie.embed_users(index) if name == "u2a2u" else gie.embed_authors(index)  # [B, K, d]
        logits = torch.einsum("bkd,bd->bk", nodes, query[:, p]) / 8**0.5
        weights = torch.softmax(logits.masked_fill(index == 0, float("-inf")), dim=-1).nan_to_num()
        empty_rows = (index == 0).all(1, keepdim=True)
        pooled.append(torch.where(empty_rows, gie.empty[p], torch.einsum("bk,bkd->bd", weights, nodes)))
        best = logits.masked_fill(index == 0, float("-inf")).amax(-1)
        closest.append(torch.where(empty_rows.squeeze(1), 0.0, best))
    expected = gie.output(torch.cat([*pooled, torch.stack(closest, dim=1)], dim=-1))
    torch.testing.assert_close(gie(users, authors, neighbours).h_g, expected)
