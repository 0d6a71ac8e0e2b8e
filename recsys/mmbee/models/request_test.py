import pytest
import torch

from recsys.data.batches import METAPATHS
from recsys.mmbee.models.mmbee import batch_inputs
from recsys.mmbee.models.mmbee_test import ABLATIONS, _batch, _model
from recsys.mmbee.models.request import (
    REQUEST_VIEWER_INPUT_NAMES,
    ExportableRequestMMBee,
    request_candidate_input_names,
    request_input_names,
    with_viewer_of,
)

EXTRA = {
    "unordered_metapaths": {"metapaths": ("a2u2a", "u2a2a", "a2a", "u2a2u")},  # blocks back in GIE's order
    "author_sourced_only": {"metapaths": ("a2a", "a2u2a")},
}


def request_inputs(module: ExportableRequestMMBee, model, request) -> tuple[torch.Tensor, ...]:
    """The request program's inputs for a batch whose rows share row 0's viewer: that viewer once."""
    h_m = model.fusion(request) if module.takes_h_m else None
    inputs = batch_inputs(request, module.input_names, h_m)
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
        changed = {**named, "author_dense": named["author_dense"].clone()}
        changed["author_dense"][3] += 1.0  # one candidate moves only its own score
        moved = (module(*changed.values()) - base).abs() > 0
        assert moved.tolist() == [False, False, False, True, False]


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
    assert request_input_names(True)[-1] == "h_m" and "h_m" not in request_input_names(False)
    assert request_input_names(True) == REQUEST_VIEWER_INPUT_NAMES + request_candidate_input_names(True)
    viewer = {name.removeprefix("neighbours_") for name in REQUEST_VIEWER_INPUT_NAMES}
    candidate = {name.removeprefix("neighbours_") for name in request_candidate_input_names(True)}
    assert viewer | candidate >= set(METAPATHS) and not viewer & candidate
    with pytest.raises(ValueError, match="takes_h_m needs a model with h_m on"):
        ExportableRequestMMBee(_model(use_mfq=False), takes_h_m=True)
    module = ExportableRequestMMBee(_model(), takes_h_m=True)
    assert not [
        name for name in module.state_dict() if "fusion" in name
    ]  # MFQ is not part of it: h_m is given
    with pytest.raises(ValueError, match="expected"):
        module(torch.zeros(1))
