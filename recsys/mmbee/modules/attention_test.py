import torch

from recsys.mmbee.modules.attention import AttentionBlock, MultiHeadAttention, masked_attention_pool


def test_masked_pool_is_the_softmax_over_valid_keys_only():
    torch.manual_seed(0)
    logits, values = torch.randn(3, 5), torch.randn(3, 5, 4)
    mask = torch.tensor([[1, 1, 0, 1, 0], [0, 0, 0, 0, 0], [1, 0, 0, 0, 0]], dtype=torch.bool)
    empty = torch.randn(4)
    pooled = masked_attention_pool(logits, values, mask, empty)
    valid = mask[0]
    expected = torch.softmax(logits[0, valid], 0) @ values[0, valid]
    torch.testing.assert_close(pooled[0], expected)
    torch.testing.assert_close(pooled[1], empty)  # all padding: the empty vector, not NaN
    torch.testing.assert_close(pooled[2], values[2, 0])  # one valid key takes all the weight
    changed = values.clone()
    changed[~mask] = 1e6  # padded values never leak in
    torch.testing.assert_close(masked_attention_pool(logits, changed, mask, empty), pooled)


def test_all_padding_row_has_finite_gradients():
    logits = torch.randn(1, 3, requires_grad=True)
    values = torch.randn(1, 3, 2, requires_grad=True)
    empty = torch.zeros(2, requires_grad=True)
    masked_attention_pool(logits, values, torch.zeros(1, 3, dtype=torch.bool), empty).sum().backward()
    assert torch.isfinite(logits.grad).all() and torch.isfinite(values.grad).all()
    torch.testing.assert_close(empty.grad, torch.ones(2))


def test_attention_matches_torch_multihead_attention():
    torch.manual_seed(0)
    ours = MultiHeadAttention(8, 2)
    reference = torch.nn.MultiheadAttention(8, 2, batch_first=True)
    with torch.no_grad():
        reference.in_proj_weight.copy_(torch.cat([ours.q.weight, ours.kv.weight]))
        reference.in_proj_bias.copy_(torch.cat([ours.q.bias, ours.kv.bias]))
        reference.out_proj.weight.copy_(ours.out.weight)
        reference.out_proj.bias.copy_(ours.out.bias)
    x, context = torch.randn(2, 3, 8), torch.randn(2, 5, 8)
    expected, _ = reference(x, context, context, need_weights=False)
    torch.testing.assert_close(ours(x, context), expected)


def test_self_attention_block_is_permutation_equivariant():
    torch.manual_seed(0)
    block = AttentionBlock(8, 2).eval()
    x = torch.randn(2, 5, 8)
    perm = torch.tensor([3, 0, 4, 1, 2])
    torch.testing.assert_close(block(x)[:, perm], block(x[:, perm]))
