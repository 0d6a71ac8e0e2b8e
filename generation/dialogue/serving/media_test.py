"""MediaReader with the tiny Whisper and `make_video` clips (frame i is grey level 8*i, a 440 Hz tone): timed
transcripts for clips without one and nothing else, frames in time order, newest media first within a budget."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from generation.dialogue.knowledge.passages import passages_of
from generation.dialogue.serving.media import MediaReader, media_source, timestamp
from generation.dialogue.types import Attachment, AttachmentKind
from libs.encoders.testing import frame_value, make_video, tiny_speech_recognizer
from libs.errors import FieldError


@pytest.fixture(scope="module")
def asr():
    return tiny_speech_recognizer()


@pytest.fixture(scope="module")
def clip_bytes(tmp_path_factory):
    path = make_video(tmp_path_factory.mktemp("media") / "clip.mp4")
    with open(path, "rb") as f:
        return f.read()


@pytest.fixture(scope="module")
def silent_bytes(tmp_path_factory):
    path = make_video(tmp_path_factory.mktemp("silent") / "silent.mp4", audio=False)
    with open(path, "rb") as f:
        return f.read()


def png(colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (20, 12), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def video(data: bytes, attachment_id: str = "v1", **fields) -> Attachment:
    return Attachment(attachment_id, AttachmentKind.VIDEO, data=data, **fields)


def test_timestamps_are_what_passages_read_as_offsets():
    assert [timestamp(s) for s in (0, 2.9, 61, 3725)] == ["[00:00]", "[00:02]", "[01:01]", "[1:02:05]"]
    clip = Attachment(
        "c", AttachmentKind.VIDEO, transcript=f"{timestamp(0)} hello there.\n{timestamp(12)} bye."
    )
    assert [(p.text, p.start) for p in passages_of([clip])] == [("hello there.", 0.0), ("bye.", 12.0)]


def test_media_source_reads_bytes_and_local_files_only(tmp_path):
    path = tmp_path / "a.mp4"
    path.write_bytes(b"x")
    assert media_source(video(b"abc")) == b"abc"
    assert media_source(video(b"", uri=str(path))) == str(path)
    assert media_source(video(b"", uri=path.as_uri())) == str(path)
    assert media_source(video(b"", uri="https://example.com/a.mp4")) is None
    assert media_source(video(b"", uri=str(tmp_path / "gone.mp4"))) is None


def test_a_clip_without_transcript_gets_timed_lines_one_per_window(asr, clip_bytes):
    reader = MediaReader(asr)
    out = reader.transcribe(video(clip_bytes, start=30.0, end=33.0))
    lines = out.transcript.splitlines()
    # 3.07 s of audio in the tiny Whisper's 2-second windows: two lines, at 0 s and 2 s from the clip's start.
    assert [line.split(" ", 1)[0] for line in lines] == ["[00:00]", "[00:02]"]
    assert all(line.split(" ", 1)[1].strip() for line in lines)
    # The transcript is read as offsets from the attachment's start: passages carry media times.
    starts = sorted({p.start for p in passages_of([out]) if p.kind == "transcript"})
    assert starts == [30.0, 32.0]


def test_transcribe_leaves_alone_what_it_should_not_touch(asr, clip_bytes, silent_bytes):
    reader = MediaReader(asr)
    given = video(clip_bytes, transcript="the host says hello")
    assert reader.transcribe(given) is given
    silent = video(silent_bytes)
    assert reader.transcribe(silent) is silent  # no audio stream: no transcript, no error
    image = Attachment("i", AttachmentKind.IMAGE, data=png((255, 0, 0)))
    assert reader.transcribe(image) is image
    calls = asr.forward_calls
    assert MediaReader().transcribe(video(clip_bytes)).transcript == ""  # no recognizer configured
    assert asr.forward_calls == calls


def test_audio_that_does_not_decode_names_the_field(asr, tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x01" * 200)
    with pytest.raises(FieldError) as caught:
        MediaReader(asr).transcribe(video(b"", uri=str(broken)), field="attachments[0].video.uri")
    assert caught.value.field == "attachments[0].video.uri"


def test_frames_are_k_uniform_samples_in_time_order(clip_bytes):
    frames = MediaReader().frames(video(clip_bytes), 3)
    levels = [float(np.asarray(f).mean()) for f in frames]
    # 30 frames in 3 parts: the centres are frames 5, 15 and 25.
    assert levels == pytest.approx([frame_value(5), frame_value(15), frame_value(25)], abs=6)
    assert all(f.mode == "RGB" and f.size == (64, 48) for f in frames)
    red = MediaReader().frames(Attachment("i", AttachmentKind.IMAGE, data=png((255, 0, 0))), 3)
    assert len(red) == 1 and red[0].getpixel((0, 0)) == (255, 0, 0)
    assert MediaReader().frames(Attachment("d", AttachmentKind.DOCUMENT, text="Weight: 1 kg"), 3) == []


def test_session_frames_show_the_newest_media_first_within_the_budget(clip_bytes, tmp_path, caplog):
    reader = MediaReader()
    gone = tmp_path / "gone.mp4"
    gone.write_bytes(b"not a video at all")
    attachments = [
        video(clip_bytes, "old-clip"),
        Attachment("doc", AttachmentKind.DOCUMENT, text="Price: 3 yuan"),
        Attachment("newer-image", AttachmentKind.IMAGE, data=png((0, 0, 255))),
        video(b"", "broken", uri=str(gone)),
    ]
    frames = reader.session_frames(attachments, max_frames=3)
    # The broken clip (newest) is skipped with a warning; the image comes next, then the clip's share of 2.
    assert "broken: frames skipped" in caplog.text
    assert len(frames) == 3 and frames[0].getpixel((0, 0)) == (0, 0, 255)
    levels = [float(np.asarray(f).mean()) for f in frames[1:]]
    assert levels[0] < levels[1]  # the clip's frames in time order (it darkens towards its start)
    assert len(reader.session_frames(attachments, max_frames=1)) == 1
    assert reader.session_frames(attachments[1:2], max_frames=4) == []
