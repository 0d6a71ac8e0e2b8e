from dataclasses import replace

import pytest
import torch

from recsys.rerank.models import greedy, load_model_folder
from recsys.rerank.pipeline import SKD_STAGE, tiny_config, train_pipeline
from recsys.rerank.simulator import generate_requests


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("rerank") / "model"
    models, report = train_pipeline(tiny_config(), out=out, progress=False)
    return out, models, report


def test_every_stage_runs_and_the_folder_serves_pages(trained):
    out, models, report = trained
    assert set(report.losses) == {"evaluator", "imitation", "improvement", "distillation"}
    assert len(report.online_greedy_pct) == tiny_config().online.steps
    loaded = load_model_folder(out)
    assert loaded.version == models.version == "dual-rerank-seed0"
    requests = generate_requests(5, 8, 4, seed=3)
    pages = greedy(loaded.student, requests.batch).orders
    assert pages.shape == (5, 4) and all(len(set(row.tolist())) == 4 for row in pages)


def test_the_skd_student_is_kept_beside_the_ldro_student(trained):
    out, models, _ = trained
    skd = load_model_folder(out / SKD_STAGE)
    torch.testing.assert_close(  # one teacher for both
        skd.teacher.state_dict(), load_model_folder(out).teacher.state_dict()
    )
    changed = any(
        not torch.equal(a, b)
        for a, b in zip(skd.student.state_dict().values(), models.student.state_dict().values(), strict=True)
    )
    assert changed, "LDRO must have updated the student after distillation"


def test_a_lighter_student_trains_the_same_evaluator_and_teacher():
    base = tiny_config()
    base = replace(
        base, requests=32, model=replace(base.model, layers=2), online=replace(base.online, steps=1)
    )
    two, _ = train_pipeline(base, progress=False)
    one, _ = train_pipeline(replace(base, model=replace(base.model, student_layers=1)), progress=False)
    for name in ("evaluator", "teacher"):
        before, after = two.modules()[name].state_dict(), one.modules()[name].state_dict()
        assert all(torch.equal(before[key], after[key]) for key in before), name
    assert len(one.student.state_dict()) < len(two.student.state_dict())
