import torch

from recsys.mmbee.modules.mmoe import MMoE


def test_mmoe_matches_a_per_task_reference():
    torch.manual_seed(0)
    mmoe = MMoE(10, num_tasks=3, num_experts=4, expert_dim=6, tower_dim=5)
    x = torch.randn(7, 10)
    logits = mmoe(x)
    assert logits.shape == (7, 3)
    w, b = mmoe.experts[0].weight, mmoe.experts[0].bias
    experts = [
        torch.relu(x @ w[i * 6 : (i + 1) * 6].T + b[i * 6 : (i + 1) * 6]) for i in range(4)
    ]  # 4 x [B, 6]
    for t in range(3):
        gate_w, gate_b = mmoe.gates.weight[t * 4 : (t + 1) * 4], mmoe.gates.bias[t * 4 : (t + 1) * 4]
        gate = torch.softmax(x @ gate_w.T + gate_b, dim=-1)  # [B, 4]
        mixed = sum(gate[:, i : i + 1] * experts[i] for i in range(4))
        torch.testing.assert_close(logits[:, t], mmoe.towers[t](mixed).squeeze(-1))


def test_tasks_have_their_own_towers():
    torch.manual_seed(0)
    mmoe = MMoE(10, num_tasks=2)
    x = torch.randn(4, 10)
    before = mmoe(x)
    with torch.no_grad():
        mmoe.towers[1][-1].bias += 1.0
    after = mmoe(x)
    torch.testing.assert_close(after[:, 0], before[:, 0])
    torch.testing.assert_close(after[:, 1], before[:, 1] + 1.0)
