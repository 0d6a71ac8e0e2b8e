"""The KuaiMM dialogue engine: sessions kept in a `SessionStore`, and one streamed reply per user turn.

    engine = DialogueEngine(SessionStore(data_dir / "sessions.db"), TextEncoder.from_pretrained(), lm=None)
    session = engine.create_session(NewSession(user_id="u1", attachments=(product_details,)))
    for event in engine.chat(ChatTurn(session.session_id, "How heavy is it?"), threading.Event()):
        reply.append(event.text_delta)           # the last event has finish_reason and usage

How a turn is answered (`plan`; the issue's point 1, *our* reading where it is silent):
- **mode**: the turn's, else the session's default, else knowledge Q&A when the session holds knowledge and the
  message asks something (a "?", "？", or a question word), chit-chat otherwise. Quick comments are only made
  when asked for (a viewer's message is never silently answered with danmaku).
- **strategy** (`strategy_for`): knowledge Q&A over >= 2 video/live clips with a language model -> dual chain of
  thought; other knowledge Q&A -> none (a grounded answer: with an LM, the `grounded_answer` prompt over the best
  passages; without one, the extractive `GroundedAnswerer`, which cites and abstains); quick comments -> ripple
  of thought (with an LM; without one, the viewers' own comments ranked by relevance and diversity); chit-chat
  -> none (with an LM, the `chat` prompt with the last `history_turns` turns and "remembered" lines from the
  FIFO memory; without one, a retrieval-grounded reply that quotes the best passage and says what it can do).
  A strategy the request names is used when it can run (DCoT needs an LM and clips, RoT an LM); otherwise the
  engine falls back to the mode's default and says so in the reasoning trace.
- **memory**: every user turn's MiniLM embedding goes into the session's memory (kept in the store, replayed
  into a `FifoMemory` of `memory_capacity` per turn); entries relevant to the new turn (cosine >=
  `memory_min_relevance`) are streamed as `MemoryReference`s, and those older than the history window become
  the LM prompt's "remembered" lines.
- **topic**: the session's topic (or, when empty, its first user message) guards LM chit-chat. Replies are
  streamed as they are made (time to first token is what users feel), so a draft is not held back to be judged
  and regenerated; instead the prompt is re-steered (`TopicGuard.steer_prompt`, template `steer_back`) when the
  user's message or the previous reply is off the topic, and a finished reply that drifted is logged and counted
  in `drifted_replies` (the next turn is then steered).
- **cancel**: checked before each piece; once set, the reply stops within one piece and is stored with
  FINISH_REASON_CANCELLED. A reply is stored (user turn, reply, memory) in one transaction when it ends; an
  exception stores nothing. A retried `request_id` replays the stored reply and adds no turn.
- **media** (`serving.media`): a video or live slice attached with media and no transcript is transcribed
  (timed "[mm:ss]" lines, so citations carry offsets) when a `--asr-model` is set, once, before it is stored.
  When the LM takes images (a vision-language `TransformersLM`), grounded-answer and chat prompts are shown
  up to `max_frames` frames of the session's videos and images, newest media first, one image placeholder
  each in front of the prompt; with any other LM no frame is decoded. DCoT and RoT prompts stay text-only
  (their chains are built from transcripts and comments).
- **usage**: input tokens are the prompt's text (the question's and the passages' for the extractive
  answerer), media tokens the image tokens the processor expands the frames into, reasoning tokens the
  trace's, output tokens the reply's, all counted by the LM's tokenizer (whitespace words without one).
"""

from __future__ import annotations

