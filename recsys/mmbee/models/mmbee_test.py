import dataclasses
import json

import pytest
import torch
import torch.nn.functional as F

from recsys.data.batches import TASKS, GTRBatch, random_batch
from recsys.metrics import auc
from recsys.mmbee.models.mmbee import (
    FLAT_INPUT_NAMES,
    FUSION_INPUT_NAMES,
    H_M_SCORER_INPUT_NAMES,
    ExportableFusion,
    ExportableMMBee,
    MMBeeConfig,
    MMBeeModel,
    batch_inputs,
    flatten_batch,
)
from recsys.mmbee.models.testing import ABLATIONS, A, D, U
from recsys.mmbee.models.testing import tiny_batch as _batch
from recsys.mmbee.models.testing import tiny_model as _model


@pytest.mark.parametrize("backbone", ["sim", "mmoe"])
@pytest.mark.parametrize("ablation", list(ABLATIONS))
def test_every_backbone_and_ablation_scores_every_task(backbone, ablation):
    model = _model(backbone=backbone, **ABLATIONS[ablation])
    c = model.config
    assert (model.fusion_arch is None) == (not c.h_m_enabled)
    assert (model.expansion_arch is None) == (not c.use_gie)
    assert (model.over_arch is None) == (backbone == "mmoe")
    logits = model(_batch())
    assert logits.shape == (6, len(TASKS)) and torch.isfinite(logits).all()


def _changed(batch: GTRBatch, **fields) -> GTRBatch:
    return dataclasses.replace(batch, **fields)


@pytest.mark.parametrize("backbone", ["sim", "mmoe"])
def test_padding_values_do_not_change_the_scores(backbone):
    model = _model(backbone=backbone, sim_top_k=4)
    batch = _batch()
    reference = model(batch)
    padded = ~batch.history_mask  # [B, H]
    content, actions = batch.history_content.clone(), batch.history_actions.clone()
    content[padded] = 100.0
    actions[padded] = -100.0
    torch.testing.assert_close(
        model(_changed(batch, history_content=content, history_actions=actions)), reference
    )
    # more padding columns, and the neighbour lists in another order: the same expansion
    neighbours = {
        n: torch.cat([v.flip(1), torch.zeros(6, 3, dtype=torch.long)], dim=1)
        for n, v in batch.neighbours.items()
    }
    torch.testing.assert_close(model(_changed(batch, neighbours=neighbours)), reference)


def _differs(model: MMBeeModel, batch: GTRBatch, **fields) -> bool:
    return bool((model(_changed(batch, **fields)) - model(batch)).abs().max() > 1e-5)


def test_a_removed_modality_is_not_read():
    model = _model(modalities=("visual", "comments"))
    batch = _batch()
    assert not _differs(model, batch, speech=torch.randn_like(batch.speech))
    assert _differs(model, batch, visual=torch.randn_like(batch.visual))
    assert _differs(model, batch, comments=torch.randn_like(batch.comments))


@pytest.mark.parametrize("switch", ["use_mfq", "use_h_m"])
def test_without_mfq_the_segment_content_is_not_read(switch):
    model = _model(**{switch: False})
    batch = _batch()
    new = {m: torch.randn_like(getattr(batch, m)) for m in ("visual", "speech", "comments")}
    assert not _differs(model, batch, **new)
    assert _differs(_model(), batch, **new)


def test_without_gie_no_neighbour_is_read_and_without_h_g_only_theta_is():
    batch = _batch()
    neighbours = {n: torch.randint(1, A + 1, v.shape) for n, v in batch.neighbours.items()}
    assert _differs(_model(), batch, neighbours=neighbours)
    assert not _differs(_model(use_gie=False), batch, neighbours=neighbours)
    no_h_g = _model(use_h_g=False)
    assert not _differs(no_h_g, batch, neighbours=neighbours)
    before = no_h_g(batch)
    with torch.no_grad():
        no_h_g.expansion_arch.theta_authors.add_(1.0)
    assert (no_h_g(batch) - before).abs().max() > 1e-5


