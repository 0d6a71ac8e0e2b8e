"""What MMBee's modules cost at serving time, and what gRPC costs on top: (a) scoring 200 candidates in-process,
the full MMBee (SIM + MFQ + GIE) against its backbone alone (SIM without MFQ and GIE); (b) the same requests
through a RankingService process against the in-process engine.

    .venv/bin/python benchmarks/mmbee_scoring.py                    # about two minutes on a 2-core CPU
    .venv/bin/python benchmarks/mmbee_scoring.py --requests 1000 --candidates 500 --threads 2

Models: both trained on the same `--preset` world (default: `default`, the embedded default's world, with its
expansion snapshot) by `recsys.mmbee.pipeline` for `--train-steps` steps (the weights do not matter for speed),
and exported the same way (`save_model_folder`: torch.export scorer + serving snapshot): `ModelOptions()` (the
embedded default's recipe) and `ModelOptions(use_mfq=False, use_gie=False)` (the backbone alone). The folders
live in a temporary directory, removed at the end.

Requests: `--requests` requests of `--candidates` distinct streams (the live streams the snapshot knows, then
broadcasts that send their current segment in the request), each for a random known user; the same list for every measurement. The first `--warmup` of each are run before
the clock and not counted. Times are p50 and p99 over requests, in ms per request.

(a) in-process, `RankingEngine.score(request)`: request checks, the serving featurizer (snapshot point lookups
    -> GTRBatch), the exported scorer and the ranking of the scores, what the service does for one RPC. The two models alternate per
    request (ABBA) so that load drift hits both. ratio = MMBee / backbone at p50; the issue's goal: <= 1.3x
    (the paper: "about 1 ms on top of the backbone"). Beneath, where the time goes, from a second interleaved
    pass: the featurizer alone (`featurizer.batch(request)`) and the scorer alone (`scorer(batch)`, the model
    forward on that batch); what `engine.score` adds to their sum is the request checks and the ranking.
(b) gRPC: `python -m services.rank --model DIR --torch-threads N` in its own process (the embedded default
    model when `recsys.mmbee.defaults.DEFAULT_MODEL_PATH` exists, else the MMBee folder of (a); the output says
    which), one channel, sequential `RankCandidates` calls with prebuilt protos, against `engine.score` of the
    same folder in this process, alternating per request. ratio = gRPC / in-process at p50; goal: <= 1.2x.
    Between them, the servicer's work without the transport: `services.rank.convert` proto -> RankRequest,
    `engine.score`, RankResult -> proto, in this process; and `Health.Check` on the same channel, the
    transport's floor, whence the best ratio any servicer could reach: (in-process + floor) / in-process;
    and RankCandidates to each of `--variants` (default: all), the same servicer and model served by this
    script with one change (`benchmarks.common.SERVER_VARIANTS`): "inline" without the hand-off to a worker
    thread, "bare" without libs.serving's interceptor. They measure changes that are not made.
    Where the time goes, in CPU time (`--cpu-calls` calls per block, the blocks in turn, median of
    `--cpu-rounds` rounds): this process's CPU per call (client stub, serialisation, transport; or the
    in-process work) and the server process's (all its threads). Unlike wall time on a shared machine these
    leave out other jobs' load and add up: the server's CPU for RankCandidates less the in-process conversions
    + score is what gRPC, the serving interceptor and the hand-off to a worker thread cost there.

"goal met"/"goal missed" is printed beside each ratio; nothing is asserted. The machine may be loaded by
others: only numbers of the same run compare.
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import numpy as np

from benchmarks.common import (
    SERVER_VARIANTS,
    cpu_ms_per_call,
    p50_p99,
    print_cpu,
    serve_variant,
    start_service,
    stop_service,
)

MMBEE_GOAL = 1.3
GRPC_GOAL = 1.2
LOCAL = "in-process engine.score (baseline)"
CONVERTED = "in-process + proto conversions (convert.py)"
REMOTE = "gRPC RankCandidates"
SERVICE = "kmono.rank.v1.RankingService"
FLOOR = "gRPC Health.Check (the transport's floor)"


def build_folders(preset: str, steps: int, tmp: Path) -> dict[str, Path]:
    """Train the full MMBee and the backbone alone on the same world (`steps` each); name -> model folder."""
    from recsys.data.world import WORLD_PRESETS
    from recsys.mmbee.pipeline import ModelOptions, fit, prepare, save_model_folder
    from recsys.mmbee.training import TrainConfig

    prepared = prepare(WORLD_PRESETS[preset], tmp / "work")
    config = TrainConfig(epochs=1, batch_size=256, progress=False, max_steps=steps, cpu=True)
    options = {
        "MMBee (SIM + MFQ + GIE)": ModelOptions(),
        "backbone (SIM alone)": ModelOptions(use_mfq=False, use_gie=False),
    }
    folders = {}
    for i, (name, option) in enumerate(options.items()):
        model, _ = fit(prepared, option, config)
        folders[name] = tmp / f"model-{i}"
        save_model_folder(folders[name], model, prepared, {})
    return folders


def make_requests(ranker, count: int, candidates: int, seed: int) -> list:
    """`count` requests of random known users, each with `candidates` distinct streams: the live streams the
    snapshot holds (with their streamers) and, beyond those, other broadcasts of known streamers that send their
    current segment in the request (what a client does for a stream the feature store has not caught up with)."""
    from recsys.mmbee.requests import CandidateInput, RankRequest

    snapshot, spec = ranker.featurizer.snapshot, ranker.spec
    users = snapshot.table("users", ["key"])["key"].to_pylist()
    streams = snapshot.table("streams", ["key", "author"])
    stream_keys, authors = streams["key"].to_pylist(), streams["author"].to_pylist()
    rng = np.random.default_rng(seed)
    extra = max(0, candidates - len(stream_keys))
    segments = rng.normal(size=(extra, 3, spec.segment_seconds, spec.content_dim)).astype(np.float32)
    pool = [CandidateInput(key, f"a{author}") for key, author in zip(stream_keys, authors, strict=True)]
    pool += [
        CandidateInput(
            f"live-extra-{i}",
            f"a{authors[i % len(authors)]}",
            embeddings={name: segments[i, m] for m, name in enumerate(("visual", "speech", "comments"))},
        )
        for i in range(extra)
    ]
    requests = []
    for _ in range(count):
        chosen = rng.choice(len(pool), candidates, replace=False)
        requests.append(RankRequest(users[rng.integers(len(users))], tuple(pool[i] for i in chosen)))
    return requests


def interleaved(calls: dict[str, Callable], inputs: list, warmup: int) -> dict[str, np.ndarray]:
    """ms per input for each call; the calls alternate ABBA per input, the first `warmup` inputs not kept."""
    names = list(calls)
    times: dict[str, list[float]] = {name: [] for name in names}
    for i, item in enumerate(inputs):
        for name in names if i % 2 == 0 else names[::-1]:
            start = time.perf_counter()
            calls[name](item)
            elapsed = (time.perf_counter() - start) * 1e3
            if i >= warmup:
                times[name].append(elapsed)
    return arrays(times)


def arrays(times: dict[str, list[float]]) -> dict[str, np.ndarray]:
    return {name: np.asarray(values) for name, values in times.items()}


def stages(rankers: dict, requests: list, warmup: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(featurizer ms, scorer ms) per request and model: `featurizer.batch(request)` then `scorer(batch)`, the
    two halves of `engine.score` timed apart, models alternating ABBA as in `interleaved`."""
    names = list(rankers)
    featurize: dict[str, list[float]] = {name: [] for name in names}
    forward: dict[str, list[float]] = {name: [] for name in names}
    for i, request in enumerate(requests):
        for name in names if i % 2 == 0 else names[::-1]:
            start = time.perf_counter()
            batch = rankers[name].featurizer.batch(request)
            middle = time.perf_counter()
            rankers[name].scorer(batch)
            end = time.perf_counter()
            if i >= warmup:
                featurize[name].append((middle - start) * 1e3)
                forward[name].append((end - middle) * 1e3)
    return arrays(featurize), arrays(forward)


