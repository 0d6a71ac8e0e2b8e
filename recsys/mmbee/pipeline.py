"""One MMBee run end to end: world → expansion snapshot → datasets → model → training → test metrics, and the
export of a servable model folder. `kmono mmbee train` and `kmono mmbee eval` are thin layers over it.

    prepared = prepare(WORLD_PRESETS["default"], workdir)       # world, features, snapshot (cached per world)
    model, result = fit_for_serving(prepared, ModelOptions(backbone="sim"), train_recipe(seed=0))
    metrics = evaluate(model, prepared.test)                    # AUC, UAUC, GAUC, AUC per user-activity bucket
    save_model_folder(out, model, prepared, metrics)           # what `kmono serve rank --model out` loads

(`fit` alone is what evaluation runs train: the cold-start rows `fit_for_serving` adds are never read by a metric.)

The expansion graph is built from the gifts of the graph period, the days before the training rows
(`WorldConfig.split_days`), so no row is ever scored with a graph that holds its own gift. Feature tables for serving describe the end of the logged data.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch

from recsys.data.batches import METAPATHS
from recsys.data.dataset import DEFAULT_HISTORY, DEFAULT_SEGMENT_SECONDS, GTRDataset, WorldFeatures
from recsys.data.world import World, WorldConfig, generate_world
from recsys.metrics.ranking import auc, grouped_auc
from recsys.mmbee import defaults
from recsys.mmbee.engine import ENGINE_FILE, SNAPSHOT_DIR
from recsys.mmbee.featurize import SERVING_TABLES_VERSION, serving_tables
from recsys.mmbee.graph import ExpansionConfig, run_expansion
from recsys.mmbee.models.mmbee import MMBeeConfig, MMBeeModel
from recsys.mmbee.training import TrainConfig, TrainResult, train
from recsys.mmbee.training.cold_start import ColdStartConfig, fit_cold_start_rows

logger = logging.getLogger(__name__)

ACTIVITY_BUCKETS = ((0, 0), (1, 2), (3, 9), (10, None))
"""Users by their gifts in the graph period: the paper's claim is that GIE helps sparse gifters most."""


@dataclass
class Prepared:
    world: World
    features: WorldFeatures
    snapshot: object  # recsys.features.Snapshot
    snapshot_dir: Path
    train: GTRDataset
    validation: GTRDataset
    test: GTRDataset
    train_gifts: np.ndarray
    """Gifts per user index in the graph period ([U+1]): what the graph knows of each user."""


