"""`kmono video generate|status|cancel|list`: generate mask-conditioned videos with the VideoGenerationService.

    kmono video generate --prompt "a red circle moves right" --masks circle.json --server 127.0.0.1:50051
    kmono video generate --prompt "a red ball" --reference-video ball.mp4 --query "ball." --local
    kmono video generate --prompt "a red circle" --masks circle.json --no-wait    # prints the operation name
    kmono video status operations/video-1234 --server 127.0.0.1:50051

`generate` follows the job with a progress bar (fed by WatchOperation) and writes the video, the mask overlay
and a side-by-side GIF into `--out`; with `--no-wait` it only submits the job and prints the operation's name
(stdout) and how to follow it (stderr). What the model will not read of the prompt (words it does not know, text
past its window) is printed as `kmono video: warning: ...` lines (stderr) once the job starts, and `status`
names the unknown words. `--local` runs the service in this process (the shapes-world default
engine unless `--engine-path`/`--tiny-engine` say otherwise). A `--masks` file that cannot be read, whatever
its decoder raises (a hostile file: bad zip, corrupt NPZ, deep JSON, an RLE bomb), is one line naming the
file, exit 2. Imports here stay light: grpc, torch and the service load when a command runs, so `kmono --help`
stays fast.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import uuid
from pathlib import Path
from typing import Any

from libs.cli.main import UsageError

logger = logging.getLogger(__name__)

ENGINES = ("mvideo", "vace")
DEFAULT_SERVER = "127.0.0.1:50051"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "video",
        help="generate mask-conditioned videos (VideoGenerationService client)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="video_command", metavar="COMMAND", required=True)

    def server_flag(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--server",
            default=os.environ.get("KMONO_VIDEO_SERVER", DEFAULT_SERVER),
            help="host:port of the video service (env KMONO_VIDEO_SERVER; default: %(default)s)",
        )

    gen = commands.add_parser("generate", help="generate one video and write it (with overlays) to --out")
    gen.add_argument("--prompt", required=True, help="what the video shows")
    gen.add_argument("--negative-prompt", default="", help="what it must not show")
    cond = gen.add_mutually_exclusive_group()
    cond.add_argument("--masks", type=Path, help="mask sequence file (.json COCO, .npz, .pb, .zip) to follow")
    cond.add_argument("--reference-video", type=Path, help="video to extract the motion from (with --query)")
    gen.add_argument("--query", help="objects to track in --reference-video, e.g. 'ball.'")
    where = gen.add_mutually_exclusive_group()
    server_flag(where)
    where.add_argument("--local", action="store_true", help="run the service in this process")
    gen.add_argument(
        "--engine",
        choices=ENGINES,
        default="mvideo",
        help="mvideo (default; the shapes-world model unless the server loads another) or vace (Wan2.1-VACE, "
        "when the server was started with --vace-path)",
    )
    gen.add_argument("--width", type=int, default=0, help="0: the masks' or the engine's")
    gen.add_argument("--height", type=int, default=0, help="0: the masks' or the engine's")
    gen.add_argument(
        "--frames",
        type=int,
        default=0,
        help="0: the masks' or one clip of the engine; longer videos are made clip by clip (mvideo)",
    )
    gen.add_argument("--fps", type=float, default=0.0, help="0: the masks' or the engine's")
    gen.add_argument("--steps", type=int, default=0, help="denoising steps; 0: the engine's default")
    gen.add_argument("--guidance", type=float, default=None, help="text guidance scale")
    gen.add_argument(
        "--mask-guidance", type=float, default=None, help="mask guidance scale (0 drops the masks)"
    )
    gen.add_argument("--seed", type=int, default=None, help="default: fixed per operation")
    gen.add_argument("--request-id", default=None, help="idempotency key (default: a fresh UUID4)")
    gen.add_argument("--out", type=Path, default=Path("out"), help="output directory (default: ./out)")
    gen.add_argument("--name", default="video", help="stem of the output files (default: video)")
    gen.add_argument(
        "--no-wait",
        action="store_true",
        help="submit the job, print its operation name and exit (follow it with `kmono video status NAME`)",
    )
    local = gen.add_argument_group("--local engine")
    local.add_argument(
        "--engine-path", default=None, help="MVideo pipeline folder (default: the shapes default)"
    )
    local.add_argument("--tiny-engine", action="store_true", help="tiny random engine (tests)")
    local.add_argument("--data-dir", type=Path, default=None, help="operations store (default: a temp dir)")
    gen.set_defaults(func=_generate)

    status = commands.add_parser("status", help="show an operation's state and progress")
    status.add_argument("name", help="operations/{id}")
    server_flag(status)
    status.set_defaults(func=_status)

    cancel = commands.add_parser("cancel", help="cancel an operation")
    cancel.add_argument("name", help="operations/{id}")
    server_flag(cancel)
    cancel.set_defaults(func=_cancel)

    listing = commands.add_parser("list", help="list operations")
    listing.add_argument("--filter", default="", help="AIP-160 filter, e.g. 'done = false'")
    listing.add_argument("--page-size", type=int, default=50)
    server_flag(listing)
    listing.set_defaults(func=_list)


def _rpc_error(exc: Any) -> UsageError:
    """A gRPC error as one line (INVALID_ARGUMENT names the field)."""
    from google.rpc import error_details_pb2
    from grpc_status import rpc_status

    status = rpc_status.from_call(exc)
    fields = []
    if status is not None:
        for detail in status.details:
            if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                fields = [f"{v.field}: {v.description}" for v in bad.field_violations]
    text = "; ".join(fields) if fields else exc.details()
    return UsageError(f"{exc.code().name}: {text}")


def _build_request(args: argparse.Namespace) -> Any:
    from kmono.common.v1 import media_pb2
    from kmono.video.v1 import video_pb2

    from libs.media import load, to_proto

    request = video_pb2.CreateVideoRequest(
        prompt=args.prompt,
        negative_prompt=args.negative_prompt,
        engine=video_pb2.ENGINE_VACE if args.engine == "vace" else video_pb2.ENGINE_MVIDEO,
        width=args.width,
        height=args.height,
        num_frames=args.frames,
        fps=args.fps,
        num_inference_steps=args.steps,
        request_id=args.request_id or str(uuid.uuid4()),
    )
    if args.guidance is not None:
        request.guidance_scale = args.guidance
    if args.mask_guidance is not None:
        request.mask_guidance_scale = args.mask_guidance
    if args.seed is not None:
        request.seed = args.seed
    if args.reference_video is not None and not args.query:
        raise UsageError("--reference-video needs --query, e.g. --query 'ball.'")
    if args.query and args.reference_video is None:
        raise UsageError("--query goes with --reference-video")
    if args.masks is not None:
        if not args.masks.exists():
            raise UsageError(f"--masks: no such file {args.masks}")
        try:
            request.mask_sequence.CopyFrom(to_proto(load(args.masks)))
        except Exception as exc:  # anything a hostile file makes a decoder raise: one line, never a traceback
            from generation.masks.cli import error_reason

            logger.debug("reading %s failed", args.masks, exc_info=True)
            raise UsageError(f"--masks: cannot read {args.masks}: {error_reason(exc)}") from None
    elif args.reference_video is not None:
        if not args.reference_video.is_file():
            raise UsageError(f"--reference-video: no such file {args.reference_video}")
        request.reference_video.CopyFrom(
            video_pb2.ReferenceVideo(
                video=media_pb2.MediaRef(inline_data=args.reference_video.read_bytes()), text_query=args.query
            )
        )
    return request


def _follow(client: Any, name: str) -> Any:
    """WatchOperation into a tqdm bar (denoising steps), each of the job's warnings printed once (stderr) as
    soon as the service reports it; returns the final operation."""
    from tqdm import tqdm

    from services.video.client import metadata_of

    printed: set[str] = set()
    with tqdm(total=0, unit="step", desc="queued", file=sys.stderr, dynamic_ncols=True) as bar:

        def update(op: Any) -> None:
            meta = metadata_of(op)
            for warning in meta.warnings:
                if warning not in printed:
                    printed.add(warning)
                    bar.write(f"kmono video: warning: {warning}", file=sys.stderr)
            progress = meta.progress
            if progress.total_steps and bar.total != progress.total_steps:
                bar.total = progress.total_steps
            bar.set_description(progress.stage or "queued", refresh=False)
            if progress.step > bar.n:
                bar.update(progress.step - bar.n)
            bar.refresh()

        return client.wait(name, on_update=update)


def _generate(args: argparse.Namespace) -> int:
    if args.no_wait and args.local:
        raise UsageError("--no-wait needs a server (--server): a --local service ends with this command")
    request = _build_request(args)
    if args.local:
        import contextlib
        import tempfile

        from services.video.client import LocalServer
        from services.video.config import VideoServiceConfig

        config_defaults = VideoServiceConfig()

        with tempfile.TemporaryDirectory(prefix="kmono-video-") as tmp, contextlib.ExitStack() as stack:
            config = VideoServiceConfig(
                data_dir=args.data_dir or Path(tmp),
                engine_path=args.engine_path or config_defaults.engine_path,
                tiny_engine=args.tiny_engine,
                tiny_masks=args.tiny_engine,
            )
            try:  # a missing engine folder is the user's to fix; errors of the job itself are not
                local = stack.enter_context(LocalServer(config))
            except FileNotFoundError as exc:
                raise UsageError(str(exc)) from None
            return _run_generate(args, request, local.address)
    return _run_generate(args, request, args.server)


def _run_generate(args: argparse.Namespace, request: Any, address: str) -> int:
    import grpc

    from services.video.client import CHANNEL_OPTIONS, VideoClient, response_of

    with grpc.insecure_channel(address, options=CHANNEL_OPTIONS) as channel:
        client = VideoClient(channel)
        try:
            op = client.create(request)
            if args.no_wait:
                print(op.name)
                follow = f"kmono video status {op.name}"
                if address != os.environ.get("KMONO_VIDEO_SERVER", DEFAULT_SERVER):
                    follow += f" --server {address}"
                print(f"queued; follow it with: {follow}", file=sys.stderr)
                return 0
            print(f"{op.name} queued", file=sys.stderr)
            op = _follow(client, op.name)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.UNAVAILABLE:
                raise UsageError(f"no video service at {address} (start one: kmono serve video)") from None
            raise _rpc_error(exc) from None
        if op.HasField("error"):
            print(f"kmono video: {op.name} failed: {op.error.message}", file=sys.stderr)
            return 1
        paths = client.save_outputs(op, args.out, args.name)
        response = response_of(op)
        print(
            f"{op.name}: {response.num_frames} frames {response.width}x{response.height} at {response.fps:g} fps, "
            f"seed {response.seed}, {response.model_version}"
        )
        for kind, path in paths.items():
            print(f"  {kind:13s} {path}")
    return 0


def _with_operations(args: argparse.Namespace, call: Any) -> int:
    import grpc

    from services.video.client import CHANNEL_OPTIONS, VideoClient

    with grpc.insecure_channel(args.server, options=CHANNEL_OPTIONS) as channel:
        try:
            return call(VideoClient(channel))
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.UNAVAILABLE:
                raise UsageError(f"no video service at {args.server}") from None
            raise _rpc_error(exc) from None


def _describe(op: Any) -> str:
    from kmono.common.v1 import operation_pb2

    from services.video.client import metadata_of

    meta = metadata_of(op)
    state = operation_pb2.OperationState.Name(meta.state).removeprefix("OPERATION_STATE_")
    progress = meta.progress
    line = f"{op.name}  {state:9s} step {progress.step}/{progress.total_steps} {progress.stage}"
    if progress.HasField("eta") and not op.done:
        line += f" eta {progress.eta.ToTimedelta().total_seconds():.1f}s"
    if meta.unknown_words:
        line += "  unknown words: " + ", ".join(meta.unknown_words)
    if op.HasField("error"):
        line += f"  error: {op.error.message}"
    return line


def _status(args: argparse.Namespace) -> int:
    from google.longrunning import operations_pb2

    def call(client: Any) -> int:
        print(_describe(client.operations.GetOperation(operations_pb2.GetOperationRequest(name=args.name))))
        return 0

    return _with_operations(args, call)


def _cancel(args: argparse.Namespace) -> int:
    from google.longrunning import operations_pb2

    def call(client: Any) -> int:
        client.operations.CancelOperation(operations_pb2.CancelOperationRequest(name=args.name))
        print(_describe(client.operations.GetOperation(operations_pb2.GetOperationRequest(name=args.name))))
        return 0

    return _with_operations(args, call)


def _list(args: argparse.Namespace) -> int:
    from google.longrunning import operations_pb2

    def call(client: Any) -> int:
        reply = client.operations.ListOperations(
            operations_pb2.ListOperationsRequest(
                name="operations", filter=args.filter, page_size=args.page_size
            )
        )
        for op in reply.operations:
            print(_describe(op))
        if reply.next_page_token:
            print(f"(more: next page token {reply.next_page_token})")
        return 0

    return _with_operations(args, call)
