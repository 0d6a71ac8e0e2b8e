import pytest
import torch

from recsys.mmbee.modules.mfq import MFQ, orthogonal_complete


def test_orthogonal_completion_adds_only_the_orthogonal_part():
    torch.manual_seed(0)
    x, others = torch.randn(4, 6, 16), torch.randn(4, 6, 16)
    y = orthogonal_complete(x, others)
    added = y - x
    torch.testing.assert_close((added * x).sum(-1), torch.zeros(4, 6), atol=1e-4, rtol=0)  # ⟂ x, per token
    # what is added is `others` minus its projection on x: the residual of a least-squares fit on x
    coefficient = (others * x).sum(-1, keepdim=True) / x.square().sum(-1, keepdim=True)
    torch.testing.assert_close(added, others - coefficient * x, atol=1e-5, rtol=0)
    torch.testing.assert_close(orthogonal_complete(x, 3 * x), x, atol=1e-5, rtol=0)  # nothing new: unchanged
    torch.testing.assert_close(orthogonal_complete(x, torch.zeros_like(x)), x)  # single modality
    assert torch.isfinite(
        orthogonal_complete(torch.zeros(2, 3), others[0, :2, :3])
    ).all()  # zero token: no NaN


def _tokens(batch=3, modalities=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, 5, 8, generator=g) for _ in range(modalities)]


def test_learnable_queries_make_h_m_streamer_specific():
    torch.manual_seed(0)
    mfq = MFQ(num_authors=4, content_dim=8, dim=16, num_queries=3)
    with torch.no_grad():
        mfq.queries.weight.normal_()  # trained tables differ per streamer; the init is near zero
    tokens = [t[:1].expand(2, -1, -1) for t in _tokens()]  # the same content twice
    h_m = mfq(torch.tensor([1, 2]), tokens)
    assert h_m.shape == (2, 16)
    assert (h_m[0] - h_m[1]).abs().max() > 1e-3
    torch.testing.assert_close(mfq(torch.tensor([2, 2]), tokens)[0], h_m[1])


def test_without_queries_h_m_ignores_the_streamer_and_has_no_table():
    torch.manual_seed(0)
    mfq = MFQ(num_authors=4, content_dim=8, dim=16, use_queries=False)
    assert mfq.queries is None
    tokens = [t[:1].expand(2, -1, -1) for t in _tokens()]
    h_m = mfq(torch.tensor([1, 3]), tokens)
    torch.testing.assert_close(h_m[0], h_m[1])


def test_modality_subset_builds_only_its_branches_and_checks_inputs():
    mfq = MFQ(num_authors=4, content_dim=8, dim=16, modalities=("visual", "comments"))
    assert len(mfq.projections) == len(mfq.intra) == 2
    assert mfq(torch.tensor([0, 1, 4]), _tokens(modalities=2)).shape == (3, 16)
    with pytest.raises(ValueError, match="expected 2 token tensors"):
        mfq(torch.tensor([0, 1, 4]), _tokens(modalities=3))
    with pytest.raises(ValueError, match="modalities"):
        MFQ(num_authors=4, content_dim=8, modalities=("audio",))


def test_h_m_depends_on_every_used_modality():
    torch.manual_seed(0)
    mfq = MFQ(num_authors=4, content_dim=8, dim=16)
    tokens = _tokens()
    reference = mfq(torch.tensor([1, 2, 3]), tokens)
    for m in range(3):
        changed = list(tokens)
        changed[m] = changed[m] + 1.0
        assert (mfq(torch.tensor([1, 2, 3]), changed) - reference).abs().max() > 1e-4
