"""`google.longrunning.Operations` for grpc.aio, over an `OperationStore`.

Our choices:
- Store calls run in worker threads (`asyncio.to_thread`): SQLite may wait on another process's write lock,
  which must not block the event loop.
- Store errors (`OperationError`, all `libs.serving.errors.KmonoError`s) end the RPC here with the kit's rich
  status (`abort_with_exception`: ErrorInfo + ResourceInfo/BadRequest), so the servicer behaves the same with
  or without the kit's interceptor: unknown name -> NOT_FOUND, empty name, bad filter, page token or timeout
  -> INVALID_ARGUMENT, deleting an unfinished operation -> FAILED_PRECONDITION, a corrupt record -> INTERNAL.
- `ListOperations.name` is the collection: "" or "operations". `filter` is a conjunction (`AND`) of
  `done = true|false`, `kind = "video.create"` and `state = RUNNING` (QUEUED, RUNNING, SUCCEEDED, FAILED,
  CANCELLED); values may be quoted. Anything else is INVALID_ARGUMENT. `page_size` 0 means 50, at most
  1000; page tokens are opaque and tied to the filter (AIP-158). A filter longer than `MAX_FILTER_CHARS` or a
  page token longer than `MAX_PAGE_TOKEN_CHARS` (1,024 each: ours are under 200) is INVALID_ARGUMENT before it
  is parsed, and so is a token the store cannot use (a forged one whose numbers overflow SQLite's integers).
- `CancelOperation` is best effort: a queued operation is cancelled at once, a running one is flagged for its
  worker, a done one is left as it is (OK). `DeleteOperation` only removes done operations.
- `watch_operation` is the services' server-streaming `WatchOperation` (beside polling, AIP-151): it yields
  the operation at once and on every change, ending with `done`; an empty name is INVALID_ARGUMENT naming
  `name`. The store's change notification (`OperationStore.subscribe`: every write made through the same
  store object, i.e. by this server's own worker) wakes it: the write that ends the operation at once, so a
  client sees the end of a job without waiting for a poll; progress writes at most once per `interval`
  (a fast job's few progress writes are coalesced, not each sent while the job thread needs the CPU).
  Writes by other processes on the file are found by polling, every `interval` seconds after a change,
  doubling up to `max_interval` while nothing changes.
- `WaitOperation` returns when the store reports the operation's end, or polls for other processes' writes
  (from `poll_interval` doubling up to `max_poll_interval`). It waits at most `timeout`, or
  `default_wait_timeout` when the request has none, and always returns `deadline_margin` seconds before the
  RPC deadline (the client's, or the server kit's default deadline); it returns the latest state, done or not.
  A `timeout` outside what `google.protobuf.Duration` may hold (+-315,576,000,000 s, nanos of the same sign)
  is INVALID_ARGUMENT naming `timeout`; a valid one longer than `max_wait_timeout` (default one hour) is
  clamped to it, as AIP-151 lets a server bound the wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
from google.longrunning import operations_pb2, operations_pb2_grpc
from google.protobuf import duration_pb2, empty_pb2

from libs.serving.deadlines import remaining_seconds
from libs.serving.errors import InvalidArgumentError, abort_with_exception
from libs.serving.operations.convert import to_operation_proto
from libs.serving.operations.errors import InvalidOperationArgumentError, OperationError
from libs.serving.operations.store import DONE_STATES, Change, Operation, OperationStore, State
from libs.serving.server import ServiceRegistration

__all__ = [
    "MAX_FILTER_CHARS",
    "MAX_PAGE_TOKEN_CHARS",
    "OperationFilter",
    "OperationsServicer",
    "parse_filter",
    "watch_operation",
]

MAX_FILTER_CHARS = 1024
MAX_PAGE_TOKEN_CHARS = 1024
_MAX_DURATION_SECONDS = 315_576_000_000
"""The largest `google.protobuf.Duration`: 10,000 years."""

Handler = TypeVar("Handler", bound=Callable[..., Awaitable[Any]])

_TERM_RE = re.compile(
    r'^\s*(?P<field>[a-z_]+)\s*=\s*(?:"(?P<quoted>[^"\\]*)"|(?P<bare>[A-Za-z0-9_.\-]+))\s*$'
)
_AND_RE = re.compile(r"\s+AND\s+")


@dataclass(frozen=True)
class OperationFilter:
    """A parsed `ListOperations.filter`: None means "any"; an empty `states` matches nothing."""

    kind: str | None = None
    states: frozenset[State] | None = None


def parse_filter(text: str) -> OperationFilter:
    """Parse the supported subset of AIP-160 (see the module docstring)."""
    if len(text) > MAX_FILTER_CHARS:
        raise InvalidOperationArgumentError(
            "filter", f"at most {MAX_FILTER_CHARS} characters, got {len(text)}"
        )
    if not text.strip():
        return OperationFilter()
    kind: str | None = None
    states: frozenset[State] | None = None
    nothing = False
    for term in _AND_RE.split(text.strip()):
        match = _TERM_RE.match(term)
        if match is None:
            raise InvalidOperationArgumentError(
                "filter",
                f'unsupported term {term!r}; use done = true|false, kind = "...", state = NAME, joined by AND',
            )
        field = match["field"]
        value = match["quoted"] if match["quoted"] is not None else match["bare"]
        if field == "done":
            if value not in ("true", "false"):
                raise InvalidOperationArgumentError("filter", f"done must be true or false, got {value!r}")
            selected = DONE_STATES if value == "true" else frozenset(State) - DONE_STATES
        elif field == "state":
            try:
                selected = frozenset({State(value.upper())})
            except ValueError:
                raise InvalidOperationArgumentError("filter", f"unknown state {value!r}") from None
        elif field == "kind":
            if kind is not None and kind != value:
                nothing = True
            kind = value
            continue
        else:
            raise InvalidOperationArgumentError(
                "filter", f"cannot filter on {field!r}; supported: done, kind, state"
            )
        states = selected if states is None else states & selected
    if nothing:
        states = frozenset()
    return OperationFilter(kind=kind, states=states)


class _Changes:
    """What the store committed to one operation since `clear` (see `OperationStore.subscribe`): `changed` is set
    by any change, `ended` by the one that makes it done (or deletes it); `done` is the done operation (a done
    operation never changes again, so it is the latest state: no need to read it back)."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.changed = asyncio.Event()
        self.ended = asyncio.Event()
        self.done: Operation | None = None

    def notify(self, change: Change) -> None:
        """The store's callback (any thread)."""
        with contextlib.suppress(RuntimeError):  # the event loop is closed: nobody waits any more
            self._loop.call_soon_threadsafe(self._set, change)

    def _set(self, change: Change) -> None:
        self.changed.set()
        if change.state is None or change.state.done:
            self.ended.set()
            if change.operation is not None and change.operation.done:
                self.done = change.operation

    def clear(self) -> None:
        """Forget the changes seen so far: call it before reading the operation."""
        self.changed.clear()
        self.ended.clear()

    async def read(self, store: OperationStore, name: str) -> Operation:
        """The operation now: the done one the store reported, else read from the store."""
        self.clear()  # a change committed from here on wakes the waits that follow
        if self.done is not None:
            return self.done
        return await asyncio.to_thread(store.get, name)


