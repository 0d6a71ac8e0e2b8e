"""Conversions between stored operations and `google.longrunning.Operation`.

The store keeps `metadata` and `result` as serialized `google.protobuf.Any`, so a service packs its own
message types once (`pack_any(VideoGenerationMetadata(...))`) and the Operations API returns them unchanged;
clients unpack by type URL. `to_operation_proto` maps:

- `metadata` -> `Operation.metadata` (in every state, when set);
- SUCCEEDED -> `Operation.response` (the stored result, or a packed `google.protobuf.Empty` if there is none);
- FAILED -> `Operation.error`: `google.rpc.Status(code, message, details)`;
- CANCELLED -> `Operation.error` with code CANCELLED (as AIP-151 asks for cancelled operations);
- `done` is true exactly in those three states.
"""

from __future__ import annotations

from typing import TypeVar

from google.longrunning import operations_pb2
from google.protobuf import any_pb2, empty_pb2, message
from google.rpc import status_pb2

from libs.serving.operations.errors import InvalidOperationArgumentError, OperationError
from libs.serving.operations.store import ErrorStatus, Operation, State

__all__ = ["error_to_status_proto", "pack_any", "to_operation_proto", "unpack_any"]

M = TypeVar("M", bound=message.Message)


def pack_any(msg: message.Message) -> bytes:
    """Serialize `msg` wrapped in a `google.protobuf.Any`: the form the store keeps metadata and results in."""
    packed = any_pb2.Any()
    packed.Pack(msg)
    return packed.SerializeToString()


def unpack_any(data: bytes, message_type: type[M]) -> M:
    """Inverse of `pack_any`; raises `InvalidOperationArgumentError` if `data` holds another type."""
    try:
        packed = any_pb2.Any.FromString(data)
    except message.DecodeError as exc:
        raise InvalidOperationArgumentError("data", "not a serialized google.protobuf.Any") from exc
    result = message_type()
    if not packed.Unpack(result):
        raise InvalidOperationArgumentError(
            "data",
            f"expected {message_type.DESCRIPTOR.full_name}, the Any holds {packed.type_url or 'nothing'}",
        )
    return result


def error_to_status_proto(error: ErrorStatus) -> status_pb2.Status:
    """A stored `ErrorStatus` as `google.rpc.Status`."""
    return status_pb2.Status(
        code=error.code, message=error.message, details=[_parse_any(detail) for detail in error.details]
    )


def to_operation_proto(operation: Operation) -> operations_pb2.Operation:
    """The `google.longrunning.Operation` a client sees for a stored operation."""
    proto = operations_pb2.Operation(name=operation.name, done=operation.done)
    if operation.metadata is not None:
        proto.metadata.CopyFrom(_parse_any(operation.metadata))
    if operation.state is State.SUCCEEDED:
        if operation.result:
            proto.response.CopyFrom(_parse_any(operation.result))
        else:
            proto.response.Pack(empty_pb2.Empty())
    elif operation.state in (State.FAILED, State.CANCELLED):
        error = operation.error or ErrorStatus(1, "operation cancelled")
        proto.error.CopyFrom(error_to_status_proto(error))
    return proto


def _parse_any(data: bytes) -> any_pb2.Any:
    """A stored payload (validated when written, so a failure here means a corrupt record: INTERNAL)."""
    try:
        return any_pb2.Any.FromString(data)
    except message.DecodeError as exc:
        raise OperationError("stored payload is not a serialized google.protobuf.Any") from exc
