"""DialogueService handlers: proto in, `generation.dialogue` engine call out, proto back (conversions in convert.py).

Every engine call runs in a worker thread, so the event loop keeps serving health checks and other calls while a
reply is generated. `Chat` is an async server-streaming handler: the engine's generator runs in a worker thread
and hands each event to the loop (`call_soon_threadsafe`), which writes it to the stream. When the client
cancels or disconnects (or its deadline passes), gRPC cancels the handler; the `finally` then sets the engine's
`cancel` event, so generation stops within one piece and the turn is stored as FINISH_REASON_CANCELLED (the
worker thread finishes that write on its own; `context.add_done_callback` sets it too, for a cancel that arrives
while the handler waits). Errors: an unknown session is NOT_FOUND; a bad input (`FieldError`) INVALID_ARGUMENT
naming the request field; overload RESOURCE_EXHAUSTED from the server's in-flight RPC cap
(`--max-concurrent-rpcs`; a streaming Chat counts while it streams).

Text pieces that queue up while the previous message is being written are sent as one message (their
`text_delta`s joined: the reply's text is unchanged), so a model that outpaces the transport costs one message
per write, not one per token.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any, TypeVar

import grpc
from kmono.dialogue.v1 import dialogue_pb2, dialogue_pb2_grpc

from generation.dialogue.serving.engine import DialogueEngine
from generation.dialogue.types import ChatEvent, SessionNotFound
from libs.errors import FieldError
from libs.media.policy import MediaPolicy
from libs.serving.errors import NotFoundError
from libs.serving.inputs import field_violation
from services.dialogue import convert

T = TypeVar("T")
_DONE = object()


class DialogueServicer(dialogue_pb2_grpc.DialogueServiceServicer):
    def __init__(self, engine: DialogueEngine, media: MediaPolicy | None = None) -> None:
        self.engine = engine
        self.media = media or MediaPolicy()

    @property
    def _max_bytes(self) -> int:
        return self.engine.settings.max_attachment_bytes

    async def CreateSession(self, request, context) -> dialogue_pb2.CreateSessionResponse:
        new = convert.new_session(request, self.media, self._max_bytes)
        session = await _call(self.engine.create_session, new)
        return dialogue_pb2.CreateSessionResponse(session=convert.session_proto(session))

    async def GetSession(self, request, context) -> dialogue_pb2.GetSessionResponse:
        full = request.view == dialogue_pb2.SESSION_VIEW_FULL
        session = await _call(self.engine.get_session, request.session_id, full)
        return dialogue_pb2.GetSessionResponse(session=convert.session_proto(session))

    async def ListSessions(self, request, context) -> dialogue_pb2.ListSessionsResponse:
        sessions, token = await _call(
            self.engine.list_sessions, request.user_id, request.page_size, request.page_token
        )
        return dialogue_pb2.ListSessionsResponse(
            sessions=[convert.session_proto(s) for s in sessions], next_page_token=token
        )

    async def DeleteSession(self, request, context) -> dialogue_pb2.DeleteSessionResponse:
        await _call(self.engine.delete_session, request.session_id)
        return dialogue_pb2.DeleteSessionResponse()

    async def AttachMedia(self, request, context) -> dialogue_pb2.AttachMediaResponse:
        attachments = convert.attachments(request.attachments, "attachments", self.media, self._max_bytes)
        session = await _call(self.engine.attach, request.session_id, attachments)
        return dialogue_pb2.AttachMediaResponse(session=convert.session_proto(session))

    async def Chat(
        self, request, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[dialogue_pb2.ChatResponse]:
        turn = convert.chat_turn(request, self.media, self._max_bytes)
        cancel = threading.Event()
        context.add_done_callback(lambda _: cancel.set())
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[Any] = asyncio.Queue()

        def put(item: Any) -> None:
            try:
                loop.call_soon_threadsafe(events.put_nowait, item)
            except RuntimeError:  # the loop is gone (server stopping): nobody is listening any more
                cancel.set()

        def produce() -> None:
            try:
                for event in self.engine.chat(turn, cancel):
                    put(event)
                put(_DONE)
            except Exception as error:  # handed to the loop, which maps it to a status
                put(error)

        # A thread of its own rather than the loop's small default pool: a reply holds it for seconds, and the
        # server's in-flight cap already bounds how many run at once.
        threading.Thread(target=produce, name=f"chat-{request.session_id[:12]}", daemon=True).start()
        pending: Any = None
        try:
            while (item := pending if pending is not None else await events.get()) is not _DONE:
                pending = None
                if isinstance(item, Exception):
                    raise _status(item) from None
                if _text_only(item):  # pieces that queued up while the last message was written go out as one
                    while pending is None and not events.empty():
                        follower = events.get_nowait()
                        if _text_only(follower):
                            item = replace(item, text_delta=item.text_delta + follower.text_delta)
                        else:
                            pending = follower
                yield convert.chat_response(item)
        finally:
            cancel.set()  # a cancelled or disconnected client: stop generating (a finished reply ignores it)


def _text_only(item: Any) -> bool:
    return isinstance(item, ChatEvent) and item == ChatEvent(item.turn_id, text_delta=item.text_delta)


async def _call(function: Callable[..., T], *args: Any) -> T:
    """`function(*args)` in a worker thread, its domain errors as gRPC statuses."""
    try:
        return await asyncio.to_thread(function, *args)
    except (FieldError, SessionNotFound) as error:
        raise _status(error) from None


def _status(error: Exception) -> Exception:
    if isinstance(error, FieldError):
        return field_violation(error)
    if isinstance(error, SessionNotFound):
        return NotFoundError(
            str(error), resource_type="session", resource_name=error.session_id, reason="SESSION_NOT_FOUND"
        )
    return error
