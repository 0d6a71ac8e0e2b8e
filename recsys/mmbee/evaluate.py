"""`kmono mmbee eval`: the paper's tables on the synthetic world, over several training seeds, mean ± std.

Tables (MMBee, KDD 2024; the paper's own figures are on Kuaishou data and printed beside ours for the shape of
the claim, not the values):
- `main` (Table 2): backbone, +MFQ, +GIE, +MFQ+GIE, for SIM and MMoE.
- `modalities` (Table 4): the full SIM model without X_v, X_s or X_t.
- `components` (Table 7): without each metapath, without Θ (random learnable node embeddings), h_g, h_m, q_m.
- `segments` (Table 6): segment length 5 / 10 / 20 seconds.
- `activity`: AUC by the user's gifts in the graph period, backbone vs full model (GIE should help sparse
  gifters most).
Every run trains from the same world and snapshot; only the training seed changes between repeats. Results are
written as JSON and PNG plots (metric per variant with error bars).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from recsys.data.batches import METAPATHS
from recsys.data.world import WorldConfig
from recsys.mmbee.pipeline import (
    ACTIVITY_BUCKETS,
    ModelOptions,
    Prepared,
    bucket_name,
    evaluate,
    fit,
    prepare,
    train_recipe,
)
from recsys.mmbee.training import TrainConfig

logger = logging.getLogger(__name__)

METRICS = ("auc", "uauc", "gauc")
PAPER_TABLE_2 = {
    "SIM": (0.958656, 0.732239, 0.748383),
    "SIM+MFQ+GIE": (0.960302, 0.743678, 0.760440),
}
"""The paper's Table 2 figures (AUC, UAUC, GAUC) that the issue quotes; the other rows are not public here."""
TABLES = ("main", "modalities", "components", "segments")
FULL = ModelOptions()


@dataclass(frozen=True)
class Variant:
    table: str
    name: str
    options: ModelOptions
    segment_seconds: int = 10


def variants(tables: Sequence[str]) -> list[Variant]:
    result: list[Variant] = []
    if "main" in tables:
        for backbone in ("sim", "mmoe"):
            label = backbone.upper() if backbone == "sim" else "MMoE"
            base = replace(FULL, backbone=backbone)
            result += [
                Variant("main", label, replace(base, use_mfq=False, use_gie=False)),
                Variant("main", f"{label}+MFQ", replace(base, use_gie=False)),
                Variant("main", f"{label}+GIE", replace(base, use_mfq=False)),
                Variant("main", f"{label}+MFQ+GIE", base),
            ]
    if "modalities" in tables:
        for short, name in (("v", "visual"), ("s", "speech"), ("t", "comments")):
            kept = tuple(m for m in FULL.modalities if m != name)
            result.append(Variant("modalities", f"w/o X_{short}", replace(FULL, modalities=kept)))
    if "components" in tables:
        for path in METAPATHS:
            kept = tuple(p for p in METAPATHS if p != path)
            result.append(Variant("components", f"w/o {path}", replace(FULL, metapaths=kept)))
        result += [
            Variant("components", "w/o Θ", replace(FULL, use_theta=False)),
            Variant("components", "w/o h_g", replace(FULL, use_h_g=False)),
            Variant("components", "w/o h_m", replace(FULL, use_h_m=False)),
            Variant("components", "w/o q_m", replace(FULL, use_queries=False)),
        ]
    if "segments" in tables:
        for seconds in (5, 10, 20):
            result.append(Variant("segments", f"segment {seconds}s", FULL, segment_seconds=seconds))
    return result


def run(
    world: WorldConfig,
    workdir: str | Path,
    *,
    tables: Sequence[str] = TABLES,
    seeds: Sequence[int] = (0, 1, 2),
    train_config: TrainConfig | None = None,
) -> dict:
    """Train and test every variant of `tables` once per seed (with `train_config`, default the embedded model's
    recipe); returns {variant name: {metric: [per seed]}}."""
    from tqdm import tqdm

    train_config = train_config or train_recipe(progress=False)
    chosen = variants(tables)
    prepared: dict[int, Prepared] = {}
    results: dict[str, dict] = {}
    runs = [(variant, seed) for variant in chosen for seed in seeds]
    for variant, seed in tqdm(runs, desc="mmbee eval runs"):
        if variant.segment_seconds not in prepared:
            prepared[variant.segment_seconds] = prepare(
                world, workdir, segment_seconds=variant.segment_seconds
            )
        data = prepared[variant.segment_seconds]
        model, _ = fit(data, variant.options, replace(train_config, seed=seed))
        metrics = evaluate(model, data.test, data.train_gifts)
        entry = results.setdefault(variant.name, {"table": variant.table, "metrics": {}})
        for key, value in metrics.items():
            entry["metrics"].setdefault(key, []).append(value)
        logger.info("%s seed %d: %s", variant.name, seed, {k: round(v, 4) for k, v in metrics.items()})
    return results


