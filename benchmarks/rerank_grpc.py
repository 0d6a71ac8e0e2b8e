"""What gRPC costs on top of the rerank engine: per-request latency of RerankList through a RerankService process
against `RerankEngine.rerank` in this process, on the same requests, for pages of n = 50 candidates into m = 10
slots and n = 8 into m = 4 (the issue's first screen of the grid feed).

    .venv/bin/python benchmarks/rerank_grpc.py                       # about a minute on a 2-core CPU
    .venv/bin/python benchmarks/rerank_grpc.py --requests 1000 --decoder ar --model DIR

Model: `--model DIR` when given; else the embedded default (`recsys.rerank.defaults.DEFAULT_MODEL_PATH`) when it
exists; else a tiny random model (`recsys.rerank.serving.testing.tiny_model_folder`) in a temporary directory. The
output says which. Weights do not matter for speed; the sizes do, so compare only runs on the same model.

Requests: `--requests` per page size (+ `--warmup` untimed first), each with random upstream scores for the three
objectives, a category and one of n / 3 authors, a per-author cap of 3 and the grid layout; prebuilt protos.
The calls below run in a random order per request (seeded), so that load drift, and the server finishing an RPC
after its answer, hit all of them alike:
- in-process `engine.rerank(request)` (the baseline): checks, the PageBatch, decoding, scores and utility;
- in-process + the proto conversions of `services.rerank.convert` (what the servicer adds without transport);
- gRPC `RerankList` to `python -m services.rerank --model DIR --torch-threads N` on 127.0.0.1, one channel,
  sequential calls;
- gRPC `Health.Check` on the same channel: what any RPC to this server costs (the transport's floor);
- gRPC `RerankList` to each of `--variants` (default: all), the same servicer and model served by this script
  with one change (`benchmarks.common.SERVER_VARIANTS`): "inline" runs the servicer's work on the event loop
  instead of a worker thread (what the hand-off costs), "bare" leaves out libs.serving's interceptor (what the
  serving kit adds per RPC). They measure changes that are not made; the service itself is unchanged.
ratio = gRPC / in-process at p50; the issue's goal: <= 1.2x. Beside it, the best ratio any servicer could reach
on this transport: (in-process + Health.Check) / in-process, the engine plus the floor alone.

Where the time goes, in CPU time (`--cpu-calls` calls per block, the blocks in turn, median of `--cpu-rounds`
rounds): this process's CPU (the client's stub, serialisation and transport; or the in-process work) and the
server process's (all its threads) per call. Unlike wall time on a shared machine, these leave out other jobs'
load and add up: the server's CPU for RerankList less the in-process convert + engine is what gRPC, the serving
interceptor and the hand-off to a worker thread cost there.

"goal met"/"goal missed" is printed, nothing is asserted. The machine may be loaded by others: only numbers of
the same run compare.
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

GRPC_GOAL = 1.2
LOCAL = "in-process engine.rerank (baseline)"
CONVERTED = "in-process + proto conversions (convert.py)"
REMOTE = "gRPC RerankList"
FLOOR = "gRPC Health.Check (the transport's floor)"
SERVICE = "kmono.rerank.v1.RerankService"
SIZES = ((50, 10), (8, 4))
CAP = 3


def make_protos(count: int, n: int, m: int, decoder: int, seed: int) -> list:
    from kmono.rerank.v1 import rerank_pb2

    from recsys.data.pages import CATEGORIES

    rng = np.random.default_rng(seed)
    protos = []
    for r in range(count):
        request = rerank_pb2.RerankListRequest(
            user_id=f"u{r}",
            num_slots=m,
            decoder=decoder,
            layout=rerank_pb2.LAYOUT_GRID,
            utility_options=rerank_pb2.UtilityOptions(max_items_per_author=CAP, diversity_weight=0.3),
        )
        scores = rng.uniform(size=(n, 3)).tolist()
        categories = rng.integers(len(CATEGORIES), size=n).tolist()
        authors = feasible_authors(rng, n, m)
        for i in range(n):
            ctr, watch, satisfaction = scores[i]
            item = request.items.add(
                item_id=f"r{r}-v{i}",
                author_id=f"a{authors[i]}",
                scores={"ctr": ctr, "watch_time": watch, "satisfaction": 2 * satisfaction - 1},
            )
            item.features.categorical_features["category"] = CATEGORIES[categories[i]]
        protos.append(request)
    return protos


def feasible_authors(rng: np.random.Generator, n: int, m: int) -> list[int]:
    """Each item's author, from a pool of n / 3 (so the cap binds often), redrawn until the cap can fill m slots."""
    while True:
        authors = rng.integers(max(1, n // 3), size=n)
        if np.minimum(np.bincount(authors), CAP).sum() >= m:
            return authors.tolist()


def interleaved(calls: dict[str, Callable], count: int, warmup: int, seed: int) -> dict[str, np.ndarray]:
    """ms per request index for each call; the calls run in a fresh random order per request (so each follows
    the gRPC call, whose server may still be finishing its work on the shared cores, equally often); the first
    `warmup` requests are not kept."""
    names = list(calls)
    rng = np.random.default_rng(seed)
    times: dict[str, list[float]] = {name: [] for name in names}
    for i in range(count):
        for k in rng.permutation(len(names)):
            start = time.perf_counter()
            calls[names[k]](i)
            elapsed = (time.perf_counter() - start) * 1e3
            if i >= warmup:
                times[names[k]].append(elapsed)
    return {name: np.asarray(values) for name, values in times.items()}


def serve(args: argparse.Namespace) -> None:
    """This script as a variant server (`--serve-variant`, started by `start_service`) of the same model."""
    import torch
    from kmono.rerank.v1 import rerank_pb2_grpc

    from recsys.rerank.serving.engine import RerankEngine
    from services.rerank.servicer import RerankServicer

    torch.set_num_threads(args.threads)
    servicer = RerankServicer(RerankEngine.load([args.model]))
    serve_variant(
        args.serve_variant, servicer, "RerankList", servicer._rerank,
        rerank_pb2_grpc.add_RerankServiceServicer_to_server, SERVICE, args.host, int(args.port),
    )  # fmt: skip


def choose_model(args: argparse.Namespace, tmp: Path) -> tuple[Path, str]:
    from recsys.rerank.defaults import DEFAULT_MODEL_PATH
    from recsys.rerank.models import RerankModelConfig, new_models, save_model_folder
    from recsys.rerank.models.folder import CONFIG_FILE

    if args.model:
        return args.model, f"--model {args.model}"
    if (DEFAULT_MODEL_PATH / CONFIG_FILE).is_file():
        return DEFAULT_MODEL_PATH, f"the embedded default ({DEFAULT_MODEL_PATH})"
    save_model_folder(tmp / "untrained", new_models(RerankModelConfig(), seed=0))
    return tmp / "untrained", (
        f"untrained models of the default size (RerankModelConfig()): {DEFAULT_MODEL_PATH} does not exist yet"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        epilog=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", type=Path, default=None, help="a rerank model folder (default: see above)")
    parser.add_argument(
        "--requests", type=int, default=300, help="timed requests per page size (default: 300)"
    )
    parser.add_argument("--warmup", type=int, default=30, help="untimed requests first (default: 30)")
    parser.add_argument("--decoder", choices=("nar", "ar"), default="nar", help="decoder of every request")
    parser.add_argument("--threads", type=int, default=1, help="torch threads, here and in the server")
    parser.add_argument("--seed", type=int, default=0, help="seed of the requests")
    parser.add_argument(
        "--cpu-calls", type=int, default=200, help="calls per block of the CPU table (default: 200)"
    )
    parser.add_argument("--cpu-rounds", type=int, default=3, help="rounds of the CPU table (default: 3)")
    parser.add_argument(
        "--variants",
        nargs="*",
        choices=tuple(SERVER_VARIANTS),
        default=list(SERVER_VARIANTS),
        help="server variants measured beside the service (default: all; none: --variants)",
    )
    for hidden in ("--serve-variant", "--host", "--port", "--grace-seconds"):  # a variant's server process
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_variant:
        serve(args)
        return

    import grpc
    import torch
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from kmono.rerank.v1 import rerank_pb2, rerank_pb2_grpc

    from recsys.rerank.serving.engine import RerankEngine
    from services.rerank import convert

    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    decoder = {"nar": rerank_pb2.DECODER_NON_AUTOREGRESSIVE, "ar": rerank_pb2.DECODER_AUTOREGRESSIVE}[
        args.decoder
    ]
    total = time.perf_counter()
    print(
        f"torch {torch.__version__}, {args.threads} thread(s), cpu count {os.cpu_count()}, decoder {args.decoder}"
    )
    with tempfile.TemporaryDirectory(prefix="rerank-grpc-bench-") as tmp_name, ExitStack() as stack:
        tmp = Path(tmp_name)
        folder, where = choose_model(args, tmp)
        engine = RerankEngine.load([folder])
        print(f"model: {engine.default.version}, {where}")
        model_args = ["--model", str(folder), "--torch-threads", str(args.threads)]
        servers = {REMOTE: ("services.rerank", model_args)}
        for variant in args.variants:
            servers[f"{REMOTE}, {variant}"] = (
                "benchmarks.rerank_grpc",
                ["--serve-variant", variant, "--model", str(folder), "--threads", str(args.threads)],
            )
        pids, stubs = {}, {}
        for name, (module, server_args) in servers.items():
            process, port = start_service(module, SERVICE, server_args, tmp / f"server-{len(pids)}.log")
            stack.callback(stop_service, process)
            channel = stack.enter_context(grpc.insecure_channel(f"127.0.0.1:{port}"))
            pids[name], stubs[name] = process.pid, rerank_pb2_grpc.RerankServiceStub(channel)
            if name == REMOTE:
                health = health_pb2_grpc.HealthStub(channel)
                pids[FLOOR] = process.pid
        probe = health_pb2.HealthCheckRequest(service=SERVICE)
        for variant in args.variants:
            print(f"  variant {variant}: {SERVER_VARIANTS[variant]}")
        for n, m in SIZES:
            count = args.warmup + args.requests
            protos = make_protos(count, n, m, decoder, args.seed)
            domain = [convert.rerank_request(p) for p in protos]
            calls = {
                LOCAL: lambda i, domain=domain: engine.rerank(domain[i]),
                CONVERTED: lambda i, protos=protos: convert.rerank_response(
                    engine.rerank(convert.rerank_request(protos[i]))
                ),
                **{
                    name: lambda i, protos=protos, stub=stub: stub.RerankList(protos[i], timeout=30)
                    for name, stub in stubs.items()
                },
                FLOOR: lambda i: health.Check(probe, timeout=30),
            }
            times = interleaved(calls, count, args.warmup, args.seed)
            print()
            print(
                f"n = {n} candidates, m = {m} slots: {args.requests} timed requests (+{args.warmup} warm-up)"
            )
            base = p50_p99(times[LOCAL])[0]
            print(f"  {'':<56} {'p50 ms':>8} {'p99 ms':>8} {'p50 ratio':>10}")
            for name, values in times.items():
                p50, p99 = p50_p99(values)
                print(f"  {name:<56} {p50:8.3f} {p99:8.3f} {p50 / base:10.3f}")
            ratio = p50_p99(times[REMOTE])[0] / base
            met = "met" if ratio <= GRPC_GOAL else "missed"
            print(f"  gRPC / in-process = {ratio:.3f}x: goal <= {GRPC_GOAL}x {met}; "
                  f"+{p50_p99(times[REMOTE])[0] - base:.3f} ms at p50")  # fmt: skip
            floor = p50_p99(times[FLOOR])[0]
            print(f"  best reachable on this transport: (in-process + Health.Check) / in-process = "
                  f"{(base + floor) / base:.3f}x")  # fmt: skip
            print_cpu(
                cpu_ms_per_call(calls, min(args.cpu_calls, count), args.cpu_rounds, pids), args,
                (LOCAL, CONVERTED, REMOTE, FLOOR), label_width=56, digits=3, work="convert + engine",
            )  # fmt: skip
    print(f"total {time.perf_counter() - total:.1f} s")


if __name__ == "__main__":
    main()
