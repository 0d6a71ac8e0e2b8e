"""Errors of the operation store and its worker: `libs.serving.errors` domain errors with operation-specific reasons.

Each one is a `KmonoError`, so the server kit turns it into a rich `google.rpc.Status` (AIP-193: `ErrorInfo`
with the reason below, plus `ResourceInfo`, `BadRequest` or `RetryInfo`), whether it escapes a servicer or
`OperationsServicer` aborts with it. Workers catch them by class.

| error | kit class (gRPC code) | reason | when |
|---|---|---|---|
| `OperationNotFoundError` | NotFoundError (NOT_FOUND) | OPERATION_NOT_FOUND | no operation of that name (never created, deleted, expired) |
| `InvalidOperationArgumentError` | InvalidArgumentError (INVALID_ARGUMENT) | INVALID_ARGUMENT | NaN progress, bad page token, filter, kind, payload, ... |
| `RequestIdConflictError` | AlreadyExistsError (ALREADY_EXISTS) | REQUEST_ID_REUSED | AIP-155 `request_id` reused with a different request |
| `InvalidTransitionError` | FailedPreconditionError (FAILED_PRECONDITION) | OPERATION_STATE | a change the state machine forbids, or a change to a done operation |
| `StaleAttemptError` | FailedPreconditionError (FAILED_PRECONDITION) | STALE_ATTEMPT | a worker acts for an attempt that is no longer the current one |
| `QueueFullError` | ResourceExhaustedError (RESOURCE_EXHAUSTED, with RetryInfo) | QUEUE_FULL (a service may name its own) | `create(max_queued=...)` / `create_queued` found the queue full |
| `JobDeadlineExceededError` | DeadlineExceededError (DEADLINE_EXCEEDED) | JOB_DEADLINE_EXCEEDED | a running job passed its worker's `job_timeout` (the operation FAILS with it) |
| `OperationError` itself | KmonoError (INTERNAL) | OPERATION_STORE | a corrupt stored record |

`request_id` reuse is ALREADY_EXISTS, as the kit's `AlreadyExistsError` documents for the whole project (HTTP
409, as most idempotency-key APIs answer); the message says to use a new `request_id` for a new request, and
`ResourceInfo` names the operation that holds the id.
"""

from __future__ import annotations

import grpc

from libs.serving.errors import (
    AlreadyExistsError,
    DeadlineExceededError,
    FailedPreconditionError,
    InvalidArgumentError,
    KmonoError,
    NotFoundError,
    ResourceExhaustedError,
)

__all__ = [
    "DEFAULT_QUEUE_RETRY_SECONDS",
    "OPERATION_RESOURCE_TYPE",
    "InvalidOperationArgumentError",
    "InvalidTransitionError",
    "JobDeadlineExceededError",
    "OperationError",
    "OperationNotFoundError",
    "QueueFullError",
    "RequestIdConflictError",
    "StaleAttemptError",
]

OPERATION_RESOURCE_TYPE = "google.longrunning.Operation"
DEFAULT_QUEUE_RETRY_SECONDS = 10.0
"""RetryInfo's delay when a queue is full: a fixed hint (jobs are not timed)."""


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


class QueueFullError(OperationError, ResourceExhaustedError):
    """`max_queued` operations of `kind` already wait; RESOURCE_EXHAUSTED with RetryInfo (`retry_after_seconds`)."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    default_reason = "QUEUE_FULL"

    def __init__(
        self,
        kind: str,
        max_queued: int,
        *,
        retry_after_seconds: float = DEFAULT_QUEUE_RETRY_SECONDS,
        reason: str = "QUEUE_FULL",
        noun: str | None = None,
    ) -> None:
        noun = noun or f"{kind} operations"
        super().__init__(
            retry_after_seconds,
            reason,
            f"{max_queued} {noun} are already queued; retry after {retry_after_seconds:g} s",
            metadata={"kind": kind, "maxQueued": str(max_queued)},
        )
        self.kind = kind
        self.max_queued = max_queued


class JobDeadlineExceededError(DeadlineExceededError):
    """A running job passed its deadline (`OperationWorker(job_timeout=...)`); its operation FAILS with this.
    Not an `OperationError`: the worker raises it out of the job, the store never does."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED
    default_reason = "JOB_DEADLINE_EXCEEDED"

    def __init__(self, timeout: float, step: int, total: int, stage: str) -> None:
        at = f"step {step} of {total}" if total else f"step {step}"
        super().__init__(
            f"the job ran past its deadline of {timeout:g} s at {at} ({stage})",
            metadata={"timeoutSeconds": f"{timeout:g}", "step": str(step), "stage": stage},
        )
        self.timeout = timeout
        self.step = step
        self.stage = stage
