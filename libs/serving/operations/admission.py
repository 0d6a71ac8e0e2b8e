"""Admission of new operations: a bounded queue per kind (backpressure), for every long-running service.

    depth = check_queue(store, KIND, max_queued, request.request_id)  # before validating: a cheap refusal
    ...                                                                # validate, build the QUEUED metadata
    op, created = create_queued(
        store, KIND, request_bytes, request.request_id or None, request_bytes, metadata=..., max_queued=max_queued
    )

Our choices:
- A full queue is RESOURCE_EXHAUSTED with RetryInfo (`QueueFullError`: reason QUEUE_FULL unless the service
  names its own, a fixed retry hint of `DEFAULT_QUEUE_RETRY_SECONDS`, since jobs are not timed).
- The limit is checked inside the create's own transaction (`OperationStore.create(max_queued=...)`), so
  concurrent creates never overshoot it and a refused request leaves nothing behind: there is no
  create-then-roll-back, and no second count.
- AIP-155 retries are never refused: a `request_id` that already names an operation returns it
  (`created=False`) even when the queue is full. That is why `check_queue`, the fast path before a request is
  validated, refuses only requests without a `request_id`; `create_queued` decides for the others.
"""

from __future__ import annotations

from libs.serving.operations.errors import DEFAULT_QUEUE_RETRY_SECONDS, QueueFullError
from libs.serving.operations.store import Operation, OperationStore

__all__ = ["check_queue", "create_queued"]


def check_queue(
    store: OperationStore,
    kind: str,
    max_queued: int,
    request_id: str | None = None,
    *,
    retry_after_seconds: float = DEFAULT_QUEUE_RETRY_SECONDS,
    reason: str = "QUEUE_FULL",
    noun: str | None = None,
) -> int:
    """The number of QUEUED operations of `kind` (a new one's queue position); raises `QueueFullError` when
    it is `max_queued` or more and there is no `request_id` (with one, `create_queued` decides)."""
    depth = store.queue_depth(kind)
    if depth >= max_queued and not request_id:
        raise QueueFullError(
            kind, max_queued, retry_after_seconds=retry_after_seconds, reason=reason, noun=noun
        )
    return depth


def create_queued(
    store: OperationStore,
    kind: str,
    request: bytes,
    request_id: str | None = None,
    request_fingerprint: str | bytes | None = None,
    *,
    metadata: bytes | None = None,
    max_queued: int,
    retry_after_seconds: float = DEFAULT_QUEUE_RETRY_SECONDS,
    reason: str = "QUEUE_FULL",
    noun: str | None = None,
) -> tuple[Operation, bool]:
    """`store.create` (same arguments and result) that refuses a new operation with `QueueFullError` when
    `max_queued` operations of `kind` are QUEUED already; a known `request_id` returns its operation anyway."""
    try:
        return store.create(
            kind, request, request_id, request_fingerprint, metadata=metadata, max_queued=max_queued
        )
    except QueueFullError:
        raise QueueFullError(
            kind, max_queued, retry_after_seconds=retry_after_seconds, reason=reason, noun=noun
        ) from None