import logging
import re
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from generation.dialogue.backends.base import GenerationParams, LanguageModel
from generation.dialogue.knowledge.answer import GroundedAnswerer
from generation.dialogue.knowledge.language import detect_language
from generation.dialogue.knowledge.passages import Passage
from generation.dialogue.memory.fifo import FifoMemory
from generation.dialogue.reasoning import templates
from generation.dialogue.reasoning.comments import extractive_comments
from generation.dialogue.reasoning.dcot import dual_chain_of_thought
from generation.dialogue.reasoning.rot import ripple_of_thought
from generation.dialogue.reasoning.topic import TopicGuard
from generation.dialogue.serving.media import CLIP_KINDS, MediaReader
from generation.dialogue.serving.settings import DialogueSettings
from generation.dialogue.serving.store import MemoryRow, SessionStore, too_many_turns
from generation.dialogue.types import (
    Attachment,
    AttachmentKind,
    ChatEvent,
    ChatTurn,
    Citation,
    CommentCandidate,
    FinishReason,
    MemoryReference,
    Mode,
    NewSession,
    Role,
    Session,
    Strategy,
    Turn,
    Usage,
)
from libs.errors import FieldError
from libs.media.limits import DecodeLimits
from libs.media.policy import check_video

logger = logging.getLogger(__name__)

SESSIONS_DB = "sessions.db"
MAX_ID_CHARS = 128
PROTO_FIELD = {
    AttachmentKind.VIDEO: "video",
    AttachmentKind.IMAGE: "image",
    AttachmentKind.LIVE_STREAM: "live_stream",
    AttachmentKind.DOCUMENT: "document",
}
"""The `Attachment.source` oneof field of each kind: errors name the request field (`attachments[0].video`)."""
_QUESTION = re.compile(
    r"[?？]|^\s*(what|which|who|whom|whose|when|where|why|how|is|are|does|do|can|could|will|would|should|"
    r"has|have|did)\b|(吗|什么|多少|哪|怎么|为什么|几)",
    re.IGNORECASE,
)
_PIECES = re.compile(r"\s*\S+|\s+")
IMAGE_WRAP_TOKENS = 4
"""Tokens a processor may add around each image beside its image tokens (Gemma 3: two line breaks, begin and end
of image), kept free when fitting frames into the context window."""
CAPABILITIES = {
    "en": "I can answer questions about this session's products, videos and live streams (with the source "
    "cited), and suggest quick comments for a live stream.",
    "zh": "我可以根据本会话的商品、视频和直播内容回答问题（并注明出处），也可以为直播推荐快捷评论。",
}
"""What the embedded default says it can do when a chit-chat message finds nothing to quote."""


def strategy_for(mode: Mode, clips: int, has_lm: bool) -> Strategy:
    """The reasoning a turn gets when its request leaves the strategy unspecified (see the module docstring)."""
    if mode is Mode.KNOWLEDGE_QA and has_lm and clips >= 2:
        return Strategy.DUAL_CHAIN
    if mode is Mode.QUICK_COMMENT:
        return Strategy.RIPPLE
    return Strategy.NONE


@dataclass
class _Reply:
    """What a reply has produced so far (stored when it ends)."""

    turn_id: str
    text: str = ""
    reasoning: str = ""
    citations: tuple[Citation, ...] = ()
    candidates: tuple[CommentCandidate, ...] = ()
    memory: tuple[MemoryReference, ...] = ()
    input_tokens: int = 0
    media_tokens: int = 0
    reasoning_tokens: int = 0
    finish: FinishReason = FinishReason.STOP
    notes: list[str] = field(default_factory=list)


