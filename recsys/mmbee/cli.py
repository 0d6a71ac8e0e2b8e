"""`kmono mmbee ...`: MMBee gift-through-rate ranking — train, evaluate, run the graph expansion, serve.

kmono mmbee train --out recsys/mmbee/defaults/model            # the embedded default (default world, ~2.5 min)
kmono mmbee train --preset tiny --epochs 1 --out /tmp/mmbee      # a quick model on the tiny world
kmono mmbee eval --out-dir out/mmbee-eval                        # the paper's tables over 3 seeds + PNG plots
kmono mmbee eval --dataset movielens --out-dir out/mmbee-ml      # GIE vs LightGCN vs popularity, MovieLens-100k
kmono mmbee world --preset large --out data/world-large          # partitioned Parquet, one day in memory at a time
kmono mmbee expand --world data/world --out snapshots/v1         # Swing + metapaths + GraphCL snapshot
kmono mmbee expand --world data/world --out snapshots/v1 --engine spark --spark-master local[4]
kmono mmbee serve --port 50053                                  # = kmono serve rank (same flags)
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from libs.cli.main import UsageError, add_subcommand
from recsys.mmbee.defaults import DEFAULT_EPOCHS, DEFAULT_MODEL_PATH, DEFAULT_WORLD_PRESET

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "mmbee",
        help="MMBee gift-through-rate ranking: train, eval, world, expand, serve",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="mmbee_command", metavar="COMMAND", required=True)

    train = add_subcommand(
        commands,
        "train",
        "train MMBee on a synthetic world and write a servable model folder",
        "  kmono mmbee train --out recsys/mmbee/defaults/model\n  kmono mmbee train --preset tiny --epochs 1 --out /tmp/m\n",
    )
    _world_flags(train)
    train.add_argument(
        "--out", type=Path, default=DEFAULT_MODEL_PATH, help="model folder (default: %(default)s)"
    )
    train.add_argument("--backbone", choices=("sim", "mmoe"), default="sim")
    train.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--workdir", type=Path, default=Path("out/mmbee-work"), help="snapshot cache")
    train.set_defaults(func=_train)

    evaluate = add_subcommand(
        commands,
        "eval",
        "print the paper's tables (backbone / +MFQ / +GIE / both, ablations) over several seeds",
        "  kmono mmbee eval --out-dir out/mmbee-eval\n  kmono mmbee eval --tables main --seeds 0 1 2\n"
        "  kmono mmbee eval --dataset movielens --out-dir out/mmbee-ml\n",
    )
    _world_flags(evaluate)
    evaluate.add_argument("--dataset", choices=("world", "movielens"), default="world")
    evaluate.add_argument("--tables", nargs="+", default=["main", "modalities", "components", "segments"])
    evaluate.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    evaluate.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS)
    evaluate.add_argument("--out-dir", type=Path, default=Path("out/mmbee-eval"), help="JSON + PNG plots")
    evaluate.add_argument("--workdir", type=Path, default=Path("out/mmbee-work"), help="snapshot cache")
    evaluate.set_defaults(func=_eval)

    world = add_subcommand(
        commands,
        "world",
        "write a synthetic live-streaming world as partitioned Parquet",
        "  kmono mmbee world --preset large --out data/world-large\n",
    )
    _world_flags(world)
    world.add_argument("--out", type=Path, required=True)
    world.set_defaults(func=_world)

    expand = add_subcommand(
        commands,
        "expand",
        "run the offline graph expansion (Swing, five metapaths, GraphCL) into a versioned snapshot",
        "  kmono mmbee expand --world data/world --out snapshots/v1\n"
        "  kmono mmbee expand --world data/world --out snapshots/v1 --engine spark --spark-master local[4]\n",
    )
    expand.add_argument("--world", type=Path, required=True, help="a world written by `kmono mmbee world`")
    expand.add_argument("--out", type=Path, required=True)
    expand.add_argument("--engine", choices=("local", "spark"), default="local")
    expand.add_argument("--spark-master", default="local[*]")
    expand.set_defaults(func=_expand)

    # Every argument after `serve` belongs to the service (`--port`, `--help`, ...): this parser claims none of
    # them ("+" is its only option prefix), so they all reach `python -m services.rank` untouched.
    serve = commands.add_parser(
        "serve",
        help="run the RankingService (= kmono serve rank; all flags passed on, see `kmono mmbee serve --help`)",
        prefix_chars="+",
        add_help=False,
    )
    serve.add_argument("args", nargs=argparse.REMAINDER, help="flags of `kmono serve rank`")
    serve.set_defaults(func=_serve)


def _world_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", choices=("tiny", "default", "large"), default=DEFAULT_WORLD_PRESET)
    parser.add_argument("--world-seed", type=int, default=0, help="seed of the synthetic world")


def _world_config(args: argparse.Namespace):
    from recsys.data.world import WORLD_PRESETS

    return WORLD_PRESETS[args.preset].scaled(seed=args.world_seed)


def _train(args: argparse.Namespace) -> int:
    from recsys.mmbee.pipeline import (
        ModelOptions,
        evaluate,
        fit_for_serving,
        prepare,
        save_model_folder,
        train_recipe,
    )

    prepared = prepare(_world_config(args), args.workdir)
    recipe = train_recipe(epochs=args.epochs, seed=args.seed)
    model, result = fit_for_serving(prepared, ModelOptions(backbone=args.backbone), recipe)
    metrics = evaluate(model, prepared.test, prepared.train_gifts)
    version = save_model_folder(args.out, model, prepared, metrics)
    print(f"model {version} -> {args.out}")
    print(
        f"validation AUC {result.best_auc:.4f}; test " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())
    )
    return 0


def _eval(args: argparse.Namespace) -> int:
    if args.dataset == "movielens":
        return _eval_movielens(args)
    from recsys.mmbee import evaluate
    from recsys.mmbee.pipeline import train_recipe

    unknown = set(args.tables) - set(evaluate.TABLES)
    if unknown:
        raise UsageError(f"unknown tables {sorted(unknown)}; choose from {', '.join(evaluate.TABLES)}")
    results = evaluate.run(
        _world_config(args),
        args.workdir,
        tables=args.tables,
        seeds=args.seeds,
        train_config=train_recipe(epochs=args.epochs, progress=False),
    )
    print(evaluate.format_tables(results))
    print("\nclaims (beyond the spread on AUC, UAUC and GAUC):")
    for claim, holds in evaluate.orderings(results):
        print(f"  {'holds' if holds else 'FAILS'}: {claim}")
    print(f"\nwrote {evaluate.save(results, args.out_dir)}")
    for path in evaluate.plot(results, args.out_dir):
        print(f"wrote {path}")
    return 0


def _eval_movielens(args: argparse.Namespace) -> int:
    from recsys.mmbee.movielens.evaluate import evaluate_movielens, format_table, plot

    report = evaluate_movielens(tuple(args.seeds))
    print(format_table(report))
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "movielens.json").write_text(report.to_json())
    plot(report, args.out_dir / "movielens.png")
    print(f"wrote {args.out_dir / 'movielens.json'} and {args.out_dir / 'movielens.png'}")
    return 0


def _world(args: argparse.Namespace) -> int:
    from recsys.data.world import write_world

    out = write_world(_world_config(args), args.out)
    print(f"world -> {out}")
    return 0


def _expand(args: argparse.Namespace) -> int:
    from recsys.data.dataset import WorldFeatures
    from recsys.data.world import read_world
    from recsys.mmbee.featurize import serving_tables
    from recsys.mmbee.graph import ExpansionConfig, run_expansion
    from recsys.mmbee.pipeline import train_edges

    if not (args.world / "world.json").is_file():
        raise UsageError(
            f"{args.world} is not a world folder (no world.json); write one with `kmono mmbee world`"
        )
    world = read_world(args.world)
    edges = train_edges(world)
    tables = serving_tables(WorldFeatures.build(world))
    if args.engine == "spark":
        from recsys.mmbee.graph.expand import run_expansion_spark

        snapshot = run_expansion_spark(
            edges, world.config.num_users, world.config.num_authors, ExpansionConfig(), args.out,
            extra_tables=tables, master=args.spark_master,
        )  # fmt: skip
    else:
        snapshot = run_expansion(
            edges, world.config.num_users, world.config.num_authors, ExpansionConfig(), args.out,
            extra_tables=tables,
        )  # fmt: skip
    print(f"snapshot {snapshot.version} -> {args.out}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    # The service lives in services/ (which recsys/ never imports); run it as its own module.
    command = [sys.executable, "-m", "services.rank", *args.args]
    os.execv(sys.executable, command)
    return 0  # not reached
