"""DialogueService protos <-> the dialogue domain (`generation.dialogue.types`). Shapes and types only: every rule
about values (sizes, limits, decodable media) lives in the engine, which names the request field at fault.

Media references: inline bytes pass through; a `uri` is read here under the server's `MediaPolicy` (nothing by
default: inline data only), bounded by the engine's attachment size limit, so the engine only ever sees bytes.
A live stream has no archive in this build: its window is kept as the attachment's span, its words come from
the request's transcript and comments.
"""

from __future__ import annotations

from google.protobuf.timestamp_pb2 import Timestamp
from kmono.common.v1 import media_pb2
from kmono.dialogue.v1 import dialogue_pb2

from generation.dialogue.types import (
    Attachment,
    AttachmentKind,
    ChatEvent,
    ChatTurn,
    Citation,
    FinishReason,
    Mode,
    NewSession,
    Role,
    Session,
    Strategy,
    Turn,
)
from libs.errors import FieldError
from libs.media.policy import MediaPolicy
from libs.serving.inputs import field_violation, invalid

MODES = {
    dialogue_pb2.DIALOGUE_MODE_UNSPECIFIED: Mode.UNSPECIFIED,
    dialogue_pb2.DIALOGUE_MODE_KNOWLEDGE_QA: Mode.KNOWLEDGE_QA,
    dialogue_pb2.DIALOGUE_MODE_CHIT_CHAT: Mode.CHIT_CHAT,
    dialogue_pb2.DIALOGUE_MODE_QUICK_COMMENT: Mode.QUICK_COMMENT,
}
MODE_PROTOS = {mode: number for number, mode in MODES.items()}
STRATEGIES = {
    dialogue_pb2.REASONING_STRATEGY_UNSPECIFIED: Strategy.UNSPECIFIED,
    dialogue_pb2.REASONING_STRATEGY_NONE: Strategy.NONE,
    dialogue_pb2.REASONING_STRATEGY_DUAL_CHAIN_OF_THOUGHT: Strategy.DUAL_CHAIN,
    dialogue_pb2.REASONING_STRATEGY_RIPPLE_OF_THOUGHT: Strategy.RIPPLE,
}
FINISH_PROTOS = {
    None: dialogue_pb2.FINISH_REASON_UNSPECIFIED,
    FinishReason.STOP: dialogue_pb2.FINISH_REASON_STOP,
    FinishReason.LENGTH: dialogue_pb2.FINISH_REASON_LENGTH,
    FinishReason.CANCELLED: dialogue_pb2.FINISH_REASON_CANCELLED,
    FinishReason.CONTENT_FILTER: dialogue_pb2.FINISH_REASON_CONTENT_FILTER,
}
ROLE_PROTOS = {Role.USER: dialogue_pb2.ROLE_USER, Role.ASSISTANT: dialogue_pb2.ROLE_ASSISTANT}
DEFAULT_LIVE_WINDOW_SECONDS = 60.0
"""A live stream's window when the request leaves it unset (the proto's documented default)."""
MAX_LIVE_WINDOW_SECONDS = 24 * 3600.0
"""The longest live window a request may ask for (a day of a stream)."""


# -- requests ------------------------------------------------------------------------------------------------


def new_session(
    request: dialogue_pb2.CreateSessionRequest, policy: MediaPolicy, max_bytes: int
) -> NewSession:
    return NewSession(
        user_id=request.user_id,
        default_mode=_enum(MODES, request.default_mode, "default_mode"),
        topic=request.topic,
        language=request.language,
        attachments=attachments(request.attachments, "attachments", policy, max_bytes),
        request_id=request.request_id,
    )


def chat_turn(request: dialogue_pb2.ChatRequest, policy: MediaPolicy, max_bytes: int) -> ChatTurn:
    options = request.reasoning_options
    return ChatTurn(
        session_id=request.session_id,
        text=request.text,
        attachments=attachments(request.attachments, "attachments", policy, max_bytes),
        mode=_enum(MODES, request.mode, "mode"),
        strategy=_enum(STRATEGIES, options.strategy, "reasoning_options.strategy"),
        include_reasoning=options.include_reasoning,
        max_reasoning_tokens=options.max_reasoning_tokens,
        max_output_tokens=request.max_output_tokens,
        temperature=request.temperature if request.HasField("temperature") else None,
        request_id=request.request_id,
        candidate_count=request.candidate_count,
    )


def attachments(messages, field: str, policy: MediaPolicy, max_bytes: int) -> tuple[Attachment, ...]:
    return tuple(attachment(m, f"{field}[{i}]", policy, max_bytes) for i, m in enumerate(messages))


def attachment(
    message: dialogue_pb2.Attachment, field: str, policy: MediaPolicy, max_bytes: int
) -> Attachment:
    common = dict(
        attachment_id=message.attachment_id,
        caption=message.caption,
        transcript=message.transcript,
        comments=tuple(message.comments),
    )
    source = message.WhichOneof("source")
    if source == "document":
        doc = message.document
        return Attachment(kind=AttachmentKind.DOCUMENT, title=doc.title, text=doc.text, uri=doc.uri, **common)
    if source == "live_stream":
        live = message.live_stream
        window = (
            _window_seconds(live.window, f"{field}.live_stream.window") if live.HasField("window") else 0.0
        )
        return Attachment(
            kind=AttachmentKind.LIVE_STREAM,
            stream_id=live.stream_id,
            author_id=live.author_id,
            end=window or DEFAULT_LIVE_WINDOW_SECONDS,
            **common,
        )
    if source in ("video", "image"):
        ref = getattr(message, source)
        data, uri = _media_bytes(ref, f"{field}.{source}", policy, max_bytes)
        kind = AttachmentKind.VIDEO if source == "video" else AttachmentKind.IMAGE
        return Attachment(kind=kind, data=data, uri=uri, mime_type=ref.mime_type, **common)
    raise invalid(field, "required: one of video, image, live_stream or document")


