"""Domain jobs as stored operation payloads: a frozen dataclass <-> JSON bytes, and back after a restart.

    op, created = store.create(KIND, dump_job(job), request_id, request_fingerprint=client_bytes, ...)
    job = load_job(ExtractionJob, op.request)                   # in the worker, no second validation

A service validates a request once, turns it into its engine's job and stores that; the client's own bytes are
only the idempotency fingerprint. Values are JSON; `bytes` become {"b64": ...} and mask sequences
{"mask_sequence_pb": ...} (their protobuf); nested dataclasses are rebuilt from the type hints.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import types
import typing
from typing import Any, TypeVar

from libs.media import MaskSequence, dumps, loads

T = TypeVar("T")


def dump_job(job: Any) -> bytes:
    return json.dumps(_encode(job), sort_keys=True).encode()


def load_job(cls: type[T], data: bytes) -> T:
    return _decode(cls, json.loads(data))


def _encode(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, bytes | bytearray):
        return {"b64": base64.b64encode(value).decode("ascii")}
    if isinstance(value, MaskSequence):
        return {"mask_sequence_pb": base64.b64encode(dumps(value, "pb")).decode("ascii")}
    if isinstance(value, list | tuple):
        return [_encode(v) for v in value]
    return value


def _decode(hint: Any, value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"b64"}:
        return base64.b64decode(value["b64"])
    if isinstance(value, dict) and set(value) == {"mask_sequence_pb"}:
        return loads(base64.b64decode(value["mask_sequence_pb"]), "pb")
    if value is None:
        return None
    for option in _options(hint):
        if dataclasses.is_dataclass(option) and isinstance(value, dict):
            hints = typing.get_type_hints(option)
            return option(**{name: _decode(hints[name], v) for name, v in value.items()})
    return value


def _options(hint: Any) -> tuple[Any, ...]:
    """The types a hint allows (`A | None` -> (A, NoneType))."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return typing.get_args(hint)
    return (hint,)
