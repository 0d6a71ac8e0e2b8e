import pytest
import torch

from recsys.data.batches import METAPATHS
from recsys.mmbee.models.mmbee import batch_inputs
from recsys.mmbee.models.request import (
    CANDIDATE_ROW_INPUT_NAMES,
    REQUEST_VIEWER_INPUT_NAMES,
    ExportableCandidateRows,
    ExportableRequestMMBee,
    request_candidate_input_names,
    request_input_names,
    with_viewer_of,
)
from recsys.mmbee.models.testing import ABLATIONS
from recsys.mmbee.models.testing import tiny_batch as _batch
from recsys.mmbee.models.testing import tiny_model as _model

EXTRA = {
    "unordered_metapaths": {"metapaths": ("a2u2a", "u2a2a", "a2a", "u2a2u")},  # blocks back in GIE's order
    "author_sourced_only": {"metapaths": ("a2a", "a2u2a")},
}


def request_inputs(module: ExportableRequestMMBee, model, request) -> tuple[torch.Tensor, ...]:
    """The request program's inputs for a batch whose rows share row 0's viewer: that viewer once (and, with
    h_m on, the candidate rows last)."""
    names = module.input_names
    if module.takes_h_m:
        rows = ExportableCandidateRows(module)(
            *batch_inputs(request, CANDIDATE_ROW_INPUT_NAMES, model.fusion(request))
        )
        inputs = (*batch_inputs(request, names[:-1]), rows)
    else:
        inputs = batch_inputs(request, names)
    viewer = len(REQUEST_VIEWER_INPUT_NAMES)
    return (*(t[:1] for t in inputs[:viewer]), *inputs[viewer:])


def model_scores(model, batch) -> torch.Tensor:
    with torch.no_grad():
        return torch.sigmoid(model(batch)[:, 0])


@pytest.mark.parametrize("backbone", ["sim", "mmoe"])
@pytest.mark.parametrize("ablation", list(ABLATIONS) + list(EXTRA))
def test_a_request_scores_as_the_model_scores_the_batch_that_repeats_its_viewer(backbone, ablation):
    model = _model(backbone=backbone, **{**ABLATIONS, **EXTRA}[ablation])
    module = ExportableRequestMMBee(model, takes_h_m=model.fusion_arch is not None).eval()
    mixed = _batch(6, seed=3)
    for row in (0, 1, 4):  # row 0: no history; row 1: no expansion at all
        request = with_viewer_of(mixed, row)
        with torch.no_grad():
            scores = module(*request_inputs(module, model, request))
        torch.testing.assert_close(scores, model_scores(model, request), atol=1e-6, rtol=0)


def test_the_viewer_is_read_from_its_single_row_and_every_candidate_from_its_own():
    model = _model()
    module = ExportableRequestMMBee(model, takes_h_m=True).eval()
    request = with_viewer_of(_batch(5, seed=7), 2)
    inputs = request_inputs(module, model, request)
    with torch.no_grad():
        base = module(*inputs)
        named = dict(zip(module.input_names, inputs, strict=True))
        viewer_changes = {
            "history_content": named["history_content"] + 1,
            "user_dense": named["user_dense"] + 1,
            "neighbours_u2a2a": torch.ones_like(named["neighbours_u2a2a"]),
        }
        for name, value in viewer_changes.items():  # the viewer moves every score
            assert (module(*{**named, name: value}.values()) - base).abs().min() > 0, name
        for name in ("author_dense", "candidate_rows"):  # one candidate moves only its own score
            changed = {**named, name: named[name].clone()}
            changed[name][3] += 1.0
            moved = (module(*changed.values()) - base).abs() > 0
            assert moved.tolist() == [False, False, False, True, False], name


def test_a_candidate_row_is_h_m_and_the_candidates_own_expansions():
    model = _model()
    module = ExportableRequestMMBee(model, takes_h_m=True).eval()
    rows_of = ExportableCandidateRows(module)
    batch = _batch(6, seed=2)
    h_m = model.fusion(batch)
    with torch.no_grad():
        rows = rows_of(*batch_inputs(batch, CANDIDATE_ROW_INPUT_NAMES, h_m))
        assert rows.shape == (6, 16 + 2 * (16 + 1))  # h_m, then a2a and a2u2a: pooled [d] each, best logit
        torch.testing.assert_close(rows[:, :16], h_m, atol=0, rtol=0)
        other = {**{f"neighbours_{p}": batch.neighbours[p] for p in METAPATHS}}
        other["neighbours_a2a"] = other["neighbours_a2a"].flip(0)  # another streamer's lists
        moved = rows_of(batch.authors, h_m, other["neighbours_a2a"], other["neighbours_a2u2a"])
        assert (moved[:, 16:] - rows[:, 16:]).abs().max() > 0
        viewer_free = with_viewer_of(batch, 3)  # the viewer does not enter a candidate row
        again = rows_of(*batch_inputs(viewer_free, CANDIDATE_ROW_INPUT_NAMES, h_m))
        torch.testing.assert_close(again, rows, atol=0, rtol=0)
    with pytest.raises(ValueError, match="candidate rows belong to a model with h_m on"):
        ExportableCandidateRows(ExportableRequestMMBee(_model(use_mfq=False)))
    with pytest.raises(ValueError, match="takes_h_m must be set"):
        ExportableRequestMMBee(model)


def test_a_request_program_exports_with_one_viewer_row_and_a_dynamic_candidate_batch():
    model = _model()
    module = ExportableRequestMMBee(model, takes_h_m=True).eval()
    inputs = request_inputs(module, model, with_viewer_of(_batch(4), 1))
    viewer = len(REQUEST_VIEWER_INPUT_NAMES)
    batch_dim = torch.export.Dim("batch")
    dynamic = tuple(None if i < viewer else {0: batch_dim} for i in range(len(inputs)))
    program = torch.export.export(module, inputs, dynamic_shapes=(dynamic,)).module()
    for size, seed in ((3, 5), (9, 6)):
        request = with_viewer_of(_batch(size, seed), 2)
        expected = model_scores(model, request)
        torch.testing.assert_close(
            program(*request_inputs(module, model, request)), expected, atol=1e-5, rtol=0
        )


def test_input_names_and_refusals():
    assert request_input_names(True)[-1] == "candidate_rows" and "candidate_rows" not in request_input_names(
        False
    )
    assert request_input_names(True) == REQUEST_VIEWER_INPUT_NAMES + request_candidate_input_names(True)
    viewer = {name.removeprefix("neighbours_") for name in REQUEST_VIEWER_INPUT_NAMES}
    candidate = {name.removeprefix("neighbours_") for name in request_candidate_input_names(False)}
    assert viewer | candidate >= set(METAPATHS) and not viewer & candidate  # each list read once, by one side
    assert not viewer & {name.removeprefix("neighbours_") for name in CANDIDATE_ROW_INPUT_NAMES}
    with pytest.raises(ValueError, match="takes_h_m needs a model with h_m on"):
        ExportableRequestMMBee(_model(use_mfq=False), takes_h_m=True)
    module = ExportableRequestMMBee(_model(), takes_h_m=True)
    assert not [
        name for name in module.state_dict() if "fusion" in name
    ]  # MFQ is not part of it: h_m is given
    with pytest.raises(ValueError, match="expected"):
        module(torch.zeros(1))