def train_edges(world: World) -> dict[str, np.ndarray]:
    """The user→streamer gift edges of the graph period (weight: gifts sent)."""
    imp = world.impressions
    graph_days = world.config.split_days()["graph"]
    gifted = (imp["gifted"] > 0) & (imp["timestamp"] // 86_400 < graph_days.stop)
    return {
        "user": imp["user"][gifted],
        "author": imp["author"][gifted],
        "gifts": imp["gift_count"][gifted].astype(np.float64),
    }


def prepare(
    world_config: WorldConfig,
    workdir: str | Path,
    *,
    segment_seconds: int = DEFAULT_SEGMENT_SECONDS,
    history: int = DEFAULT_HISTORY,
    expansion: ExpansionConfig | None = None,
) -> Prepared:
    """Generate the world, run (or reuse) its expansion snapshot under `workdir`, and build the three splits."""
    from recsys.features import Snapshot, SnapshotError

    world = generate_world(world_config)
    features = WorldFeatures.build(world, segment_seconds, history)
    expansion = expansion or ExpansionConfig()
    key = hashlib.sha256(
        json.dumps(
            [asdict(world_config), asdict(expansion), segment_seconds, history, SERVING_TABLES_VERSION],
            sort_keys=True,
        ).encode()
    ).hexdigest()[:12]
    snapshot_dir = Path(workdir) / f"snapshot-{key}"
    edges = train_edges(world)
    try:
        snapshot = Snapshot.open(snapshot_dir)
        logger.info("reusing expansion snapshot %s", snapshot_dir)
    except SnapshotError:
        snapshot = run_expansion(
            edges,
            world_config.num_users,
            world_config.num_authors,
            expansion,
            snapshot_dir,
            extra_tables=serving_tables(features),
        )
    neighbours = {name: snapshot.array(f"neighbours_{name}") for name in METAPATHS}
    splits = {
        name: GTRDataset.from_world(features, name, neighbours) for name in ("train", "validation", "test")
    }
    train_gifts = np.bincount(edges["user"], minlength=world_config.num_users + 1)
    return Prepared(world, features, snapshot, snapshot_dir, **splits, train_gifts=train_gifts)


@dataclass(frozen=True)
class ModelOptions:
    """The MMBeeConfig fields a run chooses (the sizes come from the world): backbone and ablation switches."""

    backbone: str = "sim"
    use_mfq: bool = True
    use_gie: bool = True
    use_h_m: bool = True
    use_h_g: bool = True
    use_theta: bool = True
    use_queries: bool = True
    modalities: tuple[str, ...] = ("visual", "speech", "comments")
    metapaths: tuple[str, ...] = ("u2a2u", "u2a2u2a", "u2a2a", "a2a", "a2u2a")
    extra: dict = field(default_factory=dict)
    """Other MMBeeConfig fields (dims, heads), e.g. {"embedding_dim": 16}."""


def model_config(prepared: Prepared, options: ModelOptions) -> MMBeeConfig:
    world = prepared.world.config
    chosen = {f.name: getattr(options, f.name) for f in fields(options) if f.name != "extra"}
    theta_dim = prepared.snapshot.array("theta_users").shape[1]
    return MMBeeConfig(
        num_users=world.num_users,
        num_authors=world.num_authors,
        content_dim=world.content_dim,
        theta_dim=theta_dim,
        **chosen,
        **options.extra,
    )


def build_model(prepared: Prepared, options: ModelOptions, seed: int = 0) -> MMBeeModel:
    torch.manual_seed(seed)
    theta_users = torch.from_numpy(np.asarray(prepared.snapshot.array("theta_users"), dtype=np.float32))
    theta_authors = torch.from_numpy(np.asarray(prepared.snapshot.array("theta_authors"), dtype=np.float32))
    return MMBeeModel(model_config(prepared, options), theta_users=theta_users, theta_authors=theta_authors)


def train_recipe(**changes) -> TrainConfig:
    """The embedded default's training recipe (`recsys.mmbee.defaults`, its one home) with `changes` on top:
    what `kmono mmbee train` and `kmono mmbee eval` train with."""
    recipe = {
        "epochs": defaults.DEFAULT_EPOCHS,
        "task_weights": defaults.TASK_WEIGHTS,
        "lr_schedule": defaults.LR_SCHEDULE,
        "warmup_ratio": defaults.WARMUP_RATIO,
        "ema_decay": defaults.EMA_DECAY,
        "eval_every": defaults.EVAL_EVERY,
    }
    return TrainConfig(**{**recipe, **changes})


def fit(prepared: Prepared, options: ModelOptions, config: TrainConfig) -> tuple[MMBeeModel, TrainResult]:
    model = build_model(prepared, options, seed=config.seed)
    result = train(model, prepared.train, prepared.validation, config)
    return model, result


def fit_for_serving(
    prepared: Prepared, options: ModelOptions, config: TrainConfig, cold_start: ColdStartConfig | None = None
) -> tuple[MMBeeModel, TrainResult]:
    """`fit`, then the cold-start rows (`training/cold_start.py`: what an unknown viewer or streamer gets): how a
    servable folder's model is trained (`kmono mmbee train`, the tests' tiny folder)."""
    model, result = fit(prepared, options, config)
    fit_cold_start_rows(model, prepared.train, config.task_weights, cold_start or ColdStartConfig())
    return model, result


@torch.no_grad()
def predict(model: MMBeeModel, dataset: GTRDataset, batch_size: int = 4096) -> np.ndarray:
    """GTR probabilities of every row of `dataset`, on the device the model is on (a GPU run leaves it there)."""
    model.eval()
    device = next(model.parameters()).device
    scores = [
        torch.sigmoid(
            model(dataset.batch(np.arange(start, min(start + batch_size, len(dataset)))).to(device))[:, 0]
        )
        for start in range(0, len(dataset), batch_size)
    ]
    return torch.cat(scores).cpu().numpy()


def evaluate(model: MMBeeModel, dataset: GTRDataset, train_gifts: np.ndarray) -> dict[str, float]:
    """AUC, UAUC, GAUC of the gift head, and AUC within each user-activity bucket."""
    scores = predict(model, dataset)
    labels = dataset.labels[:, 0]
    grouped = grouped_auc(labels, scores, dataset.groups)
    metrics = {"auc": auc(labels, scores), "uauc": grouped.uauc, "gauc": grouped.gauc}
    gifts = train_gifts[dataset.groups]
    for low, high in ACTIVITY_BUCKETS:
        inside = (gifts >= low) & (gifts <= (high if high is not None else np.inf))
        bucket_auc = auc(labels[inside], scores[inside]) if inside.any() else float("nan")
        metrics[f"auc_gifts_{bucket_name(low, high)}"] = bucket_auc
    return metrics


def bucket_name(low: int, high: int | None) -> str:
    return f"{low}+" if high is None else (f"{low}" if low == high else f"{low}-{high}")


def save_model_folder(out_dir: str | Path, model: MMBeeModel, prepared: Prepared, metrics: dict) -> str:
    """Write a servable folder (export + engine.json + the snapshot); returns its version string."""
    from recsys.mmbee.export import save_model_folder as save_export

    out = Path(out_dir)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    example = prepared.test.batch(np.arange(min(8, len(prepared.test))))
    save_export(out, model, example, metrics)
    shutil.copytree(prepared.snapshot_dir, out / SNAPSHOT_DIR)
    weights = (out / "model.safetensors").read_bytes()
    digest = hashlib.sha256(weights + prepared.snapshot.version.encode()).hexdigest()[:10]
    world = prepared.world.config
    version = f"mmbee-{model.config.backbone}-{digest}"
    settings = {
        "version": version,
        "num_users": world.num_users,
        "num_authors": world.num_authors,
        "content_dim": world.content_dim,
        "segment_seconds": prepared.features.segment_seconds,
        "history": prepared.features.history,
        "max_segment_seconds": world.max_segment_seconds,
        "world": asdict(world),
    }
    (out / ENGINE_FILE).write_text(json.dumps(settings, indent=2))
    return version
