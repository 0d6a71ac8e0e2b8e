"""Errors of the encoder library: every bad input is a `ValueError` subclass that names the offending field.

    try:
        encoder.encode(segment)
    except EncoderInputError as exc:
        exc.field        # "frames[2]", "comments", "texts[7]", "manifest line 12: video", ...

Callers that already catch `ValueError` keep working; callers that want to report the field (the batch job,
a service translating to `BadRequest.FieldViolation`) read `exc.field`.
"""

from __future__ import annotations


class EncoderInputError(ValueError):
    """An input an encoder cannot use; `field` names where it is (e.g. `texts[3]`, `frames`, `audio`)."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.reason = message
        super().__init__(f"{field}: {message}")

    def __reduce__(self):  # keep field and message when the error crosses a process boundary
        return (type(self), (self.field, self.reason))


class EmptyInputError(EncoderInputError):
    """Nothing to encode: an empty segment, a video range without frames, an empty frame list."""


class InputTooLongError(EncoderInputError):
    """A text over the encoder's token limit while truncation is off."""


class InputTypeError(EncoderInputError):
    """A value of the wrong type, dtype or shape (e.g. float64 frames where uint8 RGB is expected)."""


class DecodeError(EncoderInputError):
    """Bytes that do not decode: a corrupt image, video or audio file, or a missing one."""


class ManifestError(EncoderInputError):
    """A batch-job manifest line that is not a valid segment record (bad JSON, missing id, duplicate id)."""


class UnsupportedModelError(ValueError):
    """A checkpoint whose architecture the encoder does not support (e.g. a frame encoder given a BERT)."""


class StaleOutputError(ValueError):
    """An output written by a different encoder (fingerprint mismatch): resuming would mix vectors."""


class OutputLockedError(RuntimeError):
    """Another encode job holds the output's lock file (one runner per output at a time)."""
