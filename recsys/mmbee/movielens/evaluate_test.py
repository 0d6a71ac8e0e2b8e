from dataclasses import replace

import numpy as np

from recsys.mmbee.graph.config import GraphCLConfig
from recsys.mmbee.movielens.baselines import LightGCNConfig
from recsys.mmbee.movielens.evaluate import MODELS, EvalConfig, evaluate_movielens, format_table, plot
from recsys.mmbee.movielens.model import GIEConfig
from recsys.mmbee.movielens.testing import planted_interactions
from recsys.mmbee.movielens.train import TrainConfig

TINY = EvalConfig(
    lightgcn_train=TrainConfig(max_epochs=8, batch_size=128, lr=0.03, eval_every=4),
    gie_train=TrainConfig(max_epochs=8, batch_size=128, lr=0.01, eval_every=4),
    lightgcn=LightGCNConfig(embedding_dim=16, num_layers=2),
    gie=GIEConfig(
        embedding_dim=16, num_layers=2, neighbours=5, graphcl=GraphCLConfig(dim=16, layers=2, epochs=1)
    ),
)


def test_report_table_and_plot(tmp_path):
    data = planted_interactions(num_users=40, num_items=60, per_user=20)
    report = evaluate_movielens((0, 1), TINY, data=data)
    summary = report.summary()
    assert tuple(summary) == MODELS
    popularity = [run.test["recall"] for run in report.runs if run.model == "Popularity"]
    assert popularity[0] == popularity[1] and summary["Popularity"]["recall"][1] == 0.0  # deterministic
    for model in MODELS:
        recalls = [run.test["recall"] for run in report.runs if run.model == model]
        assert np.isclose(summary[model]["recall"][0], np.mean(recalls))
        assert all(run.test_train_inputs for run in report.runs)
    table = format_table(report)
    assert "LightGCN (paper)" in table and "0.2317" in table and "GIE (ours)" in table
    plot(report, tmp_path / "movielens.png")
    assert (tmp_path / "movielens.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert replace(report, runs=report.runs[:3]).summary()["LightGCN"]["recall"][1] == 0.0