def _window_seconds(window, field: str) -> float:
    """A live window's length in seconds, in (0, MAX_LIVE_WINDOW_SECONDS] (a Duration may hold up to 10,000 years,
    and negative or out-of-range nanos, which `ToTimedelta` does not survive)."""
    seconds = window.seconds + window.nanos / 1e9
    if not 0 < seconds <= MAX_LIVE_WINDOW_SECONDS or not -999_999_999 <= window.nanos <= 999_999_999:
        raise invalid(field, f"must be a positive duration of at most {MAX_LIVE_WINDOW_SECONDS:.0f} s")
    return seconds


def _media_bytes(
    ref: media_pb2.MediaRef, field: str, policy: MediaPolicy, max_bytes: int
) -> tuple[bytes, str]:
    """(bytes, uri) of a MediaRef: inline bytes as they are; a URI's bytes read under `policy` (a local file
    under its roots or a remote URL it allows), at most `max_bytes`."""
    source = ref.WhichOneof("source")
    if source == "inline_data":
        if not ref.inline_data:
            raise invalid(f"{field}.inline_data", "is empty")
        return ref.inline_data, ""
    if source is None:
        raise invalid(field, "required: inline_data (the bytes) or a uri")
    try:
        return policy.read_bytes(ref.uri, f"{field}.uri", max_bytes), ref.uri
    except FieldError as error:
        raise field_violation(error) from None


def _enum(table: dict, value: int, field: str):
    if value not in table:
        raise invalid(field, f"unknown value {value}")
    return table[value]


# -- responses -----------------------------------------------------------------------------------------------


def session_proto(session: Session) -> dialogue_pb2.Session:
    return dialogue_pb2.Session(
        session_id=session.session_id,
        user_id=session.user_id,
        default_mode=MODE_PROTOS[session.default_mode],
        attachments=[attachment_proto(a) for a in session.attachments],
        turn_count=session.turn_count,
        turns=[turn_proto(t) for t in session.turns],
        create_time=_timestamp(session.create_time),
        update_time=_timestamp(session.update_time),
        topic=session.topic,
        language=session.language,
    )


def turn_proto(turn: Turn) -> dialogue_pb2.Turn:
    return dialogue_pb2.Turn(
        turn_id=turn.turn_id,
        role=ROLE_PROTOS[turn.role],
        text=turn.text,
        attachments=[attachment_proto(a) for a in turn.attachments],
        mode=MODE_PROTOS[turn.mode],
        citations=[citation_proto(c) for c in turn.citations],
        create_time=_timestamp(turn.create_time),
    )


def attachment_proto(a: Attachment) -> dialogue_pb2.Attachment:
    """An attachment as a client reads it back: media by reference (the uri it came from, else its id as
    `attachments/{id}`), never its bytes again (a session listing would otherwise resend every video)."""
    message = dialogue_pb2.Attachment(
        attachment_id=a.attachment_id, caption=a.caption, transcript=a.transcript, comments=list(a.comments)
    )
    if a.kind is AttachmentKind.DOCUMENT:
        message.document.CopyFrom(dialogue_pb2.KnowledgeDocument(title=a.title, text=a.text, uri=a.uri))
    elif a.kind is AttachmentKind.LIVE_STREAM:
        message.live_stream.CopyFrom(dialogue_pb2.LiveStreamRef(stream_id=a.stream_id, author_id=a.author_id))
        message.live_stream.window.FromSeconds(int(a.end - a.start))
    else:
        ref = message.video if a.kind is AttachmentKind.VIDEO else message.image
        ref.CopyFrom(media_pb2.MediaRef(uri=a.uri or f"attachments/{a.attachment_id}", mime_type=a.mime_type))
    return message


def citation_proto(c: Citation) -> dialogue_pb2.Citation:
    message = dialogue_pb2.Citation(source_id=c.source_id, uri=c.uri, title=c.title, snippet=c.snippet)
    if c.start is not None:
        message.media_start_offset.FromNanoseconds(int(c.start * 1e9))
    if c.end is not None:
        message.media_end_offset.FromNanoseconds(int(c.end * 1e9))
    return message


def chat_response(event: ChatEvent) -> dialogue_pb2.ChatResponse:
    message = dialogue_pb2.ChatResponse(
        turn_id=event.turn_id,
        text_delta=event.text_delta,
        reasoning_delta=event.reasoning_delta,
        finish_reason=FINISH_PROTOS[event.finish_reason],
    )
    if event.citations:
        message.citations.extend(citation_proto(c) for c in event.citations)
    if event.memory_references:
        message.memory_references.extend(
            dialogue_pb2.MemoryReference(
                memory_id=m.memory_id, turn_id=m.turn_id, summary=m.summary, relevance_score=m.relevance
            )
            for m in event.memory_references
        )
    if event.candidates:
        message.comment_candidates.extend(
            dialogue_pb2.CommentCandidate(text=c.text, relevance=c.relevance, score=c.score)
            for c in event.candidates
        )
    if event.usage is not None:
        u = event.usage
        message.usage.CopyFrom(
            dialogue_pb2.Usage(
                input_tokens=u.input_tokens,
                media_tokens=u.media_tokens,
                reasoning_tokens=u.reasoning_tokens,
                output_tokens=u.output_tokens,
            )
        )
    return message


def _timestamp(seconds: float) -> Timestamp:
    stamp = Timestamp()
    stamp.FromNanoseconds(int(seconds * 1e9))
    return stamp
