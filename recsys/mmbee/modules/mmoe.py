"""MMoE backbone (Ma et al., KDD 2018): shared experts, one softmax gate and one tower per task.

Input: the concatenated features [B, F] (the model builds them: id embeddings, dense statistics, the
mean-pooled behaviour sequence, the candidate representation with h_m/h_g when enabled). Output: logits
[B, T], one per task of `TASKS` (task 0 is the gift/GTR head).

Experts are one ReLU layer each, computed as one [F, E·h] matmul; gates are one [F, T·E] matmul with a
softmax over experts; towers are a ReLU layer and a linear output per task. Our choice of sizes: 4 experts of
width 32, towers of width 16 (small: see `benchmarks/mmbee_model_latency.py`).
"""

from __future__ import annotations

import torch
from torch import nn


class MMoE(nn.Module):
    def __init__(
        self, in_dim: int, *, num_tasks: int, num_experts: int = 4, expert_dim: int = 32, tower_dim: int = 16
    ) -> None:
        super().__init__()
        self.num_tasks = num_tasks
        self.num_experts = num_experts
        self.experts = nn.Sequential(nn.Linear(in_dim, num_experts * expert_dim), nn.ReLU())
        self.gates = nn.Linear(in_dim, num_tasks * num_experts)
        self.towers = nn.ModuleList(
            nn.Sequential(nn.Linear(expert_dim, tower_dim), nn.ReLU(), nn.Linear(tower_dim, 1))
            for _ in range(num_tasks)
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """features [B, F] -> logits [B, T]."""
        experts = self.experts(features).unflatten(-1, (self.num_experts, -1))  # [B, E, h]
        gates = torch.softmax(
            self.gates(features).unflatten(-1, (self.num_tasks, self.num_experts)), dim=-1
        )  # [B, T, E]
        mixed = torch.einsum("bte,beh->bth", gates, experts)  # [B, T, h]
        return torch.cat([tower(mixed[:, t]) for t, tower in enumerate(self.towers)], dim=-1)  # [B, T]
