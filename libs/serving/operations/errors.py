"""Errors raised by the operation store: `libs.serving.errors` domain errors with operation-specific reasons.

Each one is a `KmonoError`, so the server kit turns it into a rich `google.rpc.Status` (AIP-193: `ErrorInfo`
with the reason below, plus `ResourceInfo` or `BadRequest`), whether it escapes a servicer or
`OperationsServicer` aborts with it. Workers catch them by class.

| error | kit class (gRPC code) | reason | when |
|---|---|---|---|
| `OperationNotFoundError` | NotFoundError (NOT_FOUND) | OPERATION_NOT_FOUND | no operation of that name (never created, deleted, expired) |
| `InvalidOperationArgumentError` | InvalidArgumentError (INVALID_ARGUMENT) | INVALID_ARGUMENT | NaN progress, bad page token, filter, kind, payload, ... |
| `RequestIdConflictError` | AlreadyExistsError (ALREADY_EXISTS) | REQUEST_ID_REUSED | AIP-155 `request_id` reused with a different request |
| `InvalidTransitionError` | FailedPreconditionError (FAILED_PRECONDITION) | OPERATION_STATE | a change the state machine forbids, or a change to a done operation |
| `StaleAttemptError` | FailedPreconditionError (FAILED_PRECONDITION) | STALE_ATTEMPT | a worker acts for an attempt that is no longer the current one |
| `OperationError` itself | KmonoError (INTERNAL) | OPERATION_STORE | a corrupt stored record |

`request_id` reuse is ALREADY_EXISTS, as the kit's `AlreadyExistsError` documents for the whole project (HTTP
409, as most idempotency-key APIs answer); the message says to use a new `request_id` for a new request, and
`ResourceInfo` names the operation that holds the id.
"""

from __future__ import annotations

import grpc

from libs.serving.errors import (
    AlreadyExistsError,
    FailedPreconditionError,
    InvalidArgumentError,
    KmonoError,
    NotFoundError,
)

__all__ = [
    "OPERATION_RESOURCE_TYPE",
    "InvalidOperationArgumentError",
    "InvalidTransitionError",
    "OperationError",
    "OperationNotFoundError",
    "RequestIdConflictError",
    "StaleAttemptError",
]

OPERATION_RESOURCE_TYPE = "google.longrunning.Operation"


class OperationError(KmonoError):
    """Base of every error the operation store raises; raised itself only for a corrupt record."""

    code = grpc.StatusCode.INTERNAL
    default_reason = "OPERATION_STORE"


class OperationNotFoundError(OperationError, NotFoundError):
    """No operation has this name."""

    code = grpc.StatusCode.NOT_FOUND
    default_reason = "OPERATION_NOT_FOUND"

    def __init__(self, name: str) -> None:
        super().__init__(
            f"operation {name!r} not found", resource_type=OPERATION_RESOURCE_TYPE, resource_name=name
        )
        self.name = name


class InvalidOperationArgumentError(OperationError, InvalidArgumentError):
    """An argument is malformed or out of range; `field` names it (a request field where there is one)."""

    code = grpc.StatusCode.INVALID_ARGUMENT
    default_reason = "INVALID_ARGUMENT"

    def __init__(self, field: str, description: str) -> None:
        super().__init__([(field, description)], f"invalid {field}: {description}")
        self.field = field


class RequestIdConflictError(OperationError, AlreadyExistsError):
    """A `request_id` was reused for a request whose fingerprint differs from the first one (AIP-155)."""

    code = grpc.StatusCode.ALREADY_EXISTS
    default_reason = "REQUEST_ID_REUSED"

    def __init__(self, kind: str, request_id: str, existing_name: str) -> None:
        super().__init__(
            f"request_id {request_id!r} was already used for a different {kind} request ({existing_name}); "
            "use a new request_id for a new request",
            resource_type=OPERATION_RESOURCE_TYPE,
            resource_name=existing_name,
            metadata={"requestId": request_id, "kind": kind},
        )
        self.kind = kind
        self.request_id = request_id
        self.existing_name = existing_name


class InvalidTransitionError(OperationError, FailedPreconditionError):
    """The operation's current state does not allow the requested change."""

    code = grpc.StatusCode.FAILED_PRECONDITION
    default_reason = "OPERATION_STATE"


class StaleAttemptError(InvalidTransitionError):
    """A worker reported for an attempt that has since been superseded (the operation was re-queued)."""

    default_reason = "STALE_ATTEMPT"
