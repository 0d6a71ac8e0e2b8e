"""DialogueEngine against the embedded default and scripted LMs: grounded, cited answers and abstentions, streamed
pieces that join to the stored reply, request_id replay, cancel within one piece, memory references and
"remembered" prompt lines, DCoT and RoT orchestration, quick comments, and every bad input named by its field."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from generation.dialogue.backends.scripted import ScriptedLM
from generation.dialogue.backends.transformers_lm import TransformersLM
from generation.dialogue.knowledge.language import detect_language
from generation.dialogue.serving.engine import DialogueEngine, strategy_for
from generation.dialogue.serving.media import MediaReader
from generation.dialogue.serving.settings import DialogueSettings
from generation.dialogue.serving.store import SessionStore
from generation.dialogue.serving.testing import ECHO_REPLY, LIVE_SLICE, PRODUCT, echo_lm, tiny_engine
from generation.dialogue.types import (
    Attachment,
    AttachmentKind,
    ChatTurn,
    FinishReason,
    Mode,
    NewSession,
    Role,
    SessionNotFound,
    Strategy,
)
from libs.encoders import TextEncoder
from libs.errors import FieldError
from libs.media import encode_video


@pytest.fixture(scope="module")
def encoder():
    return TextEncoder.from_pretrained()


def start(engine, *attachments, **fields):
    return engine.create_session(NewSession(user_id="u1", attachments=attachments, **fields)).session_id


def ask(engine, session_id, text, cancel=None, **fields):
    events = list(engine.chat(ChatTurn(session_id, text, **fields), cancel or threading.Event()))
    return "".join(e.text_delta for e in events), events


def test_product_questions_are_answered_with_a_citation_or_abstain(encoder, tmp_path):
    engine = tiny_engine(tmp_path, encoder)
    sid = start(engine, PRODUCT)
    text, events = ask(engine, sid, "How heavy is the Aurora X200?")
    last = events[-1]
    assert "187 g" in text and last.finish_reason is FinishReason.STOP
    assert [c.source_id for c in last.citations] == ["x200"] and "187" in last.citations[0].snippet
    assert last.usage.output_tokens == len(text.split()) and last.usage.input_tokens > 0
    assert all(e.finish_reason is None for e in events[:-1]) and len(events) > 2  # streamed in pieces

    unknown, events = ask(engine, sid, "Is the Aurora X200 waterproof to 50 metres?")
    assert "187" not in unknown and events[-1].citations == ()
    session = engine.get_session(sid, full=True)
    assert session.turn_count == 4 and [t.role for t in session.turns] == [Role.USER, Role.ASSISTANT] * 2
    assert session.turns[1].text == text and session.turns[1].citations == last.citations
    assert session.topic == "How heavy is the Aurora X200?"  # empty topic: the first user turn's


def test_chinese_text_passes_through_and_is_answered_in_chinese(encoder, tmp_path):
    engine = tiny_engine(tmp_path, encoder)
    doc = Attachment(
        "doc-zh", AttachmentKind.DOCUMENT, title="极光 X200 手机", text="电池：5000 毫安时\n重量：187 克"
    )
    sid = start(engine, doc)
    text, events = ask(engine, sid, "这款手机的电池容量是多少？")
    assert detect_language(text) == "zh" and len(events) > 2  # streamed a character at a time
    session = engine.get_session(sid, full=True)
    assert session.turns[0].text == "这款手机的电池容量是多少？" and session.attachments == (doc,)


def test_a_retried_request_id_replays_the_reply_without_a_second_turn(encoder, tmp_path):
    engine = tiny_engine(tmp_path, encoder)
    sid = start(engine, PRODUCT)
    first, events = ask(engine, sid, "What does it cost?", request_id="r-1")
    again, replayed = ask(engine, sid, "What does it cost?", request_id="r-1")
    assert again == first and replayed[-1].turn_id == events[-1].turn_id
    assert replayed[-1].citations == events[-1].citations
    assert engine.get_session(sid).turn_count == 2


def test_cancel_stops_within_one_piece_and_keeps_the_turn_as_cancelled(encoder, tmp_path):
    lm = echo_lm(delay=0.01)
    engine = tiny_engine(tmp_path, encoder, lm=lm)
    sid = start(engine)
    cancel = threading.Event()
    streamed, finals = "", []
    for event in engine.chat(ChatTurn(sid, "tell me a long story"), cancel):
        streamed += event.text_delta
        if event.finish_reason is not None:
            finals.append(event)
        elif len(streamed.split()) == 3:
            cancel.set()
    assert finals[-1].finish_reason is FinishReason.CANCELLED
    assert len(streamed.split()) == 3  # not one piece more after the cancel
    reply = engine.get_session(sid, full=True).turns[1]
    assert reply.finish_reason is FinishReason.CANCELLED and reply.text == streamed


def test_a_failing_model_stores_nothing(encoder, tmp_path):
    def broken(prompt: str) -> str:
        raise RuntimeError("the model fell over")

    engine = tiny_engine(tmp_path, encoder, lm=ScriptedLM(broken))
    sid = start(engine, PRODUCT)
    before = engine.get_session(sid, full=True)
    with pytest.raises(RuntimeError):
        ask(engine, sid, "hello there")
    assert engine.get_session(sid, full=True) == before
    assert engine.store.counts()["memory"] == 0


def test_chit_chat_without_a_model_quotes_what_the_knowledge_holds_and_says_what_it_can_do(encoder, tmp_path):
    engine = tiny_engine(tmp_path, encoder)
    sid = start(engine, PRODUCT)
    related, events = ask(engine, sid, "The Aurora X200 battery, tell me", mode=Mode.CHIT_CHAT)
    assert "5000" in related and events[-1].citations, related
    unrelated, events = ask(engine, sid, "hi\x00there, nice weather", mode=Mode.CHIT_CHAT)
    assert "I can answer questions" in unrelated and not events[-1].citations
    assert events[-1].finish_reason is FinishReason.STOP


def test_an_off_topic_message_re_steers_the_prompt_to_the_session_topic(encoder, tmp_path):
    lm = ScriptedLM(["The battery lasts two days.", "Back to the phone: it charges in 30 minutes."])
    engine = tiny_engine(tmp_path, encoder, lm=lm)
    sid = start(engine, topic="the Aurora X200 phone's battery life", default_mode=Mode.CHIT_CHAT)
    ask(engine, sid, "How long does the phone's battery last?")
    ask(engine, sid, "Which football team won the league in 1998?")
    on_topic, off_topic = lm.prompts
    steer = "stays on the topic of the conversation: the Aurora X200 phone's battery life"
    assert steer not in on_topic and steer in off_topic
    assert off_topic.rstrip().endswith("Assistant:")


def test_chit_chat_prompts_hold_the_window_and_remember_older_facts(encoder, tmp_path):
    lm = echo_lm()
    engine = tiny_engine(tmp_path, encoder, lm=lm, history_turns=2)
    sid = start(engine, topic="pets")
    ask(engine, sid, "My dog is called Rex and he loves swimming.")
    for filler in ("I had pasta for lunch today.", "The weather is grey and windy."):
        ask(engine, sid, filler)
    _, events = ask(engine, sid, "What is my dog called?")
    prompt = lm.prompts[-1]
    assert "(Remembered: My dog is called Rex" in prompt  # out of the 2-turn window, back through memory
    assert "User: The weather is grey and windy." in prompt and "User: I had pasta" not in prompt
    assert "Topic: pets" in prompt
    references = [m for e in events for m in e.memory_references]
    assert references and references[0].summary.startswith("My dog is called Rex")
    assert all(0.0 <= m.relevance <= 1.0 for m in references)
    text = "".join(e.text_delta for e in events)
    assert text.startswith(ECHO_REPLY) and events[-1].usage.input_tokens == len(prompt.split())


def test_knowledge_questions_over_several_clips_use_the_dual_chain(encoder, tmp_path):
    assert strategy_for(Mode.KNOWLEDGE_QA, clips=2, has_lm=True) is Strategy.DUAL_CHAIN
    assert strategy_for(Mode.KNOWLEDGE_QA, clips=2, has_lm=False) is Strategy.NONE
    assert strategy_for(Mode.KNOWLEDGE_QA, clips=1, has_lm=True) is Strategy.NONE
    assert strategy_for(Mode.QUICK_COMMENT, clips=0, has_lm=False) is Strategy.RIPPLE

    def script(prompt: str) -> str:
        if prompt.rstrip().endswith("Events:"):
            return '["Mia finds a key.", "Mia opens the door."]'
        if prompt.rstrip().endswith("People:"):
            return '[{"name": "Mia", "aliases": [], "relations": []}]'
        return "Mia opens the door last."

    lm = ScriptedLM(script)
    engine = tiny_engine(tmp_path, encoder, lm=lm)
    clips = [
        Attachment(f"ep{i}", AttachmentKind.VIDEO, title=f"Episode {i}", transcript=f"Mia in episode {i}.")
        for i in (2, 1)
    ]
    sid = start(engine, *clips)
    text, events = ask(engine, sid, "What does Mia do last?", include_reasoning=True)
    reasoning = "".join(e.reasoning_delta for e in events)
    assert (
        text == "Mia opens the door last." and "Event chain" in reasoning and "Mia finds a key." in reasoning
    )
    assert {c.source_id for c in events[-1].citations} == {"ep1", "ep2"}
    assert events[-1].usage.reasoning_tokens > 0
    assert engine.get_session(sid, full=True).turns[1].reasoning == reasoning
    quiet, events = ask(engine, sid, "Who opens the door?")
    assert not any(e.reasoning_delta for e in events)  # reasoning is streamed only when asked for


def test_quick_comments_are_ranked_candidates_with_and_without_a_model(encoder, tmp_path):
    engine = tiny_engine(tmp_path / "a", encoder)
    sid = start(engine, LIVE_SLICE)
    text, events = ask(engine, sid, "comment on this", mode=Mode.QUICK_COMMENT, candidate_count=3)
    candidates = events[-1].candidates
    assert len(candidates) == 3 and text == candidates[0].text
    assert len({c.text for c in candidates}) == 3
    assert [c.score for c in candidates] == sorted((c.score for c in candidates), reverse=True)
    assert "hello from Berlin" not in [c.text for c in candidates]  # off the slice's content

    def script(prompt: str) -> str:
        if prompt.rstrip().endswith("Comments:"):
            return '["Those folds are perfect!", "Twenty minutes of rest, noted", "Chive and pork forever"]'
        return "Folding dumplings on a live stream."

    lm = ScriptedLM(script)
    engine = tiny_engine(tmp_path / "b", encoder, lm=lm)
    sid = start(engine, LIVE_SLICE)
    text, events = ask(
        engine, sid, "comment", mode=Mode.QUICK_COMMENT, candidate_count=2, include_reasoning=True
    )
    assert len(events[-1].candidates) == 2 and text == events[-1].candidates[0].text
    assert "Core:" in "".join(e.reasoning_delta for e in events) and len(lm.prompts) >= 4


def test_bad_input_names_the_field(encoder, tmp_path):
    engine = tiny_engine(tmp_path, encoder, max_turns=4, max_attachment_bytes=4096, max_message_chars=100)
    sid = start(engine, PRODUCT)
    frames = np.full((2, 16, 16, 3), 80, np.uint8)
    video = encode_video(frames, fps=4, format="mp4")
    bad = {
        "text": ChatTurn(sid, "   "),
        "text ": ChatTurn(sid, "x" * 101),
        "attachments[0].video.inline_data": ChatTurn(
            sid, "look", attachments=(Attachment("", AttachmentKind.VIDEO, data=b"not a video at all"),)
        ),
        "attachments[1].image.inline_data": ChatTurn(
            sid, "look", attachments=(Attachment("", AttachmentKind.VIDEO, data=video),
                                      Attachment("", AttachmentKind.IMAGE, data=b"\x89PNG broken"))),
        "attachments[0].attachment_id": ChatTurn(
            sid, "look", attachments=(Attachment("x200", AttachmentKind.DOCUMENT, text="dup"),)
        ),
        "max_output_tokens": ChatTurn(sid, "hi", max_output_tokens=10**6),
        "candidate_count": ChatTurn(sid, "hi", candidate_count=-1),
    }  # fmt: skip
    for field, turn in bad.items():
        with pytest.raises(FieldError) as error:
            engine.chat(turn, threading.Event())
        assert error.value.field == field.strip(), (field, error.value)
    big = Attachment("", AttachmentKind.VIDEO, data=bytes(4097))
    with pytest.raises(FieldError) as error:
        engine.create_session(NewSession("u1", attachments=(big,)))
    assert error.value.field == "attachments[0].video.inline_data" and error.value.code == "TOO_LARGE"
    with pytest.raises(FieldError) as error:
        engine.create_session(NewSession(""))
    assert error.value.field == "user_id"
    with pytest.raises(SessionNotFound):
        engine.chat(ChatTurn("nope", "hi"), threading.Event())

    ask(engine, sid, "How heavy is it?")
    ask(engine, sid, "What does it cost?")
    with pytest.raises(FieldError) as error:  # 4 turns held: one more exchange is over the limit
        engine.chat(ChatTurn(sid, "and the screen?"), threading.Event())
    assert error.value.field == "session_id" and error.value.code == "TOO_MANY_TURNS"
    assert engine.get_session(sid).turn_count == 4
    engine.attach(sid, [Attachment("clip", AttachmentKind.VIDEO, data=video)])
    assert [a.attachment_id for a in engine.get_session(sid).attachments] == ["x200", "clip"]


def test_sessions_list_newest_first_and_delete(encoder, tmp_path):
    engine = tiny_engine(tmp_path, encoder, page_size=2)
    ids = [start(engine) for _ in range(3)]
    page, token = engine.list_sessions("u1")
    rest, last = engine.list_sessions("u1", 0, token)
    assert [s.session_id for s in page + rest] == ids[::-1] and last == ""
    engine.delete_session(ids[0])
    with pytest.raises(SessionNotFound):
        engine.get_session(ids[0])
    with pytest.raises(FieldError):
        engine.list_sessions("u1", -1)


# -- media: ASR at attach time, frames for a vision-language LM ------------------------------------------------


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """A 3-second clip with a 440 Hz tone (`make_video`: frame i is grey level 8*i)."""
    from libs.encoders.testing import make_video

    path = make_video(tmp_path_factory.mktemp("clip") / "clip.mp4")
    with open(path, "rb") as f:
        return f.read()


def png(colour: tuple[int, int, int]) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (20, 12), colour).save(buffer, format="PNG")
    return buffer.getvalue()


class CountingReader(MediaReader):
    """A MediaReader that counts the clips and images it decodes frames of."""

    def __init__(self, asr=None) -> None:
        super().__init__(asr)
        self.decoded = 0

    def frames(self, attachment, k):
        self.decoded += 1
        return super().frames(attachment, k)


class SeeingLM(TransformersLM):
    """The tiny Llava, recording the prompt and images of every call."""

    def stream(self, prompt, params, cancel=None, *, images=None):
        self.calls.append((prompt, list(images or ())))
        return super().stream(prompt, params, cancel, images=images)


@pytest.fixture(scope="module")
def vlm(tmp_path_factory):
    import json

    from generation.dialogue.backends.testing import tiny_vision_language_dir

    path = tiny_vision_language_dir(tmp_path_factory.mktemp("vlm") / "vlm")
    # The engine's few-shot prompts run past the tiny model's 256 positions; RoPE has no table, so a longer
    # window costs nothing and the random weights mean nothing either way.
    config = json.loads((path / "config.json").read_text())
    config["text_config"]["max_position_embeddings"] = 4096
    (path / "config.json").write_text(json.dumps(config))
    lm = SeeingLM.from_pretrained(path)
    lm.calls = []
    return lm


def test_a_clip_without_transcript_is_transcribed_once_when_attached(encoder, tmp_path, clip):
    from libs.encoders.testing import tiny_speech_recognizer

    asr = tiny_speech_recognizer()
    engine = DialogueEngine(SessionStore(tmp_path / "sessions.db"), encoder, media=MediaReader(asr))
    sid = start(engine, Attachment("ep1", AttachmentKind.VIDEO, data=clip, title="Episode 1"))
    transcript = engine.get_session(sid).attachments[0].transcript
    assert [line[:7] for line in transcript.splitlines()] == ["[00:00]", "[00:02]"]
    assert asr.forward_calls == 1  # both windows in one batch
    added = engine.attach(sid, [Attachment("ep2", AttachmentKind.VIDEO, data=clip, transcript="given")])
    assert added.attachments[1].transcript == "given" and asr.forward_calls == 1  # a given transcript stays
    engine.store.close()

    # Re-opened on the same data: the transcript was stored with the attachment; nothing runs ASR again.
    again = tiny_speech_recognizer()
    engine = DialogueEngine(SessionStore(tmp_path / "sessions.db"), encoder, media=MediaReader(again))
    assert engine.get_session(sid).attachments[0].transcript == transcript
    ask(engine, sid, "What happens in episode 1?")
    assert again.forward_calls == 0


def test_a_vision_language_model_is_shown_the_newest_frames_and_counts_them(encoder, tmp_path, clip, vlm):
    reader = CountingReader()
    engine = DialogueEngine(
        SessionStore(tmp_path / "sessions.db"), encoder, vlm, DialogueSettings(max_frames=3), media=reader
    )
    image = Attachment("photo", AttachmentKind.IMAGE, data=png((255, 0, 0)))
    sid = start(
        engine, Attachment("ep1", AttachmentKind.VIDEO, data=clip, transcript="a cooking show"), image
    )
    vlm.calls.clear()
    seen = []
    hook = vlm.model.register_forward_pre_hook(
        lambda _, args, kwargs: seen.append(kwargs.get("pixel_values")), with_kwargs=True
    )
    try:
        _, events = ask(engine, sid, "hello there", max_output_tokens=4)
    finally:
        hook.remove()
    prompt, images = vlm.calls[-1]
    # The image (newest) first, then two frames of the clip in time order; one placeholder each.
    assert len(images) == 3 and images[0].getpixel((0, 0)) == (255, 0, 0)
    assert np.asarray(images[1]).mean() < np.asarray(images[2]).mean()
    assert prompt.startswith("<image>" * 3 + "\n") and prompt.count("<image>") == 3
    # The pixels reach the model's first forward (later steps decode from the KV cache).
    pixels = seen[0]
    assert (
        pixels is not None and tuple(pixels.shape) == (3, 3, 16, 16) and seen[1:] == [None] * (len(seen) - 1)
    )
    red = pixels[0].mean(dim=(1, 2))
    assert red[0] > red[1] and red[0] > red[2]  # the red photo, normalised: its red channel stands out
    # The tiny Llava's processor: a 16x16 image in 8x8 patches is 4 image tokens.
    assert events[-1].usage.media_tokens == 3 * 4 == vlm.count_image_tokens(images)

    # A session with text only: no placeholder, no pixels, no media tokens.
    text_only = start(engine, Attachment("notes", AttachmentKind.DOCUMENT, text="Price: 3 yuan"))
    _, events = ask(engine, text_only, "hello there", max_output_tokens=4)
    assert vlm.calls[-1][1] == [] and "<image>" not in vlm.calls[-1][0] and events[-1].usage.media_tokens == 0


def test_frames_go_oldest_first_until_the_prompt_fits_the_window(encoder, tmp_path, clip, vlm, monkeypatch):
    engine = DialogueEngine(
        SessionStore(tmp_path / "sessions.db"), encoder, vlm, DialogueSettings(max_frames=3)
    )
    media = (
        Attachment("ep1", AttachmentKind.VIDEO, data=clip, transcript="a cooking show"),
        Attachment("photo", AttachmentKind.IMAGE, data=png((255, 0, 0))),
    )
    _, events = ask(engine, start(engine, *media), "hello there", max_output_tokens=4)
    text_tokens = events[-1].usage.input_tokens
    # Room for the reply, the text, the line break and one image (4 tokens + 4 kept for wrapping), not two.
    monkeypatch.setattr(vlm, "context_window", 4 + text_tokens + 1 + 8 + 3)
    _, events = ask(engine, start(engine, *media), "hello there", max_output_tokens=4)
    prompt, images = vlm.calls[-1]
    assert len(images) == 1 and images[0].getpixel((0, 0)) == (255, 0, 0) and prompt.count("<image>") == 1
    assert events[-1].usage.media_tokens == 4


def test_a_text_only_model_gets_no_frames_and_no_frame_is_decoded(encoder, tmp_path, clip):
    lm = echo_lm()
    reader = CountingReader()
    engine = DialogueEngine(SessionStore(tmp_path / "sessions.db"), encoder, lm, media=reader)
    sid = start(engine, Attachment("ep1", AttachmentKind.VIDEO, data=clip, transcript="a cooking show"))
    for text in ("hello there", "What is cooked in the show?"):
        _, events = ask(engine, sid, text)
        assert events[-1].usage.media_tokens == 0
    assert reader.decoded == 0 and not any("<image>" in p for p in lm.prompts)