def test_without_theta_the_given_tables_are_ignored_and_the_node_tables_learn():
    model = _model(use_theta=False)
    assert {"theta_users", "theta_authors"} <= {n.rsplit(".", 1)[-1] for n, _ in model.named_parameters()}
    torch.testing.assert_close(model(_batch()), _model(use_theta=False)(_batch()))  # the seed, not the tables


def test_different_streamers_get_different_h_m_for_the_same_content():
    model = _model()
    batch = _batch(2)
    tokens = [getattr(batch, m)[:1].expand(2, -1, -1) for m in model.fusion_arch.modalities]
    h_m = model.fusion_arch(torch.tensor([1, 2]), tokens)
    assert (h_m[0] - h_m[1]).abs().max() > 1e-3


@pytest.mark.parametrize("backbone", ["sim", "mmoe"])
def test_unknown_ids_score_finite_and_train(backbone):
    model = _model(backbone=backbone).train()
    batch = _batch(3)
    zeros = torch.zeros(3, dtype=torch.long)
    cold = _changed(
        batch,
        users=zeros,
        authors=zeros,
        history_authors=torch.zeros_like(batch.history_authors),
        neighbours={n: torch.zeros_like(v) for n, v in batch.neighbours.items()},
    )
    logits = model(cold)
    assert torch.isfinite(logits).all()
    logits.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize(
    ("backbone", "ablation"), [("sim", "full"), ("mmoe", "full"), ("sim", "no_theta"), ("mmoe", "no_queries")]
)
def test_gradients_reach_every_enabled_parameter(backbone, ablation):
    model = _model(backbone=backbone, **ABLATIONS[ablation]).train()
    model(_batch(8)).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


def test_a_planted_content_signal_is_learned_with_mfq_and_not_without():
    def data(n, seed):
        batch = random_batch(
            n, num_users=U, num_authors=A, content_dim=D, generator=torch.Generator().manual_seed(seed)
        )
        signal = (batch.visual.mean(dim=(1, 2)) > 0).float()  # [B]
        return _changed(batch, labels=signal[:, None].expand(-1, len(TASKS)).contiguous())

    train, test = data(512, 1), data(512, 2)
    results = {}
    for use_mfq in (True, False):
        model = _model(use_mfq=use_mfq, use_gie=False, backbone="sim").train()
        optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
        for step in range(200):
            rows = torch.arange(step * 64, (step + 1) * 64) % 512
            part = GTRBatch(
                **{
                    f.name: {k: v[rows] for k, v in getattr(train, f.name).items()}
                    if f.name == "neighbours"
                    else getattr(train, f.name)[rows]
                    for f in dataclasses.fields(train)
                }
            )
            loss = F.binary_cross_entropy_with_logits(model(part), part.labels)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        with torch.no_grad():
            results[use_mfq] = auc(test.labels[:, 0].numpy(), model.eval()(test)[:, 0].numpy())
    assert results[True] > 0.9, results
    assert results[False] < 0.65, results


def test_config_round_trips_through_json_and_rejects_bad_values():
    config = MMBeeConfig(
        num_users=3, num_authors=2, content_dim=4, backbone="mmoe", modalities=("visual",), metapaths=("a2a",)
    )
    again = MMBeeConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config and again.modalities == ("visual",)
    with pytest.raises(ValueError, match="unknown MMBeeConfig fields"):
        MMBeeConfig.from_dict({**config.to_dict(), "dropout": 0.1})
    for bad in (
        {"backbone": "din"},
        {"modalities": ("audio",)},
        {"metapaths": ("u2u",)},
        {"metapaths": ()},
        {"num_heads": 3},
    ):
        with pytest.raises(ValueError):
            MMBeeConfig(num_users=3, num_authors=2, content_dim=4, **bad)
    MMBeeConfig(num_users=3, num_authors=2, content_dim=4, metapaths=(), use_h_g=False)  # w/o h_g needs none


