"""MMBee's MovieLens-100k table (paper Table 3): the GIE-based model against PyG's LightGCN and popularity.

    kmono mmbee eval --dataset movielens --seeds 0 1 2 --out-dir out/movielens
    kmono mmbee eval --dataset movielens      (the CLI calls `main`)

Every model is measured under `protocol.py` (per-user temporal 80/10/10 split, full ranking, @10), over the
same split and candidates; LightGCN and the GIE model train under the same loop and `TrainConfig` (BPR,
epochs chosen on validation NDCG@10), with the same embedding size. Per seed: GraphCL, initialisation and
negative sampling change; the split does not (it is temporal). The report keeps every run; `format_table`
prints mean +- std over seeds beside the paper's Table 3 rows (their protocol is not stated: the numbers are
a reference point, not a like-for-like comparison), `plot` draws the same as bars with error bars.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from recsys.data.movielens import Interactions, load_movielens_100k
from recsys.mmbee.graph.graphcl import train_graphcl
from recsys.mmbee.movielens.baselines import LightGCNConfig, LightGCNRecommender, popularity_scorer
from recsys.mmbee.movielens.model import GIEConfig, GIEGraphs, GIERecommender
from recsys.mmbee.movielens.protocol import RankingMetrics, Split, SplitConfig, evaluate, split_interactions
from recsys.mmbee.movielens.train import TrainConfig, fit

logger = logging.getLogger(__name__)

METRICS = ("recall", "precision", "ndcg")
MODELS = ("Popularity", "LightGCN", "GIE (ours)")
PAPER_TABLE3 = {
    "LightGCN (paper)": {"recall": 0.1992, "precision": 0.0479, "ndcg": 0.1324},
    "MMBee (paper)": {"recall": 0.2317, "precision": 0.0566, "ndcg": 0.1573},
}


@dataclass(frozen=True)
class EvalConfig:
    k: int = 10
    split: SplitConfig = field(default_factory=SplitConfig)
    lightgcn_train: TrainConfig = field(
        default_factory=lambda: TrainConfig(max_epochs=80, lr=0.01, eval_every=3)
    )
    gie_train: TrainConfig = field(default_factory=lambda: TrainConfig(max_epochs=20, lr=0.002, eval_every=2))
    """Same loop, batch, sampler and early stopping; the learning rate is each model's own (LightGCN: the best
    of 0.005 / 0.01 on validation; GIE: 0.002, it starts from GraphCL and the graph's ranking)."""
    lightgcn: LightGCNConfig = field(default_factory=LightGCNConfig)
    gie: GIEConfig = field(default_factory=GIEConfig)


@dataclass
class Run:
    model: str
    seed: int
    test: dict[str, float]
    valid: dict[str, float]
    test_train_inputs: dict[str, float] = field(default_factory=dict)
    """Test metrics when the model reads only the training graph (no validation pairs as inputs)."""
    best_epoch: int = 0
    seconds: float = 0.0


@dataclass
class Report:
    runs: list[Run]
    config: dict
    seconds: float = 0.0

    def summary(self) -> dict[str, dict[str, tuple[float, float]]]:
        """model -> metric -> (mean, std over seeds; population std, 0 for a single seed)."""
        out = {}
        for model in dict.fromkeys(run.model for run in self.runs):
            values = {m: [run.test[m] for run in self.runs if run.model == model] for m in METRICS}
            out[model] = {m: (float(np.mean(v)), float(np.std(v))) for m, v in values.items()}
        return out

    def to_json(self) -> str:
        return json.dumps(
            {
                "runs": [asdict(r) for r in self.runs],
                "config": self.config,
                "seconds": self.seconds,
                "summary": self.summary(),
            },
            indent=2,
        )


def evaluate_movielens(
    seeds: tuple[int, ...] = (0, 1, 2),
    config: EvalConfig = EvalConfig(),
    data: Interactions | None = None,
    users: np.ndarray | None = None,
) -> Report:
    """Train and test every model once per seed; `users` restricts the split to some users (tests)."""
    started = time.perf_counter()
    data = data if data is not None else load_movielens_100k()
    split = split_interactions(data, config.split)
    if users is not None:
        split = split.subset(users)
    graphs = GIEGraphs.build(split, config.gie)  # deterministic: shared by the seeds
    runs = []
    for seed in tqdm(seeds, desc="seeds"):
        runs.append(_popularity(split, seed, config.k))
        runs.append(_lightgcn(split, seed, config))
        runs.append(_gie(split, graphs, seed, config))
        for run in runs[-3:]:
            logger.info("seed %d %s: test %s", seed, run.model, run.test)
    return Report(runs=runs, config=_as_dict(config), seconds=time.perf_counter() - started)