async def _wait(event: asyncio.Event, timeout: float) -> None:
    """Until `event` is set or `timeout` seconds pass."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            await event.wait()


@contextlib.contextmanager
def _changes_of(store: OperationStore, name: str) -> Iterator[_Changes]:
    changes = _Changes()
    unsubscribe = store.subscribe(changes.notify, name=name)
    try:
        yield changes
    finally:
        unsubscribe()


async def watch_operation(
    store: OperationStore, name: str, *, interval: float = 0.05, max_interval: float = 0.5
) -> AsyncIterator[operations_pb2.Operation]:
    """`name` now, then again whenever its state, metadata, result or error changes, until it is done.

    A change this store object commits wakes the watch: the one that ends the operation at once, others (progress)
    at most once per `interval` seconds, coalesced. Writes by other processes are found by polling every
    `interval` seconds after a change, doubling up to `max_interval` while nothing changes."""
    if not name:
        raise InvalidArgumentError.single("name", "required: the operation name, operations/{operation_id}")
    loop = asyncio.get_running_loop()
    last = None
    wait = interval
    with _changes_of(store, name) as changes:
        while True:
            op = await changes.read(store, name)
            read_at = loop.time()
            key = (op.state, op.metadata, op.result, op.error)
            if key != last:
                last = key
                wait = interval
                yield to_operation_proto(op)
            if op.done:
                return
            await _wait(changes.changed, wait)
            hold = read_at + interval - loop.time()
            if hold > 0:  # woken by progress: no sooner than `interval` after the last read, unless it ended
                await _wait(changes.ended, hold)
            wait = min(wait * 2, max_interval)


def _maps_operation_errors(handler: Handler) -> Handler:
    """End the RPC with the rich status of an `OperationError` the handler raises (see `libs.serving.errors`)."""

    @functools.wraps(handler)
    async def wrapper(self: OperationsServicer, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await handler(self, request, context)
        except OperationError as exc:
            await abort_with_exception(context, exc)

    return wrapper  # type: ignore[return-value]


def _require_name(name: str) -> str:
    if not name:
        raise InvalidOperationArgumentError("name", "required")
    return name


class OperationsServicer(operations_pb2_grpc.OperationsServicer):
    """The standard Operations service (AIP-151) for the operations in `store`."""

    def __init__(
        self,
        store: OperationStore,
        *,
        default_wait_timeout: float = 60.0,
        max_wait_timeout: float = 3600.0,
        poll_interval: float = 0.05,
        max_poll_interval: float = 1.0,
        deadline_margin: float = 0.1,
    ) -> None:
        if poll_interval <= 0 or max_poll_interval < poll_interval:
            raise ValueError("need 0 < poll_interval <= max_poll_interval")
        self.store = store
        self.default_wait_timeout = default_wait_timeout
        self.max_wait_timeout = max_wait_timeout
        self.poll_interval = poll_interval
        self.max_poll_interval = max_poll_interval
        self.deadline_margin = deadline_margin

    def add_to_server(self, server: grpc.aio.Server) -> None:
        operations_pb2_grpc.add_OperationsServicer_to_server(self, server)

    def registration(self) -> ServiceRegistration:
        """This servicer as a `ServiceRegistration` (health, reflection and the concurrency cap know it)."""
        return ServiceRegistration.from_descriptor(
            operations_pb2.DESCRIPTOR.services_by_name["Operations"], self.add_to_server
        )

    async def _get_proto(self, name: str) -> operations_pb2.Operation:
        return to_operation_proto(await asyncio.to_thread(self.store.get, name))

    @_maps_operation_errors
    async def GetOperation(
        self, request: operations_pb2.GetOperationRequest, context: grpc.aio.ServicerContext
    ) -> operations_pb2.Operation:
        return await self._get_proto(_require_name(request.name))

    @_maps_operation_errors
    async def ListOperations(
        self, request: operations_pb2.ListOperationsRequest, context: grpc.aio.ServicerContext
    ) -> operations_pb2.ListOperationsResponse:
        if request.name not in ("", "operations"):
            raise InvalidOperationArgumentError(
                "name", f"unknown collection {request.name!r}; use 'operations'"
            )
        where = parse_filter(request.filter)
        if len(request.page_token) > MAX_PAGE_TOKEN_CHARS:
            raise InvalidOperationArgumentError("page_token", "not a page token this server issued")
        try:
            operations, token = await asyncio.to_thread(
                self.store.list,
                kind=where.kind,
                states=where.states,
                page_size=request.page_size,
                page_token=request.page_token,
            )
        except (OverflowError, RecursionError):  # a forged token: numbers past SQLite's, or nested too deep
            raise InvalidOperationArgumentError("page_token", "not a page token this server issued") from None
        protos = [to_operation_proto(operation) for operation in operations]
        return operations_pb2.ListOperationsResponse(operations=protos, next_page_token=token)

    @_maps_operation_errors
    async def DeleteOperation(
        self, request: operations_pb2.DeleteOperationRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        await asyncio.to_thread(self.store.delete, _require_name(request.name))
        return empty_pb2.Empty()

    @_maps_operation_errors
    async def CancelOperation(
        self, request: operations_pb2.CancelOperationRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        await asyncio.to_thread(self.store.cancel, _require_name(request.name))
        return empty_pb2.Empty()

    @_maps_operation_errors
    async def WaitOperation(
        self, request: operations_pb2.WaitOperationRequest, context: grpc.aio.ServicerContext
    ) -> operations_pb2.Operation:
        name = _require_name(request.name)
        timeout = self.default_wait_timeout
        if request.HasField("timeout"):
            timeout = _wait_seconds(request.timeout)
        timeout = min(timeout, self.max_wait_timeout)
        for remaining in (context.time_remaining(), remaining_seconds()):
            if remaining is not None:
                timeout = min(timeout, max(0.0, remaining - self.deadline_margin))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        interval = self.poll_interval
        with _changes_of(self.store, name) as changes:
            while True:
                proto = to_operation_proto(await changes.read(self.store, name))
                left = deadline - loop.time()
                if proto.done or left <= 0:
                    return proto
                await _wait(changes.ended, min(interval, left))
                interval = min(interval * 2, self.max_poll_interval)


def _wait_seconds(duration: duration_pb2.Duration) -> float:
    """A `WaitOperation.timeout` in seconds; INVALID_ARGUMENT naming `timeout` when it is no valid Duration or
    is negative."""
    seconds, nanos = duration.seconds, duration.nanos
    valid = (
        abs(seconds) <= _MAX_DURATION_SECONDS
        and abs(nanos) <= 999_999_999
        and not (seconds and nanos and (seconds < 0) != (nanos < 0))
    )
    if not valid:
        raise InvalidOperationArgumentError(
            "timeout",
            f"not a valid google.protobuf.Duration (seconds within +-{_MAX_DURATION_SECONDS}, nanos within "
            "+-999999999 and of the same sign)",
        )
    if seconds < 0 or nanos < 0:
        raise InvalidOperationArgumentError("timeout", "must not be negative")
    return seconds + nanos / 1e9