def verdict(ratio: float, goal: float) -> str:
    return f"goal <= {goal}x {'met' if ratio <= goal else 'missed'}"


def to_proto(request):
    from kmono.rank.v1 import rank_pb2

    from libs.serving.inputs import to_float_tensor

    message = rank_pb2.RankCandidatesRequest(user_id=request.user_id)
    for c in request.candidates:
        candidate = message.candidates.add(stream_id=c.stream_id, author_id=c.author_id)
        for name, tokens in c.embeddings.items():
            candidate.features.embeddings[name].CopyFrom(to_float_tensor(tokens))
    return message


def print_rows(rows: list[tuple[str, np.ndarray]], baseline: str) -> float:
    """Print p50/p99 rows with the p50 ratio against `baseline`; returns the last row's ratio."""
    base = p50_p99(dict(rows)[baseline])[0]
    print(f"  {'':<52} {'p50 ms':>8} {'p99 ms':>8} {'p50 ratio':>10}")
    ratio = 1.0
    for name, values in rows:
        p50, p99 = p50_p99(values)
        ratio = p50 / base
        print(f"  {name:<52} {p50:8.2f} {p99:8.2f} {ratio:10.3f}")
    return ratio


def serve(args: argparse.Namespace) -> None:
    """This script as a variant server (`--serve-variant`, started by `start_service`) of `--model`."""
    import torch
    from kmono.rank.v1 import rank_pb2_grpc

    from recsys.mmbee.engine import RankingEngine
    from services.rank.servicer import RankingServicer

    torch.set_num_threads(args.threads)
    servicer = RankingServicer(RankingEngine.load([Path(args.model)]))
    serve_variant(
        args.serve_variant, servicer, "RankCandidates", servicer._rank,
        rank_pb2_grpc.add_RankingServiceServicer_to_server, SERVICE, args.host, int(args.port),
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        epilog=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--preset", default="default", help="synthetic world preset of both models (default: default)"
    )
    parser.add_argument("--candidates", type=int, default=200, help="candidates per request (default: 200)")
    parser.add_argument(
        "--requests", type=int, default=200, help="timed requests per measurement (default: 200)"
    )
    parser.add_argument("--warmup", type=int, default=20, help="untimed requests first (default: 20)")
    parser.add_argument(
        "--train-steps", type=int, default=20, help="training steps of each model (default: 20)"
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="torch intra-op threads, here and in the server (default: 1)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the requests")
    parser.add_argument("--skip-grpc", action="store_true", help="(a) only")
    parser.add_argument(
        "--cpu-calls", type=int, default=100, help="calls per block of (b)'s CPU table (default: 100)"
    )
    parser.add_argument("--cpu-rounds", type=int, default=3, help="rounds of (b)'s CPU table (default: 3)")
    parser.add_argument(
        "--variants",
        nargs="*",
        choices=tuple(SERVER_VARIANTS),
        default=list(SERVER_VARIANTS),
        help="(b): server variants measured beside the service (default: all; none: --variants)",
    )
    for hidden in ("--serve-variant", "--model", "--host", "--port", "--grace-seconds"):  # a variant's server
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_variant:
        serve(args)
        return

    import grpc
    import torch
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from kmono.rank.v1 import rank_pb2_grpc

    from recsys.mmbee.defaults import DEFAULT_MODEL_PATH
    from recsys.mmbee.engine import RankingEngine
    from services.rank import convert

    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    total = time.perf_counter()
    print(f"torch {torch.__version__}, {args.threads} thread(s), cpu count {os.cpu_count()}")
    with tempfile.TemporaryDirectory(prefix="mmbee-scoring-bench-") as tmp_name:
        tmp = Path(tmp_name)
        start = time.perf_counter()
        folders = build_folders(args.preset, args.train_steps, tmp)
        engines = {name: RankingEngine.load([folder]) for name, folder in folders.items()}
        print(f"models: '{args.preset}' world, {args.train_steps} training steps each, built in "
              f"{time.perf_counter() - start:.1f} s")  # fmt: skip
        for name, engine in engines.items():
            parameters = sum(p.numel() for p in engine.default.scorer.program.state_dict.values())
            print(f"  {name:<24} {engine.default.version}  ({parameters:,} exported parameters and buffers)")
        full_name, backbone_name = list(engines)
        requests = make_requests(
            engines[full_name].default, args.warmup + args.requests, args.candidates, args.seed
        )
        print(
            f"requests: {args.requests} timed (+{args.warmup} warm-up) x {args.candidates} candidates, known users"
        )

        # (a) MMBee against its backbone, in-process.
        scores = interleaved({n: e.score for n, e in engines.items()}, requests, args.warmup)
        featurize, forward = stages({n: e.default for n, e in engines.items()}, requests, args.warmup)
        print()
        print(f"(a) in-process RankingEngine.score, {args.candidates} candidates per request")
        ratio = print_rows([(f"{backbone_name} (baseline)", scores[backbone_name]),
                            (full_name, scores[full_name])], f"{backbone_name} (baseline)")  # fmt: skip
        print(f"  MMBee / backbone = {ratio:.3f}x: {verdict(ratio, MMBEE_GOAL)}; "
              f"+{p50_p99(scores[full_name])[0] - p50_p99(scores[backbone_name])[0]:.2f} ms at p50")  # fmt: skip
        print(
            "  where the time goes (a second interleaved pass, the two halves of engine.score timed apart):"
        )
        print_rows(
            [(f"featurizer, {backbone_name}", featurize[backbone_name]),
             (f"featurizer, {full_name}", featurize[full_name]),
             (f"scorer alone, {backbone_name}", forward[backbone_name]),
             (f"scorer alone, {full_name}", forward[full_name])],
            f"scorer alone, {backbone_name}",
        )  # fmt: skip
        print("  (ratios here are against the backbone's scorer alone)")

        if args.skip_grpc:
            print(f"total {time.perf_counter() - total:.1f} s")
            return
        # (b) gRPC against in-process, same folder, same requests.
        if (DEFAULT_MODEL_PATH / "engine.json").is_file():
            served, where = DEFAULT_MODEL_PATH, f"the embedded default model ({DEFAULT_MODEL_PATH})"
            local = RankingEngine.load([served])
        else:
            served, local = folders[full_name], engines[full_name]
            where = f"the MMBee folder of (a): the embedded default {DEFAULT_MODEL_PATH} does not exist yet"
        servers = {REMOTE: ("services.rank", ["--model", str(served), "--torch-threads", str(args.threads)])}
        for variant in args.variants:
            variant_args = [
                "--serve-variant",
                variant,
                "--model",
                str(served),
                "--threads",
                str(args.threads),
            ]
            servers[f"{REMOTE}, {variant}"] = ("benchmarks.mmbee_scoring", variant_args)
        protos = [to_proto(r) for r in requests]
        with ExitStack() as stack:
            pids, stubs = {}, {}
            for name, (module, server_args) in servers.items():
                process, port = start_service(module, SERVICE, server_args, tmp / f"server-{len(pids)}.log")
                stack.callback(stop_service, process)
                channel = stack.enter_context(grpc.insecure_channel(f"127.0.0.1:{port}"))
                pids[name], stubs[name] = process.pid, rank_pb2_grpc.RankingServiceStub(channel)
                if name == REMOTE:
                    health = health_pb2_grpc.HealthStub(channel)
                    pids[FLOOR] = process.pid
            probe = health_pb2.HealthCheckRequest(service=SERVICE)
            calls = {
                LOCAL: lambda i: local.score(requests[i]),
                CONVERTED: lambda i: convert.rank_response(local.score(convert.rank_request(protos[i]))),
                **{
                    name: lambda i, stub=stub: stub.RankCandidates(protos[i], timeout=30)
                    for name, stub in stubs.items()
                },
                FLOOR: lambda i: health.Check(probe, timeout=30),
            }
            grpc_times = interleaved(calls, list(range(len(requests))), args.warmup)
            cpu = cpu_ms_per_call(calls, min(args.cpu_calls, len(requests)), args.cpu_rounds, pids)
        print()
        print(
            "(b) RankCandidates over gRPC (server process on 127.0.0.1, one channel, sequential) vs in-process"
        )
        print(f"  model: {where}")
        for variant in args.variants:
            print(f"  variant {variant}: {SERVER_VARIANTS[variant]}")
        print_rows(list(grpc_times.items()), LOCAL)
        base = p50_p99(grpc_times[LOCAL])[0]
        ratio = p50_p99(grpc_times[REMOTE])[0] / base
        extra = p50_p99(grpc_times[REMOTE])[0] - base
        print(f"  gRPC / in-process = {ratio:.3f}x: {verdict(ratio, GRPC_GOAL)}; +{extra:.2f} ms at p50")
        floor = p50_p99(grpc_times[FLOOR])[0]
        print(f"  best reachable on this transport: (in-process + Health.Check) / in-process = "
              f"{(base + floor) / base:.3f}x")  # fmt: skip
        print_cpu(
            cpu, args, (LOCAL, CONVERTED, REMOTE, FLOOR), label_width=52, digits=2, work="conversions + score"
        )
    print(f"total {time.perf_counter() - total:.1f} s")


if __name__ == "__main__":
    main()
