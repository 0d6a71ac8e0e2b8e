"""`FieldError`: a bad input, with the dotted path of the field at fault.

Engines and libraries raise it for a bad argument (`offset.keyframes[2].frame_index`, `frames[3].rle`); a
service puts its request path in front (`prefixed`) or renames the first component to its proto field
(`renamed`) and answers INVALID_ARGUMENT naming that field (`libs.serving.inputs.field_violation`). So no
caller ever has to recognise an error by its message text.
"""

from __future__ import annotations

from collections.abc import Sequence


class FieldError(ValueError):
    """A bad argument. `field` is a dotted path to it, starting with the parameter's name; `reason` is the
    human explanation; `code`, when set, a machine-readable reason (e.g. `MASK_SEQUENCE_TOO_LARGE`)."""

    def __init__(self, field: str, reason: str, *, code: str | None = None) -> None:
        super().__init__(f"{field}: {reason}" if field else reason)
        self.field = field
        self.reason = reason
        self.code = code

    def prefixed(self, prefix: str) -> FieldError:
        """The same error with `prefix.` in front of the field path."""
        if not prefix:
            return FieldError(self.field, self.reason, code=self.code)
        return FieldError(f"{prefix}.{self.field}" if self.field else prefix, self.reason, code=self.code)

    def renamed(self, first: str) -> FieldError:
        """The same error with the first component of the path replaced by `first`."""
        head, dot, rest = self.field.partition(".")
        bracket = head[head.index("[") :] if "[" in head else ""
        return FieldError(first + bracket + dot + rest, self.reason, code=self.code)


class UnknownModelVersion(LookupError):
    """A request pinned a model version the engine has not loaded (a service answers NOT_FOUND listing them)."""

    def __init__(self, version: str, available: Sequence[str]) -> None:
        super().__init__(f"no model version {version!r} is loaded; available: {', '.join(available)}")
        self.version = version
        self.available = tuple(available)
