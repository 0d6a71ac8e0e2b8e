"""Training throughput of `recsys.mmbee.training.train` (accelerate + the dataset's `.batch` data path) against a
plain PyTorch loop over the same model on pre-materialised batches (no data path at all).

    .venv/bin/python benchmarks/mmbee_training.py                 # about a minute on a 2-core CPU
    .venv/bin/python benchmarks/mmbee_training.py --batch-size 512 --epochs 3 --backbone mmoe --threads 2

What is measured (best of `--repeat` interleaved runs each, same model initialisation, same rows, same loss):

1. ours: `train(model, train_ds, val_ds, TrainConfig(...))` on one process: DataLoader of row-index chunks ->
   `ds.batch(chunk)` -> accelerate's device placement -> `GTRTrainWrapper` forward/backward, gradient clipping,
   AdamW. Its own `samples_per_second` (training steps only; the end-of-epoch evaluation is not counted).
2. plain: the same `GTRTrainWrapper(model)`, AdamW and clipping in a bare `for batch in batches` loop, where the
   batches of every epoch were built with `ds.batch` before the clock starts (in the same shuffled order).
   ratio = ours / plain samples/s: what the data path and accelerate cost on top of the model's own work.
3. data path alone: `ds.batch` on the same chunks (rows/s), the part of the gap that batching explains.

Data: the `tiny` synthetic world (`recsys.data.world` + `recsys.data.dataset`, train/validation splits) with
random neighbour lists and random Θ tables (the graph expansion is an offline job, not part of a training step);
`--random` uses `random_batch` rows instead. The output says which.
"""

from __future__ import annotations

import argparse
import copy
import os
import time


