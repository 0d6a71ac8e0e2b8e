"""Tiny MMBee models and batches shared by the model tests (`mmbee_test.py`, `request_test.py`): a test module
cannot import another test module under Bazel, so the fixtures live here."""

from __future__ import annotations

import torch

from recsys.data.batches import METAPATHS, GTRBatch, random_batch
from recsys.mmbee.models.mmbee import MMBeeConfig, MMBeeModel

U, A, D, DT = 10, 5, 8, 6


def tiny_model(**overrides) -> MMBeeModel:
    torch.manual_seed(0)
    config = MMBeeConfig(
        num_users=U, num_authors=A, content_dim=D, theta_dim=DT, hidden_dim=16, embedding_dim=16, **overrides
    )
    g = torch.Generator().manual_seed(1)
    model = MMBeeModel(config, torch.randn(U + 1, DT, generator=g), torch.randn(A + 1, DT, generator=g))
    if model.fusion_arch is not None and model.fusion_arch.queries is not None:
        with torch.no_grad():  # trained queries differ per streamer; the init is near zero
            model.fusion_arch.queries.weight.normal_()
    return model.eval()


def tiny_batch(batch_size=6, seed=0) -> GTRBatch:
    batch = random_batch(
        batch_size,
        num_users=U,
        num_authors=A,
        content_dim=D,
        history=7,
        neighbours=4,
        generator=torch.Generator().manual_seed(seed),
    )
    batch.history_authors[0] = 0  # a viewer with no history
    for name in METAPATHS:
        batch.neighbours[name][1] = 0  # an impression with no expansion at all
    return batch


ABLATIONS = {
    "full": {},
    "no_mfq": {"use_mfq": False},
    "no_h_m": {"use_h_m": False},
    "no_queries": {"use_queries": False},
    "visual_only": {"modalities": ("visual",)},
    "speech_comments": {"modalities": ("speech", "comments")},
    "no_gie": {"use_gie": False},
    "no_h_g": {"use_h_g": False},
    "no_theta": {"use_theta": False},
    "one_metapath": {"metapaths": ("a2a",)},
    "user_metapaths": {"metapaths": ("u2a2u", "u2a2a")},
    "gie_query_without_h_m": {"gie_query_uses_h_m": False},
    "base_only": {"use_mfq": False, "use_gie": False},
}
