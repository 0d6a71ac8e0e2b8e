"""The current RPC's deadline, visible to engines without passing a context around.

The server interceptor opens a `deadline_scope` around each handler with the client's deadline (or the
server's `default_deadline_seconds` when the client set none). Engine code anywhere below the handler reads
`remaining_seconds()` to pass a timeout on to downstream calls or to stop a loop early. The value lives in a
`contextvars.ContextVar`, so it follows the RPC's task and is copied into `asyncio.to_thread` workers, and
concurrent RPCs never see each other's deadline.

Deadlines are absolute `time.monotonic()` values: they do not drift when the wall clock is adjusted.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from contextvars import ContextVar

_deadline: ContextVar[float | None] = ContextVar("kmono_rpc_deadline", default=None)


def current_deadline() -> float | None:
    """The absolute `time.monotonic()` deadline of the current RPC, or None when it has none."""
    return _deadline.get()


def remaining_seconds() -> float | None:
    """Seconds left before the current RPC's deadline (never negative), or None when it has none."""
    deadline = _deadline.get()
    if deadline is None:
        return None
    return max(0.0, deadline - time.monotonic())


@contextlib.contextmanager
def deadline_scope(deadline: float | None) -> Iterator[float | None]:
    """Run the block under `deadline` (absolute monotonic seconds); yields the effective deadline.

    A scope can only shorten the deadline it is nested in, never extend it: the effective deadline is the
    earlier of the two. `None` keeps the enclosing deadline.
    """
    enclosing = _deadline.get()
    effective = deadline if enclosing is None else enclosing if deadline is None else min(deadline, enclosing)
    token = _deadline.set(effective)
    try:
        yield effective
    finally:
        _deadline.reset(token)
