"""`kmono chat`: talk with the DialogueService from a terminal (a client of the service, like `kmono video`).

    kmono chat --new --attach specs.txt                        # interactive: a new session about a product
    kmono chat --session ID "How heavy is it?"                 # one shot: the reply streams, citations follow
    kmono chat --new --mode quick-comment --attach slice.txt "comment"
    kmono chat --list [--user U]          kmono chat --delete ID
    kmono chat --local --new "hello"                           # the service in this process (no server needed)

Interactive mode reads one message per line; `/attach FILE` adds a file to the session, `/quit` (or an empty
line at end of input) ends it, Ctrl-C during a reply cancels it (the turn is kept as cancelled). Files: videos
(.mp4 .mov .webm .mkv) and images (.png .jpg .jpeg .webp .gif) are sent inline; anything else is read as a
text document titled by its file name (product details: "key: value" lines are facts). `--local` serves the
sessions of `--data-dir` (default ./var, as `kmono serve dialogue`) from this process with `--backend`. Imports
stay light: grpc and the engine load when the command runs.
"""

from __future__ import annotations

import argparse
import os
import sys
import uuid
from pathlib import Path
from typing import Any

from libs.cli.main import UsageError

DEFAULT_SERVER = "127.0.0.1:50051"
SERVICE = "kmono.dialogue.v1.DialogueService"
VIDEO_SUFFIXES = (".mp4", ".mov", ".webm", ".mkv", ".avi")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".gif")
MODES = ("auto", "knowledge", "chit-chat", "quick-comment")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "chat",
        help="chat with the DialogueService (interactive or one shot)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("message", nargs="?", help="one message to send (one-shot mode); none: interactive")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--session", help="the session to talk in")
    which.add_argument("--new", action="store_true", help="open a new session (its id is printed on stderr)")
    which.add_argument("--list", action="store_true", help="list sessions, newest first")
    which.add_argument("--delete", metavar="ID", help="delete a session")
    parser.add_argument("--user", default=os.environ.get("USER", "cli"), help="user id (default: $USER)")
    parser.add_argument("--topic", default="", help="a new session's topic (default: its first message)")
    parser.add_argument(
        "--attach", action="append", type=Path, default=[], help="a file to attach (repeatable)"
    )
    parser.add_argument("--mode", choices=MODES, default="auto", help="kind of reply (default: %(default)s)")
    parser.add_argument("--reasoning", action="store_true", help="show the reasoning trace (on stderr)")
    parser.add_argument(
        "--max-tokens", type=int, default=0, help="most reply tokens; 0: the server's default"
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--server",
        default=os.environ.get("KMONO_DIALOGUE_SERVER", DEFAULT_SERVER),
        help="host:port of the dialogue service (env KMONO_DIALOGUE_SERVER; default: %(default)s)",
    )
    where.add_argument("--local", action="store_true", help="run the service in this process")
    local = parser.add_argument_group("--local service")
    local.add_argument(
        "--data-dir", type=Path, default=Path(os.environ.get("KMONO_DATA_DIR", "var")), help="default: ./var"
    )
    local.add_argument(
        "--backend", default=None, help="language model spec (see `kmono serve dialogue --help`)"
    )
    parser.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    import grpc

    if args.local:
        from services.dialogue.client import LocalServer

        with LocalServer(args.data_dir, args.backend) as local:
            return _with_channel(args, local.address)
    try:
        return _with_channel(args, args.server)
    except grpc.RpcError as error:
        raise _usage(error, args.server) from None


def _with_channel(args: argparse.Namespace, address: str) -> int:
    import grpc
    from kmono.dialogue.v1 import dialogue_pb2, dialogue_pb2_grpc

    with grpc.insecure_channel(address) as channel:
        stub = dialogue_pb2_grpc.DialogueServiceStub(channel)
        try:
            if args.list:
                return _list(stub, args.user)
            if args.delete:
                stub.DeleteSession(dialogue_pb2.DeleteSessionRequest(session_id=args.delete), timeout=30)
                print(f"deleted {args.delete}")
                return 0
            attachments = [attachment_of(path) for path in args.attach]
            if args.new or not args.session:
                request = dialogue_pb2.CreateSessionRequest(
                    user_id=args.user, attachments=attachments, topic=args.topic, request_id=str(uuid.uuid4())
                )
                session_id = stub.CreateSession(request, timeout=60).session.session_id
                print(f"session {session_id}", file=sys.stderr)
            else:
                session_id = args.session
                if attachments:
                    stub.AttachMedia(
                        dialogue_pb2.AttachMediaRequest(session_id=session_id, attachments=attachments),
                        timeout=60,
                    )
            if args.message is not None:
                return _send(stub, session_id, args.message, args)
            return _interactive(stub, session_id, args)
        except grpc.RpcError as error:
            raise _usage(error, address) from None