class DialogueEngine:
    def __init__(
        self,
        store: SessionStore,
        encoder,
        lm: LanguageModel | None = None,
        settings: DialogueSettings | None = None,
        *,
        media: MediaReader | None = None,
        clock=time.time,
    ) -> None:
        self.store = store
        self.encoder = encoder
        self.lm = lm
        self.settings = settings or DialogueSettings()
        self.media = media or MediaReader()
        self.clock = clock
        self.answerer = GroundedAnswerer(encoder)
        self.topic_guard = TopicGuard(encoder, self.settings.topic_threshold)
        self.drifted_replies = 0

    @classmethod
    def open(
        cls,
        data_dir: str | Path,
        settings: DialogueSettings | None = None,
        *,
        encoder=None,
        lm: LanguageModel | None = None,
        media: MediaReader | None = None,
    ) -> DialogueEngine:
        """An engine over `data_dir/sessions.db` with the bundled MiniLM, `settings.backend` and
        `settings.asr_model` (unless given)."""
        from generation.dialogue.backends.registry import load_backend

        settings = settings or DialogueSettings()
        if encoder is None:
            from libs.encoders import TextEncoder

            encoder = TextEncoder.from_pretrained()
        if lm is None:
            lm = load_backend(settings.backend)
        if media is None:
            media = MediaReader.load(settings.asr_model)
        return cls(SessionStore(Path(data_dir) / SESSIONS_DB), encoder, lm, settings, media=media)

    def close(self) -> None:
        self.store.close()
        if self.lm is not None:
            self.lm.close()

    # -- sessions ---------------------------------------------------------------------------------------------

    def create_session(self, new: NewSession) -> Session:
        if not new.user_id.strip():
            raise FieldError("user_id", "required: the user who owns the session")
        _check_id(new.user_id, "user_id")
        _check_id(new.request_id, "request_id")
        if len(new.topic) > self.settings.max_message_chars:
            raise FieldError("topic", f"at most {self.settings.max_message_chars} characters")
        if len(new.language) > 35:
            raise FieldError("language", "a BCP-47 tag such as en or zh-Hans (at most 35 characters)")
        attachments = self._checked_attachments(new.attachments, "attachments", taken=set())
        now = self.clock()
        session = Session(
            session_id=uuid.uuid4().hex,
            user_id=new.user_id,
            create_time=now,
            update_time=now,
            default_mode=new.default_mode,
            topic=new.topic.strip(),
            language=new.language.strip(),
            attachments=attachments,
            request_id=new.request_id,
        )
        return self.store.create(session)

    def get_session(self, session_id: str, full: bool = False) -> Session:
        return self.store.get(_session_id(session_id), full=full)

    def list_sessions(
        self, user_id: str, page_size: int = 0, page_token: str = ""
    ) -> tuple[list[Session], str]:
        if page_size < 0:
            raise FieldError("page_size", f"must be >= 0, got {page_size}")
        size = min(page_size or self.settings.page_size, self.settings.max_page_size)
        return self.store.list(user_id, size, page_token)

    def delete_session(self, session_id: str) -> None:
        self.store.delete(_session_id(session_id))

    def attach(self, session_id: str, attachments: Sequence[Attachment]) -> Session:
        session = self.store.get(_session_id(session_id), full=True)
        if not attachments:
            raise FieldError("attachments", "required: at least one attachment")
        taken = {a.attachment_id for a in session.all_attachments()}
        checked = self._checked_attachments(attachments, "attachments", taken)
        return self.store.attach(
            session.session_id, checked, max_attachments=self.settings.max_session_attachments
        )

    # -- chat -------------------------------------------------------------------------------------------------

    def chat(self, turn: ChatTurn, cancel: threading.Event | None = None) -> Iterator[ChatEvent]:
        """Check the turn now (FieldError, SessionNotFound), then stream its reply (see the module docstring)."""
        cancel = cancel or threading.Event()
        self._check_turn(turn)
        session = self.store.get(_session_id(turn.session_id), full=True)
        if turn.request_id and (stored := self.store.find_reply(session.session_id, turn.request_id)):
            return self._replay(*stored)
        if session.turn_count + 2 > self.settings.max_turns:
            raise too_many_turns(session.turn_count, self.settings.max_turns)
        taken = {a.attachment_id for a in session.all_attachments()}
        attachments = self._checked_attachments(turn.attachments, "attachments", taken)
        return self._reply(session, replace(turn, attachments=attachments), cancel)

    def plan(self, session: Session, turn: ChatTurn) -> tuple[Mode, Strategy]:
        """The mode and strategy a turn is answered with."""
        knowledge = session.all_attachments() + turn.attachments
        mode = turn.mode if turn.mode is not Mode.UNSPECIFIED else session.default_mode
        if mode is Mode.UNSPECIFIED:
            asks = _QUESTION.search(turn.text) is not None
            mode = Mode.KNOWLEDGE_QA if asks and any(a.content() for a in knowledge) else Mode.CHIT_CHAT
        clips = sum(a.kind in CLIP_KINDS for a in knowledge)
        default = strategy_for(mode, clips, self.lm is not None)
        strategy = turn.strategy if turn.strategy is not Strategy.UNSPECIFIED else default
        runnable = {
            Strategy.NONE: True,
            Strategy.DUAL_CHAIN: self.lm is not None and clips >= 1,
            Strategy.RIPPLE: mode is Mode.QUICK_COMMENT or self.lm is not None,
        }
        return mode, strategy if runnable[strategy] else default

    def _reply(self, session: Session, turn: ChatTurn, cancel: threading.Event) -> Iterator[ChatEvent]:
        s = self.settings
        now = self.clock()
        reply = _Reply(turn_id=uuid.uuid4().hex[:16])
        user = Turn(uuid.uuid4().hex[:16], Role.USER, turn.text, now, attachments=turn.attachments,
                    request_id=turn.request_id)  # fmt: skip
        mode, strategy = self.plan(session, turn)
        language = session.language or detect_language(turn.text)
        max_tokens = turn.max_output_tokens or s.max_output_tokens
        params = GenerationParams(
            max_new_tokens=max_tokens,
            temperature=s.temperature if turn.temperature is None else turn.temperature,
            stop=templates.REPLY_STOP,
        )
        # The turn's embedding goes into the memory when the reply is stored; it is needed before the reply only
        # to look up earlier turns, so a session's first turn (an empty memory) starts generating without it.
        rows = self.store.memory(session.session_id, s.memory_capacity)
        query = self._embed(turn.text) if rows else None
        used = []
        if rows and query is not None:
            memory = FifoMemory(s.memory_capacity, query.shape[0])
            for row in rows:
                memory.push(row.memory_id, row.vector, summary=row.summary, turn_id=row.turn_id)
            used = memory.relevant(query, s.memory_references, s.memory_min_relevance)
        reply.memory = tuple(
            MemoryReference(e.memory_id, e.turn_id, e.summary, float(np.clip(score, 0.0, 1.0)))
            for e, score in used
        )
        if reply.memory:
            yield ChatEvent(reply.turn_id, memory_references=reply.memory)

        pieces: Iterator[str]
        knowledge = session.all_attachments() + turn.attachments
        if mode is Mode.QUICK_COMMENT:
            pieces = self._comments(turn, knowledge, strategy, params, cancel, reply)
        elif strategy is Strategy.RIPPLE:
            pieces = self._ripple_reply(turn, knowledge, params, cancel, reply)
        elif mode is Mode.KNOWLEDGE_QA and strategy is Strategy.DUAL_CHAIN:
            pieces = self._dual_chain(turn, knowledge, params, cancel, reply)
        elif mode is Mode.KNOWLEDGE_QA:
            pieces = self._grounded(turn, knowledge, language, params, cancel, reply)
        else:
            pieces = self._chit_chat(session, turn, knowledge, used, params, cancel, reply, language)

        count = 0
        for piece in pieces:
            if reply.reasoning and count == 0 and turn.include_reasoning:
                yield ChatEvent(reply.turn_id, reasoning_delta=reply.reasoning)
            if cancel.is_set():
                break
            count += 1
            reply.text += piece
            yield ChatEvent(reply.turn_id, text_delta=piece)
            if count >= max_tokens:
                reply.finish = FinishReason.LENGTH
                break
        if cancel.is_set():
            reply.finish = FinishReason.CANCELLED
        elif count == 0 and reply.reasoning and turn.include_reasoning:
            yield ChatEvent(reply.turn_id, reasoning_delta=reply.reasoning)

        topic = session.topic or _first_user_text(session) or turn.text
        if (
            self.lm is not None
            and reply.text
            and mode is Mode.CHIT_CHAT
            and not self.topic_guard.on_topic(topic, reply.text)
        ):
            self.drifted_replies += 1
            logger.info("turn %s drifted from the topic %r", reply.turn_id, topic[:80])
        if reply.notes:
            logger.info("turn %s: %s", reply.turn_id, "; ".join(reply.notes))
        usage = self._usage(reply)
        stored = Turn(reply.turn_id, Role.ASSISTANT, reply.text, self.clock(), mode=mode, citations=reply.citations,
                      finish_reason=reply.finish, reasoning=reply.reasoning, request_id=turn.request_id)  # fmt: skip
        summary = " ".join(turn.text.split())[:200]
        row = MemoryRow(
            f"m-{user.turn_id}", user.turn_id, summary, query if query is not None else self._embed(turn.text)
        )
        self.store.append_turns(
            session.session_id, [user, stored], memory=[row], max_turns=s.max_turns,
            topic=topic if not session.topic else None,
        )  # fmt: skip
        yield ChatEvent(reply.turn_id, citations=reply.citations, candidates=reply.candidates,
                        finish_reason=reply.finish, usage=usage)  # fmt: skip

    # -- strategies: each yields the reply's text pieces and fills `reply` ------------------------------------

    def _grounded(self, turn, knowledge, language, params, cancel, reply: _Reply) -> Iterator[str]:
        if self.lm is None:
            answer = self.answerer.answer(turn.text, knowledge, language=language)
            reply.citations = answer.citations
            reply.input_tokens = self._tokens(turn.text) + sum(
                self._tokens(c.snippet) for c in answer.citations
            )
            reply.notes.append(
                f"grounded answer, confidence {answer.confidence:.2f}, abstained {answer.abstained}"
            )
            yield from _pieces(answer.text)
            return
        hits = self.answerer.passages_for(turn.text, knowledge, k=self.settings.passages) if knowledge else []
        ids = {f"p{i + 1}": passage for i, (passage, _) in enumerate(hits)}
        prompt = templates.render(
            "grounded_answer",
            passages=templates.passages_block((pid, p.text) for pid, p in ids.items()),
            question=turn.text.strip(),
        )
        reply.input_tokens = self._tokens(prompt)
        yield from self._stream_seeing(prompt, knowledge, params, cancel, reply)
        cited = [p for pid, p in ids.items() if f"[{pid}]" in reply.text] or [p for p, _ in hits[:1]]
        reply.citations = tuple(_citation(p) for p in cited)

    def _dual_chain(self, turn, knowledge, params, cancel, reply: _Reply) -> Iterator[str]:
        assert self.lm is not None
        clips = [a for a in knowledge if a.kind in CLIP_KINDS]
        reasoning_params = replace(
            params, max_new_tokens=turn.max_reasoning_tokens or self.settings.max_reasoning_tokens
        )
        reasoning = dual_chain_of_thought(self.lm, turn.text, clips, params=reasoning_params, cancel=cancel)
        reply.reasoning = reasoning.trace
        reply.reasoning_tokens = self._tokens(reasoning.trace)
        reply.input_tokens = self._tokens(reasoning.final_prompt)
        reply.citations = tuple(
            Citation(c.attachment_id, c.title, c.content()[:200], c.uri, c.start or None, c.end or None)
            for c in clips
        )
        yield from self.lm.stream(reasoning.final_prompt, params, cancel)

    def _comments(self, turn, knowledge, strategy, params, cancel, reply: _Reply) -> Iterator[str]:
        s = self.settings
        n = turn.candidate_count or s.default_candidate_count
        media = [a for a in turn.attachments if a.kind in CLIP_KINDS] or [
            a for a in knowledge if a.kind in CLIP_KINDS
        ]
        media = media or list(knowledge)
        content = "\n".join(a.content() for a in media if a.content()) or turn.text
        comments = [c for a in media for c in a.comments]
        if self.lm is not None and strategy is Strategy.RIPPLE:
            reasoning_params = replace(
                params, max_new_tokens=turn.max_reasoning_tokens or s.max_reasoning_tokens
            )
            reasoning, candidates = ripple_of_thought(
                self.lm, content, n=n, params=reasoning_params, encoder=self.encoder, cancel=cancel,
                comments=comments,
            )  # fmt: skip
            reply.reasoning = reasoning.trace
            reply.reasoning_tokens = self._tokens(reasoning.trace)
            reply.input_tokens = self._tokens(reasoning.final_prompt)
        else:
            candidates = extractive_comments(content, comments, n=n, encoder=self.encoder)
            reply.input_tokens = self._tokens(content)
            reply.notes.append(f"extractive comments from {len(comments)} viewer comments")
        reply.candidates = tuple(candidates)
        reply.citations = tuple(
            Citation(a.attachment_id, a.title, "", a.uri, a.start or None, a.end or None) for a in media[:1]
        )
        if candidates:
            yield from _pieces(candidates[0].text)

    def _ripple_reply(self, turn, knowledge, params, cancel, reply: _Reply) -> Iterator[str]:
        """A reply (not a quick comment) reasoned outwards from the media's core (RoT's rings, then `rot_reply`)."""
        assert self.lm is not None
        content = "\n".join(a.content() for a in knowledge if a.content()) or turn.text
        reasoning_params = replace(
            params, max_new_tokens=turn.max_reasoning_tokens or self.settings.max_reasoning_tokens
        )
        reasoning, _ = ripple_of_thought(
            self.lm,
            content,
            n=1,
            params=reasoning_params,
            encoder=self.encoder,
            cancel=cancel,
            message=turn.text,
        )
        reply.reasoning = reasoning.trace
        reply.reasoning_tokens = self._tokens(reasoning.trace)
        reply.input_tokens = self._tokens(reasoning.final_prompt)
        yield from self.lm.stream(reasoning.final_prompt, params, cancel)

    def _chit_chat(
        self, session, turn, knowledge, used, params, cancel, reply: _Reply, language
    ) -> Iterator[str]:
        s = self.settings
        history = list(session.turns[-s.history_turns :])
        in_window = {t.turn_id for t in history}
        if self.lm is None:
            hits = self.answerer.passages_for(turn.text, knowledge, k=1) if knowledge else []
            text = CAPABILITIES["zh" if language == "zh" else "en"]
            if hits and hits[0][1] >= self.answerer.threshold_for(turn.text):
                passage = hits[0][0]
                reply.citations = (_citation(passage),)
                text = f"{passage.text} [{passage.source_id}]\n{text}"
            reply.input_tokens = self._tokens(turn.text)
            yield from _pieces(text)
            return
        remembered = [entry.summary for entry, _ in used if entry.turn_id not in in_window]
        topic = session.topic or _first_user_text(session)
        prompt = templates.render(
            "chat",
            topic=templates.topic_block(topic),
            memory=templates.memory_block(remembered),
            history=templates.history_block(history),
            message=turn.text.strip(),
        )
        previous = next((t.text for t in reversed(history) if t.role is Role.ASSISTANT), "")
        if topic and not (
            self.topic_guard.on_topic(topic, turn.text) and self.topic_guard.on_topic(topic, previous)
        ):
            prompt = self.topic_guard.steer_prompt(prompt, topic)
            reply.notes.append("steered back to the topic")
        reply.input_tokens = self._tokens(prompt)
        yield from self._stream_seeing(prompt, knowledge, params, cancel, reply)

    def _stream_seeing(self, prompt, knowledge, params, cancel, reply: _Reply) -> Iterator[str]:
        """The LM's reply to `prompt`, shown the session's frames when it takes images (no frame is decoded for
        one that does not): one image placeholder each in front of the prompt, their tokens in `reply`."""
        assert self.lm is not None
        # Only TransformersLM has images=; other backends lack the attribute (text-only).
        if not getattr(self.lm, "accepts_images", False):
            yield from self.lm.stream(prompt, params, cancel)
            return
        frames = self.media.session_frames(knowledge, self.settings.max_frames)
        # A prompt with images cannot be cut to the window (the LM refuses it), so frames go, oldest media first,
        # until text, images and the reply fit; the text alone is cut by the LM as any prompt is.
        room = self.lm.context_window - params.max_new_tokens - self._tokens(prompt) - 1  # 1: the "\n"
        tokens = self.lm.count_image_tokens(frames)
        while frames and tokens + IMAGE_WRAP_TOKENS * len(frames) > room:
            frames = frames[:-1]
            tokens = self.lm.count_image_tokens(frames)
        if not frames:
            yield from self.lm.stream(prompt, params, cancel)
            return
        reply.media_tokens = tokens
        reply.notes.append(f"{len(frames)} frames shown ({tokens} image tokens)")
        seeing = self.lm.image_placeholder * len(frames) + "\n" + prompt
        yield from self.lm.stream(seeing, params, cancel, images=frames)

    # -- helpers ----------------------------------------------------------------------------------------------

    def _replay(self, user: Turn, stored: Turn) -> Iterator[ChatEvent]:
        """The stored reply of a retried request: its text in one piece, then the last event as it was."""
        if stored.text:
            yield ChatEvent(stored.turn_id, text_delta=stored.text)
        usage = Usage(self._tokens(user.text), 0, self._tokens(stored.reasoning), self._tokens(stored.text))
        yield ChatEvent(
            stored.turn_id, citations=stored.citations, finish_reason=stored.finish_reason, usage=usage
        )

    def _embed(self, text: str) -> np.ndarray:
        return np.asarray(self.encoder.encode([text])[0], dtype=np.float32)

    def _usage(self, reply: _Reply) -> Usage:
        return Usage(reply.input_tokens, reply.media_tokens, reply.reasoning_tokens, self._tokens(reply.text))

    def _tokens(self, text: str) -> int:
        return self.lm.count_tokens(text) if self.lm is not None else len(text.split())

    def _check_turn(self, turn: ChatTurn) -> None:
        s = self.settings
        _session_id(turn.session_id)
        _check_id(turn.request_id, "request_id")
        if not turn.text.strip():
            raise FieldError("text", "is empty: say something")
        if len(turn.text) > s.max_message_chars:
            raise FieldError(
                "text", f"{len(turn.text)} characters is over the limit of {s.max_message_chars}"
            )
        if not 0 <= turn.max_output_tokens <= s.max_request_output_tokens:
            raise FieldError("max_output_tokens", f"must be in [0, {s.max_request_output_tokens}]")
        if not 0 <= turn.max_reasoning_tokens <= 8 * s.max_reasoning_tokens:
            raise FieldError(
                "reasoning_options.max_reasoning_tokens", f"must be in [0, {8 * s.max_reasoning_tokens}]"
            )
        if not 0 <= turn.candidate_count <= s.max_candidate_count:
            raise FieldError("candidate_count", f"must be in [0, {s.max_candidate_count}]")
        if turn.temperature is not None and not 0.0 <= turn.temperature <= 2.0:
            raise FieldError("temperature", f"must be in [0, 2], got {turn.temperature}")

    def _checked_attachments(
        self, attachments: Sequence[Attachment], field: str, taken: set[str]
    ) -> tuple[Attachment, ...]:
        """The attachments with ids assigned, after checking counts, sizes, texts and that media decode."""
        s = self.settings
        if len(attachments) > s.max_attachments:
            raise FieldError(
                field, f"{len(attachments)} attachments is over the limit of {s.max_attachments}"
            )
        out = []
        taken = set(taken)
        for i, attachment in enumerate(attachments):
            where = f"{field}[{i}]"
            source = f"{where}.{PROTO_FIELD[attachment.kind]}"
            attachment_id = attachment.attachment_id or f"{attachment.kind.value}-{uuid.uuid4().hex[:8]}"
            _check_id(attachment_id, f"{where}.attachment_id")
            if attachment_id in taken:
                raise FieldError(
                    f"{where}.attachment_id", f"{attachment_id!r} is already used in this session"
                )
            taken.add(attachment_id)
            text_chars = len(attachment.content())
            if text_chars > s.max_attachment_text_chars:
                raise FieldError(
                    where,
                    f"{text_chars} characters of text is over the limit of {s.max_attachment_text_chars}",
                )
            if len(attachment.data) > s.max_attachment_bytes:
                raise FieldError(
                    f"{source}.inline_data",
                    f"{len(attachment.data)} bytes is over the limit of {s.max_attachment_bytes}",
                    code="TOO_LARGE",
                )
            if attachment.data and attachment.kind in (AttachmentKind.VIDEO, AttachmentKind.LIVE_STREAM):
                check_video(attachment.data, DecodeLimits(), f"{source}.inline_data")
            if attachment.data and attachment.kind is AttachmentKind.IMAGE:
                _check_image(attachment.data, f"{source}.inline_data")
            if attachment.kind is AttachmentKind.LIVE_STREAM and not attachment.stream_id:
                raise FieldError(f"{source}.stream_id", "required: the live stream's id")
            if not (attachment.data or attachment.uri or attachment.content() or attachment.stream_id):
                raise FieldError(source, "is empty: give the media (inline_data or uri) or its text")
            out.append(replace(attachment, attachment_id=attachment_id))
        # ASR runs once every attachment is known good (no transcription spent on a request that fails), and
        # before the attachment is stored, so the transcript is kept with it.
        return tuple(
            self.media.transcribe(
                a, field=f"{field}[{i}].{PROTO_FIELD[a.kind]}.{'uri' if a.uri else 'inline_data'}"
            )
            for i, a in enumerate(out)
        )


