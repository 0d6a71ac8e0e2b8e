"""The dialogue domain: sessions, turns, attachments, citations and the events a streamed reply is made of.

These dataclasses are the contract between the parts of `generation.dialogue` (knowledge, reasoning, memory,
backends, the session store, the engine) and the service, which only converts them to and from protobuf.
Ids are strings, times are UNIX seconds (float), texts are kept exactly as given (multilingual text passes
through unchanged).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from libs.errors import FieldError


class Mode(enum.StrEnum):
    """What kind of reply a turn asks for (`DialogueMode` in the proto)."""

    UNSPECIFIED = "unspecified"
    KNOWLEDGE_QA = "knowledge_qa"
    CHIT_CHAT = "chit_chat"
    QUICK_COMMENT = "quick_comment"


class Strategy(enum.StrEnum):
    """Reasoning before replying (`ReasoningStrategy`). UNSPECIFIED: per mode (`engine.strategy_for`)."""

    UNSPECIFIED = "unspecified"
    NONE = "none"
    DUAL_CHAIN = "dual_chain_of_thought"
    RIPPLE = "ripple_of_thought"


class Role(enum.StrEnum):
    USER = "user"
    ASSISTANT = "assistant"


class FinishReason(enum.StrEnum):
    STOP = "stop"
    LENGTH = "length"
    CANCELLED = "cancelled"
    CONTENT_FILTER = "content_filter"


class AttachmentKind(enum.StrEnum):
    VIDEO = "video"
    IMAGE = "image"
    LIVE_STREAM = "live_stream"
    DOCUMENT = "document"


@dataclass(frozen=True)
class Attachment:
    """A piece of media or knowledge a session or a turn is about.

    `text` is a document's text (product details; "key: value" lines are facts); `transcript` and `comments`
    are what was said in and under a video or live slice; `data` the media's bytes (videos, images), `uri`
    where it can be read. `start`/`end` (seconds) place a live slice or clip in its stream; `order` is a clip's
    position in a series (episode number), used by the dual chain of thought."""

    attachment_id: str
    kind: AttachmentKind
    title: str = ""
    caption: str = ""
    text: str = ""
    transcript: str = ""
    comments: tuple[str, ...] = ()
    uri: str = ""
    data: bytes = b""
    mime_type: str = ""
    stream_id: str = ""
    author_id: str = ""
    start: float = 0.0
    end: float = 0.0

    def content(self) -> str:
        """Everything this attachment says in words: title, caption, text, transcript and comments."""
        parts = [self.title, self.caption, self.text, self.transcript, *self.comments]
        return "\n".join(p for p in parts if p)


@dataclass(frozen=True)
class Citation:
    """A source a reply relies on: an attachment (`source_id` = its id) and the passage used."""

    source_id: str
    title: str = ""
    snippet: str = ""
    uri: str = ""
    start: float | None = None
    end: float | None = None


@dataclass(frozen=True)
class MemoryReference:
    """A memory entry (an earlier turn) a reply used, with its relevance in [0, 1]."""

    memory_id: str
    turn_id: str
    summary: str
    relevance: float


@dataclass(frozen=True)
class CommentCandidate:
    """A quick comment with its relevance to the media and its ranking score (MMR)."""

    text: str
    relevance: float
    score: float


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 0
    media_tokens: int = 0
    reasoning_tokens: int = 0
    output_tokens: int = 0


@dataclass(frozen=True)
class Turn:
    turn_id: str
    role: Role
    text: str
    create_time: float
    mode: Mode = Mode.UNSPECIFIED
    attachments: tuple[Attachment, ...] = ()
    citations: tuple[Citation, ...] = ()
    finish_reason: FinishReason | None = None
    reasoning: str = ""
    request_id: str = ""


@dataclass(frozen=True)
class Session:
    session_id: str
    user_id: str
    create_time: float
    update_time: float
    default_mode: Mode = Mode.UNSPECIFIED
    topic: str = ""
    language: str = ""
    attachments: tuple[Attachment, ...] = ()
    turns: tuple[Turn, ...] = ()
    turn_count: int = 0
    request_id: str = ""

    def all_attachments(self) -> tuple[Attachment, ...]:
        """The session's attachments, then those of its user turns, oldest first."""
        return self.attachments + tuple(a for t in self.turns for a in t.attachments)


@dataclass(frozen=True)
class NewSession:
    """What a client asks for when opening a session."""

    user_id: str
    default_mode: Mode = Mode.UNSPECIFIED
    topic: str = ""
    language: str = ""
    attachments: tuple[Attachment, ...] = ()
    request_id: str = ""


@dataclass(frozen=True)
class ChatTurn:
    """One user turn to answer (`ChatRequest`). Zeros mean "the engine's default"."""

    session_id: str
    text: str
    attachments: tuple[Attachment, ...] = ()
    mode: Mode = Mode.UNSPECIFIED
    strategy: Strategy = Strategy.UNSPECIFIED
    include_reasoning: bool = False
    max_reasoning_tokens: int = 0
    max_output_tokens: int = 0
    temperature: float | None = None
    request_id: str = ""
    candidate_count: int = 0


@dataclass(frozen=True)
class ChatEvent:
    """One piece of a streamed reply. The last event of a reply has `finish_reason` and `usage` set."""

    turn_id: str
    text_delta: str = ""
    reasoning_delta: str = ""
    citations: tuple[Citation, ...] = ()
    memory_references: tuple[MemoryReference, ...] = ()
    candidates: tuple[CommentCandidate, ...] = ()
    finish_reason: FinishReason | None = None
    usage: Usage | None = None


class SessionNotFound(LookupError):
    """No session has this id (a service answers NOT_FOUND)."""

    def __init__(self, session_id: str) -> None:
        super().__init__(f"no session {session_id!r}; list sessions with `kmono chat --list`")
        self.session_id = session_id


__all__ = [
    "Attachment",
    "AttachmentKind",
    "ChatEvent",
    "ChatTurn",
    "Citation",
    "CommentCandidate",
    "FieldError",
    "FinishReason",
    "MemoryReference",
    "Mode",
    "NewSession",
    "Role",
    "Session",
    "SessionNotFound",
    "Strategy",
    "Turn",
    "Usage",
]