def test_a_state_dict_restores_the_model_without_the_theta_tables():
    model = _model()
    restored = MMBeeModel(model.config).eval()  # Θ not given: zero buffers until loaded
    restored.load_state_dict(model.state_dict())
    torch.testing.assert_close(restored(_batch()), model(_batch()))


@pytest.mark.parametrize("backbone", ["sim", "mmoe"])
def test_export_with_a_dynamic_batch_matches_eager(backbone):
    exportable = ExportableMMBee(_model(backbone=backbone))
    assert len(flatten_batch(_batch())) == len(FLAT_INPUT_NAMES)
    batch_dim = torch.export.Dim("batch")
    flat = flatten_batch(_batch(4))
    program = torch.export.export(exportable, flat, dynamic_shapes=(tuple({0: batch_dim} for _ in flat),))
    for size, seed in ((3, 5), (9, 6)):
        inputs = flatten_batch(_batch(size, seed))
        expected = exportable(*inputs)
        assert expected.shape == (size,)
        torch.testing.assert_close(program.module()(*inputs), expected, atol=1e-5, rtol=0)
        torch.testing.assert_close(expected, torch.sigmoid(exportable.model(_batch(size, seed))[:, 0]))


def test_a_cached_h_m_gives_the_same_scores():
    model = _model()
    batch = _batch()
    h_m = model.fusion(batch)
    torch.testing.assert_close(model(batch, h_m), model(batch))
    assert _model(use_mfq=False).fusion(batch) is None


@pytest.mark.parametrize("overrides", [{}, {"backbone": "mmoe"}, {"modalities": ("speech",)},
                                       {"use_queries": False}, {"gie_query_uses_h_m": False}])  # fmt: skip
def test_fusion_and_the_h_m_scorer_export_with_a_dynamic_batch_and_compose_to_the_model(overrides):
    model = _model(**overrides)
    fusion, scorer = ExportableFusion(model), ExportableMMBee(model, takes_h_m=True)
    batch_dim = torch.export.Dim("batch")
    example = _batch(4)
    fusion_inputs = batch_inputs(example, FUSION_INPUT_NAMES)
    h_m = fusion(*fusion_inputs)
    scorer_inputs = batch_inputs(example, H_M_SCORER_INPUT_NAMES, h_m)
    fusion_program = torch.export.export(
        fusion, fusion_inputs, dynamic_shapes=tuple({0: batch_dim} for _ in fusion_inputs)
    ).module()
    scorer_program = torch.export.export(
        scorer, scorer_inputs, dynamic_shapes=(tuple({0: batch_dim} for _ in scorer_inputs),)
    ).module()
    for size, seed in ((3, 5), (9, 6)):
        batch = _batch(size, seed)
        h_m = fusion_program(*batch_inputs(batch, FUSION_INPUT_NAMES))  # [size, d]
        torch.testing.assert_close(h_m, model.fusion(batch), atol=1e-5, rtol=0)
        scores = scorer_program(*batch_inputs(batch, H_M_SCORER_INPUT_NAMES, h_m))  # [size]
        torch.testing.assert_close(scores, torch.sigmoid(model(batch)[:, 0]), atol=1e-5, rtol=0)


def test_the_h_m_scorer_reads_no_segment_tokens_and_needs_h_m_on():
    assert not set(H_M_SCORER_INPUT_NAMES) & {"visual", "speech", "comments"}
    assert H_M_SCORER_INPUT_NAMES[-1] == "h_m" and len(H_M_SCORER_INPUT_NAMES) == len(FLAT_INPUT_NAMES) - 2
    with pytest.raises(ValueError, match="takes_h_m needs a model with h_m on"):
        ExportableMMBee(_model(use_mfq=False), takes_h_m=True)
    with pytest.raises(ValueError, match="no h_m to export"):
        ExportableFusion(_model(use_h_m=False))
    with pytest.raises(ValueError, match="pass the fusion rows"):
        batch_inputs(_batch(), H_M_SCORER_INPUT_NAMES)
