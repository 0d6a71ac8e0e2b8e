import torch

from recsys.mmbee.modules.history import BehaviourEncoder, masked_mean


def test_masked_mean_averages_valid_positions_and_zeroes_empty_rows():
    values = torch.arange(12.0).view(2, 3, 2)
    mask = torch.tensor([[True, False, True], [False, False, False]])
    out = masked_mean(values, mask)
    torch.testing.assert_close(out[0], (values[0, 0] + values[0, 2]) / 2)
    torch.testing.assert_close(out[1], torch.zeros(2))


def test_keys_ignore_actions_and_values_add_them():
    torch.manual_seed(0)
    encoder = BehaviourEncoder(content_dim=4, num_actions=3, dim=6)
    authors, content, actions = torch.randn(2, 5, 6), torch.randn(2, 5, 4), torch.randn(2, 5, 3)
    keys, values = encoder(authors, content, actions)
    keys2, values2 = encoder(authors, content, actions + 1.0)
    torch.testing.assert_close(keys, keys2)
    torch.testing.assert_close(values - keys, encoder.actions(actions))
    assert (values2 - values).abs().max() > 1e-3
