"""The DialogueService as a real server process, under bad input, kill -9 and overload:

- bad input is INVALID_ARGUMENT naming the field (an empty message, an oversized, undecodable video or image
  attachment, one turn too many), an unknown session NOT_FOUND, and a failed request changes nothing of the
  session it named (its turns and attachments read back identical);
- kill -9 while a reply streams, then a restart on the same data directory: every completed exchange is there,
  the interrupted one is not (half a reply is never stored), and the client's retry with its request_id
  completes it exactly once;
- more concurrent Chat streams than `--max-concurrent-rpcs` allows: the excess is RESOURCE_EXHAUSTED, never
  INTERNAL, and the server answers normally afterwards.
The server runs the scripted LM of `services.dialogue.testing` (a 25-piece reply, `--delay` s a piece).
Bounded: 1 kill, 8 concurrent streams; long (`make reliability`): 20 and 64.
"""

from __future__ import annotations

import concurrent.futures
import threading

import grpc
import numpy as np
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from kmono.common.v1 import media_pb2
from kmono.dialogue.v1 import dialogue_pb2, dialogue_pb2_grpc

from libs.media import encode_video
from libs.serving import find_detail
from services import SERVICE_FULL_NAMES
from tests.reliability.harness import ServerProcess, free_port, report, scaled

SERVICE = SERVICE_FULL_NAMES["dialogue"]
PRODUCT = dialogue_pb2.Attachment(
    attachment_id="x200",
    document=dialogue_pb2.KnowledgeDocument(
        title="Aurora X200 phone", text="Weight: 187 g\nPrice: 2999 yuan"
    ),
)
NOTE = dialogue_pb2.Attachment(document=dialogue_pb2.KnowledgeDocument(title="note", text="Colour: green"))
FULL = dialogue_pb2.SESSION_VIEW_FULL


def scripted_server(tmp_path, *flags: str, delay: float = 0.05) -> ServerProcess:
    argv = [
        "-m",
        "services.dialogue.testing",
        "--delay",
        str(delay),
        "--",
        "--data-dir",
        str(tmp_path),
        *flags,
    ]
    return ServerProcess(argv=argv, port=free_port(), log=tmp_path / "dialogue.log", service=SERVICE)


def reply(stub, session_id: str, text: str, **fields) -> list[dialogue_pb2.ChatResponse]:
    return list(stub.Chat(dialogue_pb2.ChatRequest(session_id=session_id, text=text, **fields), timeout=60))


def snapshot(stub, session_id: str) -> dialogue_pb2.Session:
    return stub.GetSession(
        dialogue_pb2.GetSessionRequest(session_id=session_id, view=FULL), timeout=30
    ).session


def violation(error: grpc.RpcError) -> str:
    detail = find_detail(rpc_status.from_call(error), error_details_pb2.BadRequest)
    return detail.field_violations[0].field if detail else ""


@pytest.fixture(scope="module")
def limited(tmp_path_factory):
    """One server for the limit tests (a process start costs seconds): 4 turns a session, 20 kB attachments,
    2 RPCs in flight."""
    process = scripted_server(
        tmp_path_factory.mktemp("dialogue-limits"), "--max-turns", "4", "--max-attachment-bytes", "20000",
        "--max-concurrent-rpcs", "2", delay=0.02,
    )  # fmt: skip
    channel = process.start()
    yield dialogue_pb2_grpc.DialogueServiceStub(channel)
    process.stop()


