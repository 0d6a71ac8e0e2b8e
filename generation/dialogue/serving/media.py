"""The dialogue's media path: transcripts of videos and live slices (ASR) and the frames a vision LM is shown.

    media = MediaReader.load("openai/whisper-small")         # or MediaReader(): frames only, no ASR
    clip = media.transcribe(clip)                            # "[00:00] ...\\n[00:10] ..." when it had none
    images = media.session_frames(session.all_attachments(), max_frames=4)   # PIL images, newest media first

Both go through `libs.encoders` (`SpeechRecognizer`, `read_audio`, `sample_segment_frames`), which decodes with
PyAV from the attachment's bytes, or from its `uri` when that is a local file (the service has already read a
client's URI into the bytes under its media policy).

*Our* choices where the issue is silent:
- **ASR once, at attach time**: the engine transcribes a video or live slice that arrives with media and without
  a transcript before storing it, so the transcript is kept with the attachment (a restart does not re-run
  ASR) and every later turn reads it as text. A transcript the client gave is never replaced. A video without
  an audio stream simply gets none (no error).
- **Timed lines**: the audio is cut into windows of `TRANSCRIPT_LINE_SECONDS` (or the recognizer's own window,
  when shorter), one "[mm:ss] text" line each, offsets from the clip's start: `knowledge.passages` reads them
  as offsets, so a citation of that passage carries media start/end offsets. Shorter lines cite more
  precisely; longer ones cut fewer words at a boundary; 10 s is our middle.
- **Frames, newest media first**: the most recent visual attachment's frames come first; `max_frames` is shared
  out evenly (at least one each, newest first; what an image or a broken clip leaves goes to the next) so an
  older clip still shows when there is room; an image is one frame, a clip's frames are in time order. Media
  that no longer decode at chat time (a local file that went away) are skipped with a warning: a reply is still
  possible from the text.
"""

from __future__ import annotations

import io
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from PIL import Image

from generation.dialogue.types import Attachment, AttachmentKind
from libs.encoders.errors import EncoderInputError
from libs.errors import FieldError

logger = logging.getLogger(__name__)

CLIP_KINDS = (AttachmentKind.VIDEO, AttachmentKind.LIVE_STREAM)
VISUAL_KINDS = (*CLIP_KINDS, AttachmentKind.IMAGE)
TRANSCRIPT_LINE_SECONDS = 10.0
"""Seconds of audio per timed transcript line (capped by the recognizer's window: 30 s for Whisper)."""


def timestamp(seconds: float) -> str:
    """ "[mm:ss]" (or "[h:mm:ss]" past an hour), the form `knowledge.passages` reads as an offset."""
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"[{hours}:{minutes:02d}:{secs:02d}]" if hours else f"[{minutes:02d}:{secs:02d}]"


def media_source(attachment: Attachment) -> bytes | str | None:
    """The attachment's media: its bytes, else its `uri` when that names an existing local file, else None."""
    if attachment.data:
        return attachment.data
    if not attachment.uri:
        return None
    parsed = urlparse(attachment.uri)
    if parsed.scheme == "file":
        path = parsed.path
    elif (
        parsed.scheme and len(parsed.scheme) > 1
    ):  # http://, s3://, ...: not ours to fetch (a Windows drive is 1)
        return None
    else:
        path = attachment.uri
    return path if os.path.isfile(path) else None


class MediaReader:
    """Transcribes clips with an optional `SpeechRecognizer` and samples frames for a vision LM."""

    def __init__(self, asr: Any = None) -> None:
        self.asr = asr

    @classmethod
    def load(cls, asr_model: str | Path | None = None) -> MediaReader:
        """A reader with the Whisper checkpoint at `asr_model` (hub id or directory); none: no ASR."""
        if not asr_model:
            return cls()
        from libs.encoders import SpeechRecognizer

        logger.info("loading ASR model %s", asr_model)
        return cls(SpeechRecognizer.from_pretrained(asr_model))

    def transcribe(self, attachment: Attachment, *, field: str = "attachment") -> Attachment:
        """The attachment with a timed ASR transcript when it is a clip with media and no transcript; otherwise
        (no recognizer, a transcript already, no audio stream, nothing said) the attachment unchanged. Audio
        that does not decode is a FieldError on `field`."""
        if self.asr is None or attachment.kind not in CLIP_KINDS or attachment.transcript.strip():
            return attachment
        source = media_source(attachment)
        if source is None:
            return attachment
        from libs.encoders.video import read_audio

        try:
            audio = read_audio(source, sampling_rate=self.asr.sampling_rate, field=field, missing_ok=True)
        except EncoderInputError as exc:
            raise FieldError(exc.field, f"its audio does not decode: {exc.reason}") from None
        if audio is None:
            logger.info("%s has no audio stream: no transcript", attachment.attachment_id)
            return attachment
        rate = self.asr.sampling_rate
        step = min(int(TRANSCRIPT_LINE_SECONDS * rate), self.asr.window_samples)
        starts = range(0, audio.size, step)
        texts = self.asr.transcribe([audio[s : s + step] for s in starts], sampling_rate=rate, field=field)
        lines = [
            f"{timestamp(s / rate)} {text}" for s, text in zip(starts, texts, strict=True) if text.strip()
        ]
        logger.info("%s: %d transcript lines from %.1f s of audio", attachment.attachment_id, len(lines),
                    audio.size / rate)  # fmt: skip
        return replace(attachment, transcript="\n".join(lines)) if lines else attachment

    def frames(self, attachment: Attachment, k: int) -> list[Image.Image]:
        """k frames at the centres of k equal parts of a clip (RGB, in time order), an image itself, or none
        (no media, or not visual)."""
        source = media_source(attachment)
        if source is None or attachment.kind not in VISUAL_KINDS or k < 1:
            return []
        if attachment.kind is AttachmentKind.IMAGE:
            data = source if isinstance(source, bytes) else Path(source).read_bytes()
            with Image.open(io.BytesIO(data)) as image:
                return [image.convert("RGB")]
        from libs.encoders.video import sample_segment_frames

        return [Image.fromarray(frame) for frame in sample_segment_frames(source, k)]

    def session_frames(self, attachments: Sequence[Attachment], max_frames: int) -> list[Image.Image]:
        """At most `max_frames` frames of `attachments` (oldest first, as `Session.all_attachments` orders
        them), the most recent visual attachment's first (see the module docstring for the sharing)."""
        visual = [a for a in reversed(attachments) if a.kind in VISUAL_KINDS and media_source(a) is not None]
        if not visual or max_frames < 1:
            return []
        out: list[Image.Image] = []
        for i, attachment in enumerate(visual):
            room = max_frames - len(out)
            if room <= 0:
                break
            # What is left, shared by what is left: an image's or a broken clip's unused share goes on.
            share = math.ceil(room / (len(visual) - i))
            try:
                out += self.frames(attachment, share)
            except (EncoderInputError, OSError) as exc:
                logger.warning("%s: frames skipped: %s", attachment.attachment_id, exc)
        return out[:max_frames]
