"""Every default and limit of a dialogue engine, in one place: `DialogueSettings`.

    settings = DialogueSettings()                                 # the embedded defaults
    settings = DialogueSettings(backend="scripted", max_turns=20) # what tests and `--backend` change

The service's flags (`services/dialogue/config.py`) and `kmono chat --local` build one of these; the engine
reads nothing else. Sizes are *our* choices where the issue is silent:
- `max_message_chars` 8,000: a long product question fits, a pasted book does not (the prompt must fit a small
  LM's 2,048-token window with history and passages);
- `max_attachment_bytes` 32 MiB: a 30-second 720p clip or a phone photo, inline in one gRPC message (the
  server's message limit is larger);
- `max_turns` 200 (user and assistant turns together): a long chat, bounded so a session row stays small and
  a listing stays fast; past it a chat is INVALID_ARGUMENT on `session_id` saying to start a new session;
- `history_turns` 6: the last three exchanges go into an LM's prompt verbatim; older ones reach it through the
  FIFO memory (`memory_capacity` turn embeddings, the Contextformer's M), whose best matches become
  "earlier in this conversation" lines;
- `max_frames` 4: what a vision LM sees of the session's media per prompt (at 64 to 256 tokens an image, 4
  frames fit a 2,048-token window beside the passages); frames are decoded only for an LM that takes images;
- `topic_threshold`: the reasoning package's measured cosine (`reasoning.topic.DEFAULT_THRESHOLD`, 0.15 with
  MiniLM) below which a message or reply counts as off the session's topic.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from generation.dialogue.reasoning.topic import DEFAULT_THRESHOLD as TOPIC_THRESHOLD
from libs.errors import FieldError

EMBEDDED_BACKEND = "none"
"""The backend spec of the embedded default: no LM; retrieval-grounded, extractive replies with the MiniLM."""


@dataclass(frozen=True)
class DialogueSettings:
    backend: str = EMBEDDED_BACKEND
    """Language model spec (`generation.dialogue.backends.registry.BACKEND_HELP`); "none": the embedded default."""
    asr_model: str = ""
    """Whisper checkpoint (hub id or directory) that transcribes clips attached without a transcript; "": none."""
    max_frames: int = 4
    """Frames (video frames and images) a vision-language LM is shown per prompt, newest media first."""
    memory_capacity: int = 16
    """Turn embeddings kept per session (FIFO memory M); the oldest is dropped past it."""
    memory_references: int = 3
    """Most memory entries a reply reports (and an LM prompt quotes) as used."""
    memory_min_relevance: float = 0.35
    """Cosine below which an earlier turn is not reported as used."""
    history_turns: int = 6
    """Most recent turns an LM prompt holds verbatim."""
    max_turns: int = 200
    """Turns (user + assistant) a session may hold; a chat past it is refused."""
    max_message_chars: int = 8000
    max_attachment_bytes: int = 32 << 20
    max_attachments: int = 16
    """Attachments per request (a new session, an AttachMedia call, one turn)."""
    max_session_attachments: int = 64
    max_attachment_text_chars: int = 200_000
    """Characters of a document's text, a transcript and the comments of one attachment together."""
    max_output_tokens: int = 256
    """Reply tokens when a request leaves `max_output_tokens` at 0; also the most a request may ask for x 8."""
    max_reasoning_tokens: int = 384
    default_candidate_count: int = 5
    max_candidate_count: int = 20
    temperature: float = 0.0
    """Greedy by default: replies are reproducible; a request's temperature overrides it."""
    topic_threshold: float = TOPIC_THRESHOLD
    passages: int = 3
    """Knowledge passages an LM prompt quotes (and a grounded answer may cite)."""
    page_size: int = 50
    """ListSessions page size when the request says 0 (the proto's documented default)."""
    max_page_size: int = 1000

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, int) and not isinstance(value, bool) and value < 1:
                raise FieldError(f.name, f"must be at least 1, got {value}")
        if not 0.0 <= self.temperature <= 2.0:
            raise FieldError("temperature", f"must be in [0, 2], got {self.temperature}")
        for name in ("topic_threshold", "memory_min_relevance"):
            if not -1.0 <= getattr(self, name) <= 1.0:
                raise FieldError(name, f"must be a cosine in [-1, 1], got {getattr(self, name)}")
        if self.default_candidate_count > self.max_candidate_count:
            raise FieldError("default_candidate_count", f"must be at most {self.max_candidate_count}")

    @property
    def max_request_output_tokens(self) -> int:
        """The most reply tokens one request may ask for."""
        return 8 * self.max_output_tokens