def _pieces(text: str) -> Iterator[str]:
    """A finished text as stream pieces (one whitespace word each, CJK text one character each)."""
    for word in _PIECES.findall(text):
        if any(ord(c) > 0x2E80 for c in word) and len(word.strip()) > 1:
            yield from word
        else:
            yield word


def _citation(passage: Passage) -> Citation:
    return Citation(passage.source_id, passage.title, passage.text, passage.uri, passage.start, passage.end)


def _first_user_text(session: Session) -> str:
    return next((t.text for t in session.turns if t.role is Role.USER), "")


def _session_id(session_id: str) -> str:
    if not session_id:
        raise FieldError("session_id", "required")
    _check_id(session_id, "session_id")
    return session_id


def _check_id(value: str, field: str) -> None:
    if len(value) > MAX_ID_CHARS:
        raise FieldError(field, f"at most {MAX_ID_CHARS} characters")


def _check_image(data: bytes, field: str) -> None:
    """An image decodes, and is no larger than a 64-megapixel photo (checked from its header first)."""
    import io

    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.width * image.height > 1 << 26:
                raise FieldError(
                    field, f"a {image.width}x{image.height} image is over 64 megapixels", code="TOO_LARGE"
                )
            image.load()
    except FieldError:
        raise
    except Exception:  # PIL raises many types for broken files
        raise FieldError(field, "not a readable image (PNG, JPEG, WebP, GIF)") from None