def test_bad_input_is_named_and_a_failed_request_loses_nothing(limited):
    stub = limited
    video = encode_video(np.full((2, 16, 16, 3), 90, np.uint8), fps=4, format="mp4")
    media = {
        "oversized": dialogue_pb2.Attachment(video=media_pb2.MediaRef(inline_data=bytes(20001))),
        "undecodable video": dialogue_pb2.Attachment(
            video=media_pb2.MediaRef(inline_data=b"\x00\x00\x00 ftypmp4")
        ),
        "undecodable image": dialogue_pb2.Attachment(
            image=media_pb2.MediaRef(inline_data=b"\x89PNG\r\n\x1a\n..")
        ),
    }
    sid = stub.CreateSession(
        dialogue_pb2.CreateSessionRequest(user_id="u1", attachments=[PRODUCT]), timeout=30
    ).session.session_id
    reply(stub, sid, "hello", attachments=[dialogue_pb2.Attachment(video={"inline_data": video})])
    before = snapshot(stub, sid)
    cases = [
        ("empty message", dict(text="  "), "text"),
        ("oversized", dict(text="look", attachments=[media["oversized"]]), "attachments[0].video.inline_data"),
        ("undecodable video", dict(text="look", attachments=[media["undecodable video"]]),
         "attachments[0].video.inline_data"),
        ("undecodable image", dict(text="look", attachments=[NOTE, media["undecodable image"]]),
         "attachments[1].image.inline_data"),
    ]  # fmt: skip
    for name, fields, field in cases:
        fields.setdefault("attachments", [])
        with pytest.raises(grpc.RpcError) as error:
            reply(stub, sid, **fields)
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (name, error.value.details())
        assert violation(error.value) == field, (name, violation(error.value))
        assert snapshot(stub, sid) == before, f"{name} changed the session"
    with pytest.raises(grpc.RpcError) as error:
        stub.CreateSession(dialogue_pb2.CreateSessionRequest(user_id="u1", attachments=[media["oversized"]]))
    assert violation(error.value) == "attachments[0].video.inline_data"
    listed = stub.ListSessions(dialogue_pb2.ListSessionsRequest(user_id="u1"), timeout=30).sessions
    assert [s.session_id for s in listed] == [sid]  # the refused session was never created

    reply(stub, sid, "What does it cost?")
    full = snapshot(stub, sid)
    with pytest.raises(grpc.RpcError) as error:
        reply(stub, sid, "one more")
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT and violation(error.value) == "session_id"
    assert "limit is 4" in error.value.details() and snapshot(stub, sid) == full
    with pytest.raises(grpc.RpcError) as error:
        reply(stub, "no-such-session", "hello")
    assert error.value.code() == grpc.StatusCode.NOT_FOUND
    report("dialogue: bad inputs answered by field, session unchanged", len(cases) + 2)


def test_kill_9_mid_reply_keeps_completed_turns_and_the_retry_completes_once(tmp_path):
    process = scripted_server(tmp_path)
    kills = scaled(1, 20)
    try:
        stub = dialogue_pb2_grpc.DialogueServiceStub(process.start())
        sid = stub.CreateSession(
            dialogue_pb2.CreateSessionRequest(user_id="u1"), timeout=30
        ).session.session_id
        reply(stub, sid, "first message", request_id="r-0")
        for k in range(1, kills + 1):
            before = snapshot(stub, sid)
            request = dialogue_pb2.ChatRequest(session_id=sid, text=f"message {k}", request_id=f"r-{k}")
            got = []
            for message in stub.Chat(request, timeout=60):
                got.append(message)
                if len(got) == 3:  # mid-reply: 3 of its 25 pieces sent
                    process.kill9()
                    break
            stub = dialogue_pb2_grpc.DialogueServiceStub(process.start())
            assert snapshot(stub, sid) == before, "a half reply was stored, or a finished turn was lost"
            retried = reply(stub, sid, f"message {k}", request_id=f"r-{k}")
            again = reply(stub, sid, f"message {k}", request_id=f"r-{k}")
            assert retried[-1].finish_reason == dialogue_pb2.FINISH_REASON_STOP
            assert [m.text_delta for m in again] == ["".join(m.text_delta for m in retried), ""]
        session = snapshot(stub, sid)
        users = [t.text for t in session.turns if t.role == dialogue_pb2.ROLE_USER]
        assert users == ["first message"] + [f"message {k}" for k in range(1, kills + 1)]
        assert session.turn_count == 2 * (kills + 1)
        report("dialogue: kill -9 mid-reply, turns lost / duplicated", f"0 / 0 over {kills} kills")
    finally:
        process.stop()


def test_overload_is_resource_exhausted_and_the_server_recovers(limited):
    stub = limited
    streams = scaled(8, 64)
    sids = [
        stub.CreateSession(dialogue_pb2.CreateSessionRequest(user_id="u1"), timeout=30).session.session_id
        for _ in range(streams)
    ]
    start = threading.Barrier(streams)

    def one(sid: str) -> grpc.StatusCode:
        start.wait()
        try:
            reply(stub, sid, "hello")
            return grpc.StatusCode.OK
        except grpc.RpcError as error:
            return error.code()

    with concurrent.futures.ThreadPoolExecutor(max_workers=streams) as pool:
        codes = list(pool.map(one, sids))
    assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}, codes
    assert grpc.StatusCode.RESOURCE_EXHAUSTED in codes and grpc.StatusCode.OK in codes
    assert reply(stub, sids[0], "again")[-1].finish_reason == dialogue_pb2.FINISH_REASON_STOP
    ok = codes.count(grpc.StatusCode.OK)
    report("dialogue: overload answers (OK / RESOURCE_EXHAUSTED)", f"{ok} / {len(codes) - ok} of {streams}")