def _popularity(split: Split, seed: int, k: int) -> Run:
    test = evaluate(popularity_scorer(split.history("test")), split, "test", k)
    return Run(
        "Popularity",
        seed,
        _metrics(test),
        _metrics(evaluate(popularity_scorer(split), split, "valid", k)),
        _metrics(evaluate(popularity_scorer(split), split, "test", k)),
    )


def _lightgcn(split: Split, seed: int, config: EvalConfig) -> Run:
    torch.manual_seed(seed)
    model = LightGCNRecommender(split, config.lightgcn)
    result = fit(model, split, config.lightgcn_train, seed, desc=f"LightGCN seed {seed}")
    return _finish("LightGCN", seed, model, split, result, config.k)


def _gie(split: Split, graphs: GIEGraphs, seed: int, config: EvalConfig) -> Run:
    began = time.perf_counter()
    theta = None
    if config.gie.graphcl is not None:
        pretrained = train_graphcl(
            split.matrix("train").astype(np.float64),
            replace(config.gie.graphcl, seed=seed),
            user_positives=graphs.rank.expansions.indices["u2i2u"],
            author_positives=graphs.rank.expansions.indices["i2u2i"],
        )
        theta = (pretrained.theta_users, pretrained.theta_authors)
    torch.manual_seed(seed)
    model = GIERecommender(split, config.gie, theta, graphs=graphs)
    result = fit(model, split, config.gie_train, seed, desc=f"GIE seed {seed}", positives=model.positives)
    result.seconds = time.perf_counter() - began
    return _finish("GIE (ours)", seed, model, split, result, config.k)


def _finish(name, seed, model, split, result, k) -> Run:
    model.train(False)
    with torch.no_grad():
        train_inputs = evaluate(model.scorer(), split, "test", k)
        model.use_graph(split.history("test"))
        test = evaluate(model.scorer(), split, "test", k)
    return Run(
        name,
        seed,
        _metrics(test),
        _metrics(result.best_valid),
        _metrics(train_inputs),
        result.best_epoch,
        result.seconds,
    )


def _metrics(metrics: RankingMetrics | None) -> dict[str, float]:
    return metrics.as_dict() if metrics is not None else {}


def _as_dict(config: EvalConfig) -> dict:
    return json.loads(json.dumps(asdict(config), default=str))


def format_table(report: Report) -> str:
    """Mean +- std over seeds per model (test, @k), then the paper's Table 3 rows."""
    summary = report.summary()
    seeds = sorted({run.seed for run in report.runs})
    k = report.config.get("k", 10)
    header = f"{'model':<18}" + "".join(f"{f'{m.capitalize()}@{k}':>20}" for m in METRICS)
    lines = [f"MovieLens-100k, test, mean +- std over seeds {seeds}", header, "-" * len(header)]
    for model, values in summary.items():
        lines.append(
            f"{model:<18}" + "".join(f"{values[m][0]:>12.4f} +- {values[m][1]:.4f}" for m in METRICS)
        )
    for model in summary:
        rows = [run.test_train_inputs for run in report.runs if run.model == model and run.test_train_inputs]
        if rows:
            means = [np.mean([row[m] for row in rows]) for m in METRICS]
            stds = [np.std([row[m] for row in rows]) for m in METRICS]
            lines.append(
                f"{model[:11] + ', train graph':<18}"
                + "".join(f"{a:>12.4f} +- {b:.4f}" for a, b in zip(means, stds, strict=True))
            )
    for model, values in PAPER_TABLE3.items():
        lines.append(f"{model:<18}" + "".join(f"{values[m]:>20.4f}" for m in METRICS))
    epochs = {model: [run.best_epoch for run in report.runs if run.model == model] for model in summary}
    lines.append(
        "best epochs (validation NDCG): " + ", ".join(f"{m} {e}" for m, e in epochs.items() if any(e))
    )
    lines.append(f"total {report.seconds:.0f} s")
    return "\n".join(lines)


def plot(report: Report, path: str | Path) -> None:
    """Grouped bars (one group per metric) with the std over seeds as error bars, paper rows hatched."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = report.summary()
    rows = [
        (name, [v[m][0] for m in METRICS], [v[m][1] for m in METRICS], False) for name, v in summary.items()
    ]
    rows += [(name, [v[m] for m in METRICS], [0.0] * len(METRICS), True) for name, v in PAPER_TABLE3.items()]
    width = 0.8 / len(rows)
    figure, axis = plt.subplots(figsize=(8, 4))
    x = np.arange(len(METRICS))
    for i, (name, means, stds, paper) in enumerate(rows):
        axis.bar(
            x + i * width,
            means,
            width,
            yerr=stds,
            capsize=3,
            label=name,
            hatch="//" if paper else None,
            alpha=0.6 if paper else 1.0,
        )
    k = report.config.get("k", 10)
    axis.set_xticks(x + width * (len(rows) - 1) / 2, [f"{m.capitalize()}@{k}" for m in METRICS])
    axis.set_title("MovieLens-100k (test; error bars: std over seeds; hatched: paper Table 3)")
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