def summary(values: Sequence[float]) -> str:
    values = np.asarray(values, dtype=float)
    return f"{values.mean():.4f} ± {values.std(ddof=1) if len(values) > 1 else 0.0:.4f}"


def format_tables(results: dict) -> str:
    lines: list[str] = []
    for table in TABLES:
        rows = [(name, entry) for name, entry in results.items() if entry["table"] == table]
        if not rows:
            continue
        lines.append(f"\n## {table}   (mean ± std over seeds; paper figures on Kuaishou data where quoted)")
        lines.append(
            f"{'variant':<18}" + "".join(f"{m.upper():>20}" for m in METRICS) + "   paper AUC/UAUC/GAUC"
        )
        for name, entry in rows:
            paper = PAPER_TABLE_2.get(name)
            cells = "".join(f"{summary(entry['metrics'][m]):>20}" for m in METRICS)
            lines.append(f"{name:<18}{cells}   {'/'.join(f'{v:.4f}' for v in paper) if paper else ''}")
    activity = [name for name, entry in results.items() if entry["table"] == "main"]
    if activity:
        lines.append(
            "\n## activity   (AUC by the user's gifts in the graph period; GIE gain = +MFQ+GIE minus +MFQ)"
        )
        buckets = [f"auc_gifts_{bucket_name(low, high)}" for low, high in ACTIVITY_BUCKETS]
        lines.append(f"{'variant':<18}" + "".join(f"{b.removeprefix('auc_'):>20}" for b in buckets))
        for name in activity:
            cells = "".join(f"{summary(results[name]['metrics'][b]):>20}" for b in buckets)
            lines.append(f"{name:<18}{cells}")
        for label in ("SIM", "MMoE"):
            with_gie, without = results.get(f"{label}+MFQ+GIE"), results.get(f"{label}+MFQ")
            if with_gie and without:
                gains = [np.subtract(with_gie["metrics"][b], without["metrics"][b]) for b in buckets]
                lines.append(f"{label + ' GIE gain':<18}" + "".join(f"{summary(g):>20}" for g in gains))
    return "\n".join(lines)


def plot(results: dict, out_dir: str | Path) -> list[Path]:
    """One PNG per table: each metric per variant, mean with a std error bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for table in TABLES:
        rows = [(name, entry) for name, entry in results.items() if entry["table"] == table]
        if not rows:
            continue
        figure, axes = plt.subplots(1, len(METRICS), figsize=(4.5 * len(METRICS), 0.45 * len(rows) + 1.8))
        for axis, metric in zip(axes, METRICS, strict=True):
            values = [np.asarray(entry["metrics"][metric]) for _, entry in rows]
            axis.barh(
                [name for name, _ in rows],
                [v.mean() for v in values],
                xerr=[v.std(ddof=1) if len(v) > 1 else 0 for v in values],
                color="#4c72b0",
                capsize=3,
            )
            low = min(v.mean() for v in values)
            axis.set_xlim(max(0.0, low - 0.05), min(1.0, max(v.mean() for v in values) + 0.03))
            axis.set_title(metric.upper())
            axis.invert_yaxis()
        figure.suptitle(f"MMBee on the synthetic live-streaming world: {table}")
        figure.tight_layout()
        path = out_dir / f"mmbee_{table}.png"
        figure.savefig(path, dpi=110)
        plt.close(figure)
        written.append(path)
    return written


def save(results: dict, out_dir: str | Path) -> Path:
    """`mmbee_eval_<tables>.json`, so runs of different tables (e.g. in parallel) can share an out dir."""
    tables = sorted({entry["table"] for entry in results.values()}, key=TABLES.index)
    path = Path(out_dir) / f"mmbee_eval_{'-'.join(tables)}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2))
    return path


def orderings(results: dict) -> list[tuple[str, bool]]:
    """The paper's claims as (statement, holds beyond the spread?) on every metric."""

    def beats(a: str, b: str) -> bool:
        if a not in results or b not in results:
            return False
        ok = True
        for metric in METRICS:
            x, y = np.asarray(results[a]["metrics"][metric]), np.asarray(results[b]["metrics"][metric])
            spread = max(x.std(ddof=1) if len(x) > 1 else 0, y.std(ddof=1) if len(y) > 1 else 0)
            ok &= bool(x.mean() - y.mean() > spread)
        return ok

    claims = []
    for label in ("SIM", "MMoE"):
        if label in results:
            both, mfq, gie = f"{label}+MFQ+GIE", f"{label}+MFQ", f"{label}+GIE"
            claims += [
                (f"{both} > {mfq}", beats(both, mfq)),
                (f"{both} > {gie}", beats(both, gie)),
                (f"{mfq} > {label}", beats(mfq, label)),
                (f"{gie} > {label}", beats(gie, label)),
            ]
    return claims