def attachment_of(path: Path) -> Any:
    """A file as a dialogue Attachment: a video or image inline, anything else a text document."""
    from kmono.common.v1 import media_pb2
    from kmono.dialogue.v1 import dialogue_pb2

    if not path.is_file():
        raise UsageError(f"--attach: no such file {path}")
    suffix = path.suffix.lower()
    if suffix in VIDEO_SUFFIXES:
        return dialogue_pb2.Attachment(
            video=media_pb2.MediaRef(inline_data=path.read_bytes()), caption=path.stem
        )
    if suffix in IMAGE_SUFFIXES:
        return dialogue_pb2.Attachment(
            image=media_pb2.MediaRef(inline_data=path.read_bytes()), caption=path.stem
        )
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"--attach: {path} is neither a video, an image nor UTF-8 text") from None
    return dialogue_pb2.Attachment(document=dialogue_pb2.KnowledgeDocument(title=path.stem, text=text))


def _send(stub: Any, session_id: str, text: str, args: argparse.Namespace) -> int:
    """Stream one reply to stdout (reasoning to stderr); Ctrl-C cancels it. Citations and candidates follow."""
    from kmono.dialogue.v1 import dialogue_pb2

    modes = {
        "auto": dialogue_pb2.DIALOGUE_MODE_UNSPECIFIED,
        "knowledge": dialogue_pb2.DIALOGUE_MODE_KNOWLEDGE_QA,
        "chit-chat": dialogue_pb2.DIALOGUE_MODE_CHIT_CHAT,
        "quick-comment": dialogue_pb2.DIALOGUE_MODE_QUICK_COMMENT,
    }
    request = dialogue_pb2.ChatRequest(
        session_id=session_id,
        text=text,
        mode=modes[args.mode],
        reasoning_options=dialogue_pb2.ReasoningOptions(include_reasoning=args.reasoning),
        max_output_tokens=args.max_tokens,
        request_id=str(uuid.uuid4()),
    )
    call = stub.Chat(request, timeout=600)
    last = None
    try:
        for message in call:
            if message.reasoning_delta:
                print(message.reasoning_delta, end="", file=sys.stderr, flush=True)
            if message.text_delta:
                print(message.text_delta, end="", flush=True)
            last = message
    except KeyboardInterrupt:
        call.cancel()
        print("\n(cancelled)")
        return 130
    print()
    if last is not None:
        for i, citation in enumerate(last.citations, 1):
            snippet = " ".join(citation.snippet.split())[:100]
            print(
                f"  [{i}] {citation.title or citation.source_id} ({citation.source_id}){': ' + snippet if snippet else ''}"
            )
        for i, candidate in enumerate(last.comment_candidates, 1):
            print(
                f"  {i}. {candidate.text}  (relevance {candidate.relevance:.2f}, score {candidate.score:.2f})"
            )
        if last.finish_reason not in (
            dialogue_pb2.FINISH_REASON_STOP,
            dialogue_pb2.FINISH_REASON_UNSPECIFIED,
        ):
            print(
                f"  ({dialogue_pb2.FinishReason.Name(last.finish_reason).removeprefix('FINISH_REASON_').lower()})"
            )
    return 0


def _interactive(stub: Any, session_id: str, args: argparse.Namespace) -> int:
    from kmono.dialogue.v1 import dialogue_pb2

    print("type a message; /attach FILE adds a file, /quit ends", file=sys.stderr)
    while True:
        try:
            line = input("you> ").strip()
        except (EOFError, KeyboardInterrupt):
            print(file=sys.stderr)
            return 0
        if not line:
            continue
        if line in ("/quit", "/exit"):
            return 0
        if line.startswith("/attach"):
            path = Path(line.removeprefix("/attach").strip())
            try:
                attachment = attachment_of(path)
            except UsageError as error:
                print(error, file=sys.stderr)
                continue
            stub.AttachMedia(dialogue_pb2.AttachMediaRequest(session_id=session_id, attachments=[attachment]))
            print(f"attached {path}", file=sys.stderr)
            continue
        print("bot> ", end="", flush=True)
        _send(stub, session_id, line, args)


def _list(stub: Any, user: str) -> int:
    import datetime

    from kmono.dialogue.v1 import dialogue_pb2

    token = ""
    while True:
        reply = stub.ListSessions(
            dialogue_pb2.ListSessionsRequest(user_id=user, page_token=token), timeout=30
        )
        for s in reply.sessions:
            when = datetime.datetime.fromtimestamp(s.update_time.seconds).isoformat(
                sep=" ", timespec="seconds"
            )
            print(
                f"{s.session_id}  {when}  {s.turn_count:3d} turns  {len(s.attachments)} attachments  {s.topic[:60]}"
            )
        token = reply.next_page_token
        if not token:
            return 0


def _usage(error: Any, address: str) -> UsageError:
    """A gRPC error as one line (INVALID_ARGUMENT names the field)."""
    import grpc
    from google.rpc import error_details_pb2
    from grpc_status import rpc_status

    if error.code() == grpc.StatusCode.UNAVAILABLE:
        return UsageError(
            f"no dialogue service at {address} (start one: kmono serve dialogue, or use --local)"
        )
    status = rpc_status.from_call(error)
    fields = []
    for detail in status.details if status is not None else ():
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            fields = [f"{v.field}: {v.description}" for v in bad.field_violations]
    return UsageError(f"{error.code().name}: {'; '.join(fields) if fields else error.details()}")