def build_data(args: argparse.Namespace):
    """(train_ds, val_ds, model_config_kwargs, description)."""
    import numpy as np

    if args.random:
        import torch

        from recsys.data.batches import random_batch
        from recsys.mmbee.training.testing import InMemoryGTRDataset

        sizes = dict(
            num_users=400, num_authors=24, segment_tokens=10, content_dim=16, history=50, neighbours=8
        )
        g = torch.Generator().manual_seed(0)
        train_ds = InMemoryGTRDataset(random_batch(args.rows, generator=g, **sizes))
        val_ds = InMemoryGTRDataset(random_batch(max(256, args.rows // 5), generator=g, **sizes))
        kwargs = dict(num_users=400, num_authors=24, content_dim=16)
        return train_ds, val_ds, kwargs, f"random_batch rows ({args.rows} train), L=10, H=50, K=8, D=16"

    from recsys.data.batches import METAPATH_SOURCE, METAPATH_TARGET, METAPATHS
    from recsys.data.dataset import GTRDataset, WorldFeatures
    from recsys.data.world import WORLD_PRESETS, generate_world

    world_config = WORLD_PRESETS[args.preset]
    world = generate_world(world_config)
    features = WorldFeatures.build(world)
    rng = np.random.default_rng(0)
    sizes = {"user": world_config.num_users, "author": world_config.num_authors}
    neighbours = {}
    for name in METAPATHS:  # rows: source ids, values: target ids (0 = padding)
        table = rng.integers(0, sizes[METAPATH_TARGET[name]] + 1, (sizes[METAPATH_SOURCE[name]] + 1, 8))
        neighbours[name] = table.astype(np.int64)
    train_ds = GTRDataset.from_world(features, "train", neighbours)
    val_ds = GTRDataset.from_world(features, "validation", neighbours)
    kwargs = dict(
        num_users=world_config.num_users,
        num_authors=world_config.num_authors,
        content_dim=world_config.content_dim,
    )
    description = (
        f"'{args.preset}' synthetic world via recsys.data.dataset ({len(train_ds)} train / {len(val_ds)} validation "
        f"rows, H={features.history}, L={features.segment_seconds}), random neighbour lists (K=8) and Θ"
    )
    return train_ds, val_ds, kwargs, description


def make_model(kwargs: dict, backbone: str):
    import torch

    from recsys.mmbee.models.mmbee import MMBeeConfig, MMBeeModel

    torch.manual_seed(0)
    config = MMBeeConfig(**kwargs, backbone=backbone, theta_dim=32)
    g = torch.Generator().manual_seed(1)
    return MMBeeModel(
        config,
        torch.randn(config.num_users + 1, 32, generator=g),
        torch.randn(config.num_authors + 1, 32, generator=g),
    )


def plain_loop(model, batches_per_epoch, args) -> float:
    """Samples/s of a bare loop over materialised batches (same wrapper, optimiser, clipping)."""
    import torch

    from recsys.mmbee.training.wrapper import GTRTrainWrapper

    wrapper = GTRTrainWrapper(model).train()
    optimizer = torch.optim.AdamW(wrapper.parameters(), lr=args.lr)
    rows = 0
    start = time.perf_counter()
    for batches in batches_per_epoch:
        for batch in batches:
            loss, _ = wrapper(batch)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(wrapper.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            rows += len(batch)
    return rows / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        epilog=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--preset", default="tiny", help="synthetic world preset (default: tiny)")
    parser.add_argument("--random", action="store_true", help="random_batch rows instead of a world")
    parser.add_argument("--rows", type=int, default=4096, help="training rows with --random (default: 4096)")
    parser.add_argument("--backbone", default="sim", choices=["sim", "mmoe"])
    parser.add_argument("--batch-size", type=int, default=256, help="rows per step (default: 256)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per run (default: 2)")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement, best kept (default: 3)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default: 1)")
    args = parser.parse_args()

    import logging

    import numpy as np
    import torch

    from recsys.mmbee.training.loop import EpochShuffle, TrainConfig, train

    logging.getLogger("accelerate").setLevel(logging.WARNING)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    train_ds, val_ds, kwargs, description = build_data(args)
    template = make_model(kwargs, args.backbone)
    parameters = sum(p.numel() for p in template.parameters())
    print(f"torch {torch.__version__}, {args.threads} thread(s), cpu count {os.cpu_count()}")
    print(f"data : {description}")
    print(
        f"model: MMBee {args.backbone}, {parameters:,} parameters; batch {args.batch_size}, {args.epochs} epochs"
    )

    config = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        progress=False,
        cpu=True,
        restore_best=False,
    )
    sampler = EpochShuffle(len(train_ds), config.seed)  # the order `train` uses
    chunks = []
    for epoch in range(args.epochs):
        sampler.set_epoch(epoch)
        order = np.fromiter(iter(sampler), dtype=np.int64)
        chunks.append([order[i : i + args.batch_size] for i in range(0, len(order), args.batch_size)])
    rows = sum(len(c) for epoch in chunks for c in epoch)
    data_start = time.perf_counter()
    batches = [[train_ds.batch(c) for c in epoch] for epoch in chunks]
    data_rate = rows / (time.perf_counter() - data_start)

    best_ours = best_plain = 0.0
    for _ in range(args.repeat):  # interleaved so that load drift hits both
        result = train(copy.deepcopy(template), train_ds, val_ds, config)
        best_ours = max(best_ours, result.samples_per_second)
        best_plain = max(best_plain, plain_loop(copy.deepcopy(template), batches, args))

    print()
    print(f"{'training loop':<52} {'samples/s':>10} {'ratio':>7}")
    print(f"{'plain PyTorch, pre-materialised batches (baseline)':<52} {best_plain:10.0f} {1.0:7.3f}")
    print(
        f"{'recsys.mmbee.training.train (accelerate + ds.batch)':<52} {best_ours:10.0f} {best_ours / best_plain:7.3f}"
    )
    print(f"{'data path alone (ds.batch, no model)':<52} {data_rate:10.0f}")
    print(f"total {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
