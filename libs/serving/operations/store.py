"""A durable store of long-running operations (AIP-151) and the job queue behind them, over SQLite.

One SQLite file holds every operation of a server: its request, state, progress, latest metadata and
result or error. Request handlers `create` operations; workers `claim_next` one, report `update_progress`,
and end it with `finish`, `fail` or `mark_cancelled`; clients read it through `OperationsServicer`.

State machine (anything else raises `InvalidTransitionError`; a done operation never changes again):

    QUEUED  --claim_next-->      RUNNING   (attempts += 1)
    QUEUED  --cancel-->          CANCELLED
    QUEUED  --fail-->            FAILED    (e.g. rejected before it ran)
    RUNNING --finish-->          SUCCEEDED
    RUNNING --fail-->            FAILED
    RUNNING --mark_cancelled-->  CANCELLED (the worker saw `is_cancel_requested`)
    RUNNING --requeue/recover--> QUEUED    (the worker gave it back, or died; CANCELLED if cancel was requested)

Our choices, each tested beside this file:
- **Durability and concurrency.** WAL journal, a busy timeout, one connection per thread (and per process: a
  connection inherited across `fork` is abandoned, never used or closed). Every write is one `BEGIN IMMEDIATE`
  transaction, so writers from any thread or process are serialized by SQLite itself and `claim_next` hands
  each job to exactly one worker. Every committed write survives a kill -9 of the process (WAL); the writes
  that accept or end work (`create`, `finish`, `fail`, `cancel`, `mark_cancelled`, `requeue`, `recover`,
  `delete`, `expire`) are also flushed to disk before they return (`synchronous=FULL`: they survive power
  loss), while `claim_next`, `update_progress` and `heartbeat` are not (`progress_synchronous=NORMAL`: no
  fsync; after a power loss such a write may be lost, which leaves the operation QUEUED or with older
  progress, never inconsistent; the next durable write flushes them too). The file must be on a local disk.
- **Change notification.** `subscribe(callback, name=...)` calls `callback(Change)` (name, kind, new state, the
  operation as the write left it) on the writing thread after each committed change this store object makes:
  watchers and idle workers wake at once instead of polling. Writes by other processes on the same file are
  not seen, so a watcher still polls, slowly, for those.
- **Backpressure.** `create(max_queued=n)` refuses a new operation with `QueueFullError` (RESOURCE_EXHAUSTED
  with RetryInfo) while n operations of its kind are QUEUED, counted in the insert's own transaction, so
  concurrent creates never overshoot and a refusal leaves nothing behind; a known `request_id` still returns
  its operation. Servicers call it through `admission.create_queued` (and `check_queue` before validating).
- **Endings** (`finish`, `fail`, `mark_cancelled`) may set the worker's final metadata in the same write.
- **Metadata of the store's own changes.** The metadata is the service's message (packed Any), which the store
  cannot read; so that no change leaves it stale (a job cancelled while QUEUED still saying QUEUED with a queue
  position, one failed by `recover` still saying RUNNING), the service registers a hook per kind
  (`set_metadata_hook`; `OperationWorker` does it for its kind): every change the store makes without the
  worker's metadata (`cancel` of a QUEUED operation, `requeue`/`recover` to QUEUED, CANCELLED or FAILED, and an
  ending called without `metadata=`) asks it for the new metadata in the same write. We chose a hook over
  patching a shared `state` field in the bytes: the store stays free of the services' message layouts, and the
  service also sets `end_time`, clears `queue_position` and names the stage. Without a hook (or through another
  store object, e.g. another process) the metadata is left as it was.
- **Idempotency (AIP-155).** `(kind, request_id)` is unique. `create` with a known pair returns the existing
  operation (`created=False`) whatever its state, as long as the request fingerprint matches (by default
  SHA-256 of the request bytes; pass `request_fingerprint` when serialization is not canonical, e.g. maps);
  otherwise `RequestIdConflictError` (ALREADY_EXISTS). An empty `request_id` means none (proto3 default).
  Once an operation expires its `request_id` may be used again.
- **Ordering.** `create_time` is strictly increasing within a file (a creation in the same nanosecond as the
  last one is moved one nanosecond later), so (create_time, name) is both the list order and the FIFO order
  of the queue.
- **Names.** `operations/<prefix>-<uuid4 hex>`, the prefix being the first dotted part of the kind
  (`video.create` -> `operations/video-3f2c...`).
- **Progress** is clamped to [0, 1] and monotonic: a lower value is ignored (metadata is still replaced, it is
  always the latest the worker sent). A re-queued operation keeps its high-water mark. `finish` sets 1. The
  store also keeps how far the current attempt itself got (reset by each claim), for `recover`'s blame.
- **Stale workers.** `claim_next` returns the operation with its new `attempts`; a worker passes it back as
  `attempt=` to `update_progress`, `heartbeat`, `finish`, `fail`, `mark_cancelled` and `requeue`. Once the
  operation has been re-queued (and perhaps claimed again), those calls raise `StaleAttemptError`, so a job
  is never finished twice. Without `attempt` only the state is checked (RUNNING).
- **Cancellation** (best effort, as google.longrunning): QUEUED -> CANCELLED at once; RUNNING -> the
  `cancel_requested` flag, which the worker polls with `is_cancel_requested` (true also when the operation was
  force-deleted) before it calls `mark_cancelled`; a worker that finishes anyway may still `finish`. On a done
  operation `cancel` is a no-op.
- **Recovery.** `recover()` at start-up puts every RUNNING operation back to QUEUED (its worker died with the
  previous process). For several worker processes on one file, each claim carries a lease (`lease_seconds`,
  renewed by `update_progress` and `heartbeat`) and `recover(expired_only=True)` re-queues only operations
  whose lease ran out, so it never steals a live worker's job. A RUNNING operation that already had a
  cancellation request becomes CANCELLED instead.
- **Poison jobs vs killed servers.** A job that crashes its worker (a segfault in native code, an OOM of its
  own making, `os._exit` in a library) must not crash-loop the service; a healthy job must not fail because
  the server was killed from outside (an operator's kill -9, the OOM killer of the whole pod, a node drain) while
  it ran. From inside the dead process both look the same, so `recover` blames by evidence, our choice:
  (1) an attempt that died while its worker was shutting down (`mark_stopping`, which `OperationWorker.stop`
  writes: e.g. SIGKILL after a deploy's grace period) is not counted; (2) otherwise the death counts as one
  more crash *in a row* only when this attempt got no further (by its own progress) than the previous crashed
  attempt; an attempt that got further starts a new run of one. A job that kills its worker does so at the
  same point each time (the same input, the same step), so its run grows by one per attempt and it FAILS
  (INTERNAL, "died during N attempts in a row, each getting no further than the one before") after
  `max_attempts` (default 5) attempts; kills from outside land at random points, so a run of N attempts each
  dying no later than the last has probability 1/N! (1/120 for N = 5) for a job killed at uniformly random
  moments, and a job that keeps getting further is never failed. Its cost: kills that all land before the job
  reports its first step look like a job that dies at its start. To make the crash point exact, a worker
  re-running a job that has crashed before (`Operation.crashes`) reports every step, not throttled; the first
  attempt's progress is throttled, so where steps are faster than the progress interval its recorded point can
  lag and the poison job then FAILS one attempt later (`max_attempts` + 1).
  A graceful `requeue` changes nothing of this.
- **Retention.** A done operation gets `expire_time = finish_time + retention_seconds` (7 days by default);
  `expire()` deletes those past it. `delete` refuses an operation that is not done unless `force=True`
  (clients cancel first); unfinished operations never expire.
- **Payloads.** `request` is opaque bytes (the service's serialized request message). `metadata`, `result`
  and each error detail must be a serialized `google.protobuf.Any` (`convert.pack_any`; checked on write with
  INVALID_ARGUMENT), so `to_operation_proto` copies them into `google.longrunning.Operation` unchanged and
  the store needs no registry of the services' message types.
- **Time.** Timestamps are float seconds since the epoch (nanoseconds inside the file); `clock` is injectable.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import json
import logging
import math
import os
import re
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import any_pb2, message
from google.rpc import status_pb2

from libs.serving.operations.errors import (
    InvalidOperationArgumentError,
    InvalidTransitionError,
    OperationNotFoundError,
    QueueFullError,
    RequestIdConflictError,
    StaleAttemptError,
)

__all__ = [
    "DONE_STATES",
    "Change",
    "DEFAULT_PAGE_SIZE",
    "MAX_PAGE_SIZE",
    "ErrorStatus",
    "Operation",
    "OperationStore",
    "State",
    "is_legal_transition",
]

logger = logging.getLogger(__name__)

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
DEFAULT_RETENTION_SECONDS = 7 * 24 * 3600.0
DEFAULT_LEASE_SECONDS = 300.0
SCHEMA_VERSION = 2

_NS = 1_000_000_000
_KIND_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.\-]{0,127}$")
_CANCELLED_CODE = grpc.StatusCode.CANCELLED.value[0]
_INTERNAL_CODE = grpc.StatusCode.INTERNAL.value[0]


class State(enum.StrEnum):
    """Lifecycle state of an operation; SUCCEEDED, FAILED and CANCELLED are final ("done")."""

    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def done(self) -> bool:
        return self in DONE_STATES


DONE_STATES: frozenset[State] = frozenset({State.SUCCEEDED, State.FAILED, State.CANCELLED})

_TRANSITIONS: dict[State, frozenset[State]] = {
    State.QUEUED: frozenset({State.RUNNING, State.CANCELLED, State.FAILED}),
    State.RUNNING: frozenset({State.QUEUED, State.SUCCEEDED, State.FAILED, State.CANCELLED}),
    State.SUCCEEDED: frozenset(),
    State.FAILED: frozenset(),
    State.CANCELLED: frozenset(),
}


def is_legal_transition(src: State, dst: State) -> bool:
    """Whether the state machine allows `src -> dst`."""
    return dst in _TRANSITIONS[State(src)]


@dataclass(frozen=True, slots=True)
class ErrorStatus:
    """Why an operation failed: a `google.rpc.Code` value, a developer-facing message and optional details
    (each a serialized `google.protobuf.Any`, e.g. a packed `google.rpc.ErrorInfo`)."""

    code: int
    message: str
    details: tuple[bytes, ...] = ()


@dataclass(frozen=True, slots=True)
class Operation:
    """One stored operation, as read at one moment (a snapshot: re-read it to see changes)."""

    name: str
    kind: str
    state: State
    request: bytes
    request_id: str | None
    progress: float
    metadata: bytes | None
    result: bytes | None
    error: ErrorStatus | None
    attempts: int
    cancel_requested: bool
    worker_id: str | None
    create_time: float
    update_time: float
    start_time: float | None
    finish_time: float | None
    expire_time: float | None
    lease_expire_time: float | None
    crashes: int = 0
    """Attempts in a row during which the worker process died and the job is blamed (see `recover`)."""

    @property
    def done(self) -> bool:
        return self.state in DONE_STATES


@dataclass(frozen=True, slots=True)
class Change:
    """One committed change of an operation, as `subscribe` callbacks receive it."""

    name: str
    kind: str
    state: State | None
    """The state after the change; None: the record was deleted."""
    operation: Operation | None = None
    """The operation as the change left it (None: deleted)."""


MetadataHook = Callable[[Operation, State], bytes | None]
"""`(operation before the change, new state) -> metadata`: see `OperationStore.set_metadata_hook`."""

_SYNCHRONOUS_LEVELS = ("OFF", "NORMAL", "FULL", "EXTRA")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS operations (
    name                TEXT PRIMARY KEY,
    kind                TEXT NOT NULL,
    request_id          TEXT,
    request_fingerprint TEXT NOT NULL,
    request             BLOB NOT NULL,
    state               TEXT NOT NULL,
    progress            REAL NOT NULL DEFAULT 0,
    metadata            BLOB,
    result              BLOB,
    error_code          INTEGER,
    error_message       TEXT,
    error_details       BLOB,
    attempts            INTEGER NOT NULL DEFAULT 0,
    cancel_requested    INTEGER NOT NULL DEFAULT 0,
    worker_id           TEXT,
    create_ns           INTEGER NOT NULL,
    update_ns           INTEGER NOT NULL,
    start_ns            INTEGER,
    finish_ns           INTEGER,
    expire_ns           INTEGER,
    lease_ns            INTEGER,
    lease_duration_ns   INTEGER,
    crashes             INTEGER NOT NULL DEFAULT 0,
    crash_progress      REAL,
    attempt_progress    REAL NOT NULL DEFAULT 0,
    stopping            INTEGER NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX IF NOT EXISTS operations_request_id ON operations (kind, request_id)
    WHERE request_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS operations_order ON operations (create_ns, name);
CREATE INDEX IF NOT EXISTS operations_queue ON operations (state, create_ns, name);
CREATE INDEX IF NOT EXISTS operations_kind_queue ON operations (kind, state, create_ns, name);
CREATE INDEX IF NOT EXISTS operations_expiry ON operations (expire_ns) WHERE expire_ns IS NOT NULL;
"""

# Columns added after schema version 1, with their definitions: a version-1 file gets them on open.
_ADDED_COLUMNS = {
    "crashes": "INTEGER NOT NULL DEFAULT 0",
    "crash_progress": "REAL",
    "attempt_progress": "REAL NOT NULL DEFAULT 0",
    "stopping": "INTEGER NOT NULL DEFAULT 0",
}


class OperationStore:
    """Long-running operations in one SQLite file; safe across threads and processes.

    Args:
        path: the database file (created with its parent directories if missing).
        retention_seconds: how long a done operation is kept before `expire` deletes it.
        lease_seconds: default lease of a claim (see `recover(expired_only=True)`).
        max_attempts: `recover` fails an operation whose worker died this many attempts in a row, each attempt
            getting no further than the one before (see "Poison jobs" above; None: never).
        busy_timeout_seconds: how long a writer waits for another writer's lock before `sqlite3.OperationalError`.
        synchronous: SQLite `synchronous` pragma of the writes that accept or end work; FULL survives power
            loss, NORMAL survives process crashes (kill -9) only.
        progress_synchronous: the same for `claim_next`, `update_progress` and `heartbeat` (never stronger
            than `synchronous`); NORMAL: no fsync.
        clock: returns the current time in seconds since the epoch.
        worker_id: recorded on each claim; defaults to `<hostname>:<pid>`.
        on_delete: called with the name of each operation whose record `delete` or `expire` removed (e.g. to
            remove its artifacts).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        retention_seconds: float = DEFAULT_RETENTION_SECONDS,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        max_attempts: int | None = 5,
        busy_timeout_seconds: float = 30.0,
        synchronous: str = "FULL",
        progress_synchronous: str = "NORMAL",
        clock: Callable[[], float] = time.time,
        worker_id: str | None = None,
        on_delete: Callable[[str], None] | None = None,
    ) -> None:
        if str(path) in ("", ":memory:") or str(path).startswith("file:"):
            raise ValueError("OperationStore needs a file path (each thread opens its own connection)")
        if retention_seconds < 0 or lease_seconds <= 0:
            raise ValueError("retention_seconds must be >= 0 and lease_seconds > 0")
        if max_attempts is not None and max_attempts < 1:
            raise ValueError("max_attempts must be >= 1 or None")
        for mode in (synchronous, progress_synchronous):
            if mode.upper() not in _SYNCHRONOUS_LEVELS:
                raise ValueError(f"unknown synchronous mode {mode!r}")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.retention_seconds = float(retention_seconds)
        self.lease_seconds = float(lease_seconds)
        self.max_attempts = max_attempts
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}"
        self._busy_timeout = float(busy_timeout_seconds)
        self._synchronous = synchronous.upper()
        self._progress_synchronous = min(
            progress_synchronous.upper(), self._synchronous, key=_SYNCHRONOUS_LEVELS.index
        )
        self._subscribers: dict[str | None, list[Callable[[Change], None]]] = {}
        self._metadata_hooks: dict[str, MetadataHook] = {}
        self._clock = clock
        self._on_delete = on_delete
        self._lock = threading.Lock()
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._abandoned: list[sqlite3.Connection] = []
        self._pid = os.getpid()
        self._closed = False
        self._init_schema()

    # ---- connections and transactions -------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, timeout=self._busy_timeout, isolation_level=None, check_same_thread=False
        )
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            conn.close()
            raise RuntimeError(f"could not switch {self.path} to WAL journal mode (got {mode!r})")
        conn.execute(f"PRAGMA synchronous = {self._synchronous}")
        self._local.synchronous = self._synchronous
        return conn

    def _conn(self) -> sqlite3.Connection:
        if self._closed:
            raise RuntimeError("OperationStore is closed")
        if os.getpid() != self._pid:
            # Forked: the parent's connections must be neither used nor closed here (closing one could
            # checkpoint or delete the parent's WAL); keep them referenced and start afresh.
            with self._lock:
                self._abandoned.extend(self._connections)
                self._connections = []
                self._local = threading.local()
                self._pid = os.getpid()
                self._subscribers = {}  # the parent's (its threads and event loops do not exist here)
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    @contextmanager
    def _tx(self, *, durable: bool = True) -> Iterator[sqlite3.Connection]:
        """One write transaction; BEGIN IMMEDIATE takes the write lock up front (no upgrade deadlocks).

        `durable`: committed with `synchronous` (else `progress_synchronous`). After the commit, subscribers
        hear of every operation the transaction changed (`_changed`)."""
        conn = self._conn()
        mode = self._synchronous if durable else self._progress_synchronous
        if self._local.synchronous != mode:
            conn.execute(f"PRAGMA synchronous = {mode}")
            self._local.synchronous = mode
        changes: list[Change] = []
        self._local.changes = changes
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        finally:
            self._local.changes = None
        if changes:
            self._notify(changes)

    def _changed(self, name: str, kind: str, operation: Operation | None) -> None:
        """Record a change of the current transaction (`operation` as it left it, None: deleted), for subscribers
        once it commits."""
        state = None if operation is None else operation.state
        self._local.changes.append(Change(name, kind, state, operation))

    def subscribe(self, callback: Callable[[Change], None], *, name: str | None = None) -> Callable[[], None]:
        """Call `callback(change)` after each committed change of operation `name` (of every operation when
        None) that this store object makes, in this process; returns the function that unsubscribes.

        The callback runs on the writing thread right after the commit, so it must be quick and thread-safe
        (e.g. `loop.call_soon_threadsafe(event.set)`); an exception it raises is logged, not raised. Changes
        made by other processes on the same file are not reported: poll for those."""
        with self._lock:
            self._subscribers.setdefault(name, []).append(callback)

        def unsubscribe() -> None:
            with self._lock:
                callbacks = self._subscribers.get(name, [])
                if callback in callbacks:
                    callbacks.remove(callback)
                if not callbacks:
                    self._subscribers.pop(name, None)

        return unsubscribe

    def set_metadata_hook(self, kind: str, hook: MetadataHook | None) -> None:
        """Let the service of `kind` write the metadata of the state changes the store makes on its own.

        `hook(op, state)` gets the operation as it was before the change and the state it is moving to, and
        returns the new metadata (a serialized Any) or None to keep the old. It is called, inside the write's
        transaction, for: `cancel` of a QUEUED operation, `requeue` and `recover` (QUEUED again, or CANCELLED
        or FAILED), and `finish`, `fail` or `mark_cancelled` called without `metadata=`. It must be quick and
        must not touch the store; an exception it raises (or bytes that are no Any) is logged and the old
        metadata kept, so it never blocks an ending. None removes the hook. Hooks live in this store object:
        a change made through another store object (another process) does not call them."""
        with self._lock:
            if hook is None:
                self._metadata_hooks.pop(kind, None)
            else:
                self._metadata_hooks[kind] = hook

    def _metadata_for(self, row: sqlite3.Row, state: State) -> bytes | None:
        """The metadata the kind's hook gives `row` once it is `state`; None: keep the old (no hook, or it failed)."""
        hook = self._metadata_hooks.get(row["kind"])
        if hook is None:
            return None
        try:
            return _any_bytes(hook(_to_operation(row), state), "metadata")
        except Exception:
            logger.exception(
                "the metadata hook of %s failed; %s keeps its metadata", row["kind"], row["name"]
            )
            return None

    def _notify(self, changes: list[Change]) -> None:
        with self._lock:
            if not self._subscribers:
                return
            calls = [
                (callback, change)
                for change in changes
                for key in (None, change.name)
                for callback in self._subscribers.get(key, ())
            ]
        for callback, change in calls:
            try:
                callback(change)
            except Exception:
                logger.exception("a subscriber of %s failed", change.name)

    def _init_schema(self) -> None:
        with self._tx() as conn:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise RuntimeError(
                    f"{self.path} has schema version {version}; this code knows up to {SCHEMA_VERSION}"
                )
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            present = {row["name"] for row in conn.execute("PRAGMA table_info(operations)")}
            for column, definition in _ADDED_COLUMNS.items():
                if column not in present:
                    conn.execute(f"ALTER TABLE operations ADD COLUMN {column} {definition}")
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def close(self) -> None:
        """Close every connection this store opened in this process."""
        with self._lock:
            self._closed = True
            connections, self._connections = self._connections, []
            if os.getpid() != self._pid:
                self._abandoned.extend(connections)
                return
        for conn in connections:
            conn.close()

    def __enter__(self) -> OperationStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- helpers ------------------------------------------------------------------------------------------

    def _now_ns(self, now: float | None = None) -> int:
        return int((self._clock() if now is None else now) * _NS)

    @staticmethod
    def _row(conn: sqlite3.Connection, name: str) -> sqlite3.Row:
        row = conn.execute("SELECT * FROM operations WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise OperationNotFoundError(name)
        return row

    def _set(self, conn: sqlite3.Connection, name: str, now_ns: int, **columns: Any) -> Operation:
        columns["update_ns"] = now_ns
        assignments = ", ".join(f"{column} = ?" for column in columns)
        conn.execute(f"UPDATE operations SET {assignments} WHERE name = ?", (*columns.values(), name))
        operation = _to_operation(self._row(conn, name))
        self._changed(name, operation.kind, operation)
        return operation

    @staticmethod
    def _check_transition(row: sqlite3.Row, dst: State) -> None:
        src = State(row["state"])
        if not is_legal_transition(src, dst):
            what = "done" if src.done else src.value
            raise InvalidTransitionError(f"operation {row['name']} is {what}; it cannot become {dst.value}")

    @staticmethod
    def _check_attempt(row: sqlite3.Row, attempt: int | None) -> None:
        """A worker holding `attempt` may act only while that attempt is the RUNNING one."""
        if attempt is None:
            return
        state = State(row["state"])
        if row["attempts"] != attempt or state is State.QUEUED:
            raise StaleAttemptError(
                f"operation {row['name']}: attempt {attempt} is stale "
                f"(now {state.value}, attempt {row['attempts']})"
            )

    def _finish_columns(
        self, state: State, now_ns: int, metadata: bytes | None = None, **columns: Any
    ) -> dict[str, Any]:
        if metadata is not None:
            columns["metadata"] = metadata
        return {
            "state": state.value,
            "finish_ns": now_ns,
            "expire_ns": now_ns + int(self.retention_seconds * _NS),
            "lease_ns": None,
            **columns,
        }

    # ---- creation and reads -------------------------------------------------------------------------------

    def create(
        self,
        kind: str,
        request: bytes,
        request_id: str | None = None,
        request_fingerprint: str | bytes | None = None,
        *,
        metadata: bytes | None = None,
        max_queued: int | None = None,
    ) -> tuple[Operation, bool]:
        """Enqueue a new QUEUED operation, or return the one already created for `(kind, request_id)`.

        Returns `(operation, created)`. Raises `RequestIdConflictError` when `request_id` was used for a
        request with a different fingerprint, `InvalidOperationArgumentError` for a malformed kind, and, with
        `max_queued`, `QueueFullError` when that many operations of `kind` are QUEUED already (checked in the
        same transaction as the insert; a known `request_id` still returns its operation when the queue is full).
        """
        if not isinstance(kind, str) or not _KIND_RE.match(kind):
            raise InvalidOperationArgumentError("kind", f"{kind!r} is not a valid operation kind")
        request = bytes(request)
        request_id = request_id or None
        fingerprint = _fingerprint(request, request_fingerprint)
        with self._tx() as conn:
            if request_id is not None:
                row = conn.execute(
                    "SELECT * FROM operations WHERE kind = ? AND request_id = ?", (kind, request_id)
                ).fetchone()
                if row is not None:
                    if row["request_fingerprint"] != fingerprint:
                        raise RequestIdConflictError(kind, request_id, row["name"])
                    return _to_operation(row), False
            if max_queued is not None:
                depth = conn.execute(
                    "SELECT COUNT(*) FROM operations WHERE state = ? AND kind = ?", (State.QUEUED.value, kind)
                ).fetchone()[0]
                if depth >= max_queued:
                    raise QueueFullError(kind, max_queued)
            now_ns = self._now_ns()
            last_ns = conn.execute("SELECT MAX(create_ns) FROM operations").fetchone()[0]
            create_ns = now_ns if last_ns is None else max(now_ns, last_ns + 1)
            name = f"operations/{_name_prefix(kind)}-{uuid.uuid4().hex}"
            conn.execute(
                "INSERT INTO operations (name, kind, request_id, request_fingerprint, request, state, "
                "metadata, create_ns, update_ns) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    name,
                    kind,
                    request_id,
                    fingerprint,
                    request,
                    State.QUEUED.value,
                    _any_bytes(metadata, "metadata"),
                    create_ns,
                    create_ns,
                ),
            )
            operation = _to_operation(self._row(conn, name))
            self._changed(name, kind, operation)
        logger.debug("created %s (%s, request_id=%s)", name, kind, request_id)
        return operation, True

    def get(self, name: str) -> Operation:
        """The operation named `name`; `OperationNotFoundError` if there is none."""
        return _to_operation(self._row(self._conn(), name))

    def list(
        self,
        kind: str | None = None,
        states: Iterable[State | str] | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
        page_token: str = "",
    ) -> tuple[list[Operation], str]:
        """One page of operations ordered by (create_time, name), oldest first (AIP-158).

        `page_size` 0 means `DEFAULT_PAGE_SIZE`, larger than `MAX_PAGE_SIZE` is lowered to it, negative is
        an error. Returns `(operations, next_page_token)`; the token is "" on the last page. A token is
        opaque, valid only with the same `kind` and `states`, and stays valid while operations are created
        or deleted (keyset pagination: no duplicates, no gaps among the operations that exist throughout).
        """
        if page_size < 0:
            raise InvalidOperationArgumentError("page_size", "must not be negative")
        page_size = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        state_set = None if states is None else sorted({_parse_state(state) for state in states})
        scope = _scope_digest(kind, state_set)
        where: list[str] = []
        params: list[Any] = []
        if page_token:
            after_ns, after_name = _decode_page_token(page_token, scope)
            where.append("(create_ns > ? OR (create_ns = ? AND name > ?))")
            params += [after_ns, after_ns, after_name]
        if kind is not None:
            where.append("kind = ?")
            params.append(kind)
        if state_set is not None:
            if not state_set:
                return [], ""
            where.append(f"state IN ({', '.join('?' * len(state_set))})")
            params += [state.value for state in state_set]
        sql = "SELECT * FROM operations"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY create_ns, name LIMIT ?"
        rows = self._conn().execute(sql, (*params, page_size + 1)).fetchall()
        next_token = ""
        if len(rows) > page_size:
            rows = rows[:page_size]
            next_token = _encode_page_token(rows[-1]["create_ns"], rows[-1]["name"], scope)
        return [_to_operation(row) for row in rows], next_token

    def queue_depth(self, kind: str | None = None) -> int:
        """How many operations (of `kind`, or of all kinds) wait in QUEUED: for backpressure and metrics."""
        sql = "SELECT COUNT(*) FROM operations WHERE state = ?"
        params: list[Any] = [State.QUEUED.value]
        if kind is not None:
            sql += " AND kind = ?"
            params.append(kind)
        return int(self._conn().execute(sql, params).fetchone()[0])

    def counts(self, kind: str | None = None) -> dict[State, int]:
        """Number of operations in each state (every state present, zero if none), for metrics."""
        sql = "SELECT state, COUNT(*) FROM operations"
        params: list[Any] = []
        if kind is not None:
            sql += " WHERE kind = ?"
            params.append(kind)
        result = dict.fromkeys(State, 0)
        for state, count in self._conn().execute(sql + " GROUP BY state", params):
            result[State(state)] = int(count)
        return result

    def is_cancel_requested(self, name: str) -> bool:
        """Whether the worker running `name` should stop: cancellation requested, or the operation is
        cancelled or gone (force-deleted or expired)."""
        row = (
            self._conn()
            .execute("SELECT state, cancel_requested FROM operations WHERE name = ?", (name,))
            .fetchone()
        )
        return row is None or bool(row["cancel_requested"]) or row["state"] == State.CANCELLED.value

    # ---- the worker side ----------------------------------------------------------------------------------

    def claim_next(
        self,
        kind: str | None = None,
        *,
        worker_id: str | None = None,
        lease_seconds: float | None = None,
    ) -> Operation | None:
        """Atomically move the oldest QUEUED operation (of `kind`, if given) to RUNNING and return it.

        `attempts` is incremented; pass the returned `attempts` as `attempt=` to later calls. Returns None
        when the queue is empty. Two callers never receive the same operation for the same attempt.
        """
        lease_ns = int((self.lease_seconds if lease_seconds is None else lease_seconds) * _NS)
        if lease_ns <= 0:
            raise InvalidOperationArgumentError("lease_seconds", "must be positive")
        sql = "SELECT name FROM operations WHERE state = ?"
        params: list[Any] = [State.QUEUED.value]
        if kind is not None:
            sql += " AND kind = ?"
            params.append(kind)
        sql += " ORDER BY create_ns, name LIMIT 1"
        with self._tx(durable=False) as conn:
            row = conn.execute(sql, params).fetchone()
            if row is None:
                return None
            now_ns = self._now_ns()
            conn.execute(
                "UPDATE operations SET state = ?, attempts = attempts + 1, start_ns = ?, update_ns = ?, "
                "worker_id = ?, lease_ns = ?, lease_duration_ns = ?, cancel_requested = 0, attempt_progress = 0, "
                "stopping = 0 WHERE name = ?",
                (
                    State.RUNNING.value,
                    now_ns,
                    now_ns,
                    worker_id or self.worker_id,
                    now_ns + lease_ns,
                    lease_ns,
                    row["name"],
                ),
            )
            operation = _to_operation(self._row(conn, row["name"]))
            self._changed(operation.name, operation.kind, operation)
        logger.debug("claimed %s (attempt %d)", operation.name, operation.attempts)
        return operation

    def update_progress(
        self,
        name: str,
        progress: float,
        metadata: bytes | None = None,
        *,
        attempt: int | None = None,
    ) -> Operation:
        """Report progress (clamped to [0, 1], never lowered) and optionally replace the metadata; renews the
        lease. Only a RUNNING operation accepts progress."""
        progress = float(progress)
        if math.isnan(progress):
            raise InvalidOperationArgumentError("progress", "must be a number in [0, 1], got NaN")
        progress = min(max(progress, 0.0), 1.0)
        with self._tx(durable=False) as conn:
            row = self._row(conn, name)
            self._check_attempt(row, attempt)
            if row["state"] != State.RUNNING.value:
                raise InvalidTransitionError(
                    f"operation {name} is {row['state']}; only RUNNING takes progress"
                )
            now_ns = self._now_ns()
            columns: dict[str, Any] = {
                "progress": max(row["progress"], progress),
                "attempt_progress": max(row["attempt_progress"], progress),
                "lease_ns": now_ns + (row["lease_duration_ns"] or int(self.lease_seconds * _NS)),
            }
            if metadata is not None:
                columns["metadata"] = _any_bytes(metadata, "metadata")
            return self._set(conn, name, now_ns, **columns)

    def heartbeat(self, name: str, *, attempt: int | None = None) -> Operation:
        """Renew the lease of a RUNNING operation without reporting progress."""
        with self._tx(durable=False) as conn:
            row = self._row(conn, name)
            self._check_attempt(row, attempt)
            if row["state"] != State.RUNNING.value:
                raise InvalidTransitionError(f"operation {name} is {row['state']}, not RUNNING")
            now_ns = self._now_ns()
            lease_ns = now_ns + (row["lease_duration_ns"] or int(self.lease_seconds * _NS))
            return self._set(conn, name, now_ns, lease_ns=lease_ns)

    def finish(
        self,
        name: str,
        result: bytes | None = None,
        *,
        metadata: bytes | None = None,
        attempt: int | None = None,
    ) -> Operation:
        """RUNNING -> SUCCEEDED with `result` (a serialized Any; None: `google.protobuf.Empty`); progress 1.
        `metadata`, if given, replaces the metadata in the same write (the worker's final metadata)."""
        result = _any_bytes(result, "result")
        metadata = _any_bytes(metadata, "metadata")
        with self._tx() as conn:
            row = self._row(conn, name)
            self._check_attempt(row, attempt)
            self._check_transition(row, State.SUCCEEDED)
            if metadata is None:
                metadata = self._metadata_for(row, State.SUCCEEDED)
            now_ns = self._now_ns()
            columns = self._finish_columns(State.SUCCEEDED, now_ns, metadata, result=result, progress=1.0)
            operation = self._set(conn, name, now_ns, **columns)
        logger.debug("%s succeeded", name)
        return operation

    def fail(
        self,
        name: str,
        code: int | grpc.StatusCode,
        message: str,
        *,
        details: Sequence[bytes] = (),
        metadata: bytes | None = None,
        attempt: int | None = None,
    ) -> Operation:
        """RUNNING (or QUEUED) -> FAILED with a `google.rpc.Code` (not OK), a message and optional details
        (serialized Any messages); `metadata`, if given, replaces the metadata in the same write."""
        code = _status_code(code)
        details_blob = _encode_details(details)
        metadata = _any_bytes(metadata, "metadata")
        with self._tx() as conn:
            row = self._row(conn, name)
            self._check_attempt(row, attempt)
            self._check_transition(row, State.FAILED)
            if metadata is None:
                metadata = self._metadata_for(row, State.FAILED)
            now_ns = self._now_ns()
            columns = self._finish_columns(
                State.FAILED,
                now_ns,
                metadata,
                error_code=code,
                error_message=str(message),
                error_details=details_blob,
            )
            operation = self._set(conn, name, now_ns, **columns)
        logger.info("%s failed: %s %s", name, code, message)
        return operation

    def mark_cancelled(
        self,
        name: str,
        *,
        message: str = "operation cancelled",
        metadata: bytes | None = None,
        attempt: int | None = None,
    ) -> Operation:
        """RUNNING -> CANCELLED, by the worker once it has stopped (usually after `is_cancel_requested`);
        `metadata`, if given, replaces the metadata in the same write."""
        metadata = _any_bytes(metadata, "metadata")
        with self._tx() as conn:
            row = self._row(conn, name)
            self._check_attempt(row, attempt)
            self._check_transition(row, State.CANCELLED)
            if row["state"] != State.RUNNING.value:
                raise InvalidTransitionError(f"operation {name} is QUEUED; cancel it with cancel()")
            return self._cancelled(conn, row, message, metadata=metadata)

    def requeue(self, name: str, *, attempt: int | None = None) -> Operation:
        """RUNNING -> QUEUED: a worker gives its job back (e.g. on graceful shutdown). An operation whose
        cancellation was requested becomes CANCELLED instead."""
        with self._tx() as conn:
            row = self._row(conn, name)
            self._check_attempt(row, attempt)
            self._check_transition(row, State.QUEUED)
            if row["cancel_requested"]:
                return self._cancelled(conn, row, "operation cancelled (its worker stopped)")
            return self._requeued(conn, row, self._now_ns())

    # ---- the client side ----------------------------------------------------------------------------------

    def cancel(self, name: str) -> Operation:
        """Request cancellation: QUEUED -> CANCELLED now; RUNNING -> `cancel_requested`; done -> no-op."""
        with self._tx() as conn:
            row = self._row(conn, name)
            state = State(row["state"])
            if state is State.QUEUED:
                operation = self._cancelled(conn, row, "operation cancelled before it started")
                logger.info("%s cancelled while queued", name)
                return operation
            if state is State.RUNNING and not row["cancel_requested"]:
                logger.info("%s: cancellation requested", name)
                return self._set(conn, name, self._now_ns(), cancel_requested=1)
            return _to_operation(row)

    def delete(self, name: str, *, force: bool = False) -> None:
        """Delete an operation's record. Refuses one that is not done (cancel it first) unless `force`; a
        worker of a force-deleted operation sees `is_cancel_requested` and NOT_FOUND on its next report."""
        with self._tx() as conn:
            row = self._row(conn, name)
            if not force and not State(row["state"]).done:
                raise InvalidTransitionError(f"operation {name} is {row['state']}; cancel it before deleting")
            conn.execute("DELETE FROM operations WHERE name = ?", (name,))
            self._changed(name, row["kind"], None)
        self._deleted([name])

    # ---- maintenance --------------------------------------------------------------------------------------

    def expire(self, now: float | None = None) -> int:
        """Delete done operations whose expire_time has passed; returns how many were deleted."""
        done = [state.value for state in DONE_STATES]
        with self._tx() as conn:
            rows = conn.execute(
                "SELECT name, kind FROM operations"
                " WHERE expire_ns IS NOT NULL AND expire_ns <= ? AND state IN (?, ?, ?)",
                (self._now_ns(now), *done),
            ).fetchall()
            names = [row["name"] for row in rows]
            conn.executemany("DELETE FROM operations WHERE name = ?", [(name,) for name in names])
            for row in rows:
                self._changed(row["name"], row["kind"], None)
        if names:
            logger.info("expired %d operations", len(names))
        self._deleted(names)
        return len(names)

    def _deleted(self, names: list[str]) -> None:
        """Tell `on_delete` (e.g. the artifact store) about deleted records; its failure is logged, not raised:
        the record is gone either way."""
        if self._on_delete is None:
            return
        for name in names:
            try:
                self._on_delete(name)
            except Exception:
                logger.exception("on_delete(%s) failed; the operation's record is deleted", name)

    def mark_stopping(self, name: str, *, attempt: int | None = None) -> None:
        """Record that the process running `name` is shutting down (a worker's `stop`): should it be killed
        before it gives the job back (e.g. SIGKILL at the end of a deploy's grace period), `recover` re-queues
        the job without counting a crash against it. A no-op once the attempt has ended or moved on."""
        with self._tx() as conn:
            row = conn.execute("SELECT * FROM operations WHERE name = ?", (name,)).fetchone()
            if row is None or row["state"] != State.RUNNING.value:
                return
            if attempt is not None and row["attempts"] != attempt:
                return
            self._set(conn, name, self._now_ns(), stopping=1)

    def recover(self, *, expired_only: bool = False, now: float | None = None) -> list[str]:
        """Return orphaned RUNNING operations to the queue; returns the names re-queued.

        At start-up of the process that owns the file, `recover()` takes every RUNNING operation. With
        several worker processes, `recover(expired_only=True)` (at start-up or periodically) takes only
        those whose lease has expired. Orphans with a pending cancellation become CANCELLED. Each other
        orphan is a crash of its worker; whether the job is blamed for it (the module docstring, "Poison jobs"):
        not when its worker was stopping (`mark_stopping`); else it counts one more crash in a row when this
        attempt got no further than the previous crashed one (and starts a new run of one when it got further).
        An orphan with `max_attempts` crashes in a row becomes FAILED (INTERNAL).
        """
        now_ns = self._now_ns(now)
        sql = "SELECT * FROM operations WHERE state = ?"
        params: list[Any] = [State.RUNNING.value]
        if expired_only:
            sql += " AND (lease_ns IS NULL OR lease_ns <= ?)"
            params.append(now_ns)
        requeued: list[str] = []
        with self._tx() as conn:
            for row in conn.execute(sql + " ORDER BY create_ns, name", params).fetchall():
                name = row["name"]
                if row["cancel_requested"]:
                    self._cancelled(conn, row, "operation cancelled (its worker stopped)", now_ns)
                    logger.warning("recover: %s was being cancelled; now CANCELLED", name)
                    continue
                if row["stopping"]:
                    self._requeued(conn, row, now_ns)
                    requeued.append(name)
                    logger.warning("recover: %s: its worker died while shutting down; not counted", name)
                    continue
                reached, before = row["attempt_progress"], row["crash_progress"]
                crashes = 1 if before is None or reached > before else row["crashes"] + 1
                if self.max_attempts is not None and crashes >= self.max_attempts:
                    message = _poison_message(crashes, reached, row["attempts"])
                    metadata = self._metadata_for(row, State.FAILED)
                    columns = self._finish_columns(
                        State.FAILED, now_ns, metadata, error_code=_INTERNAL_CODE, error_message=message
                    )
                    self._set(conn, name, now_ns, crashes=crashes, crash_progress=reached, **columns)
                    logger.error("recover: %s failed: %s", name, message)
                else:
                    self._requeued(conn, row, now_ns, crashes=crashes, crash_progress=reached)
                    requeued.append(name)
                    logger.warning(
                        "recover: %s: its worker died at %.0f%% of attempt %d (crash %d in a row)",
                        name,
                        reached * 100,
                        row["attempts"],
                        crashes,
                    )
        if requeued:
            logger.warning("recover: re-queued %d orphaned operations: %s", len(requeued), requeued)
        return requeued

    def _requeued(self, conn: sqlite3.Connection, row: sqlite3.Row, now_ns: int, **columns: Any) -> Operation:
        """RUNNING -> QUEUED, with the metadata hook's QUEUED metadata."""
        metadata = self._metadata_for(row, State.QUEUED)
        if metadata is not None:
            columns["metadata"] = metadata
        return self._set(
            conn, row["name"], now_ns, state=State.QUEUED.value, lease_ns=None, worker_id=None, **columns
        )

    def _cancelled(
        self,
        conn: sqlite3.Connection,
        row: sqlite3.Row,
        message: str,
        now_ns: int | None = None,
        *,
        metadata: bytes | None = None,
    ) -> Operation:
        name = row["name"]
        now_ns = self._now_ns() if now_ns is None else now_ns
        if metadata is None:
            metadata = self._metadata_for(row, State.CANCELLED)
        columns = self._finish_columns(
            State.CANCELLED,
            now_ns,
            metadata,
            error_code=_CANCELLED_CODE,
            error_message=message,
            error_details=None,
        )
        return self._set(conn, name, now_ns, **columns)


# ---- module helpers ---------------------------------------------------------------------------------------


def _poison_message(crashes: int, reached: float, attempt: int) -> str:
    """Why `recover` failed an operation whose worker died `crashes` times in a row."""
    if crashes > 1:
        how = f"during {crashes} attempts in a row, each getting no further than the one before"
    else:
        how = "while running it"
    return (
        f"the worker process died {how} ({reached:.0%} done): the job is taken to crash its worker and is "
        f"not retried (attempt {attempt})"
    )


def _to_seconds(ns: int | None) -> float | None:
    return None if ns is None else ns / _NS


def _to_operation(row: sqlite3.Row) -> Operation:
    error = None
    if row["error_code"] is not None:
        error = ErrorStatus(
            row["error_code"], row["error_message"] or "", _decode_details(row["error_details"])
        )
    return Operation(
        name=row["name"],
        kind=row["kind"],
        state=State(row["state"]),
        request=bytes(row["request"]),
        request_id=row["request_id"],
        progress=float(row["progress"]),
        metadata=_opt_bytes(row["metadata"]),
        result=_opt_bytes(row["result"]),
        error=error,
        attempts=int(row["attempts"]),
        cancel_requested=bool(row["cancel_requested"]),
        worker_id=row["worker_id"],
        create_time=row["create_ns"] / _NS,
        update_time=row["update_ns"] / _NS,
        start_time=_to_seconds(row["start_ns"]),
        finish_time=_to_seconds(row["finish_ns"]),
        expire_time=_to_seconds(row["expire_ns"]),
        lease_expire_time=_to_seconds(row["lease_ns"]),
        crashes=int(row["crashes"]),
    )


def _opt_bytes(value: bytes | None) -> bytes | None:
    return None if value is None else bytes(value)


def _any_bytes(value: bytes | None, what: str) -> bytes | None:
    """`value` as bytes after checking that it parses as a serialized `google.protobuf.Any`."""
    if value is None:
        return None
    value = bytes(value)
    try:
        any_pb2.Any.FromString(value)
    except message.DecodeError as exc:
        raise InvalidOperationArgumentError(what, "must be a serialized google.protobuf.Any") from exc
    return value


def _name_prefix(kind: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", kind.split(".", 1)[0].lower()).strip("-") or "op"


def _fingerprint(request: bytes, given: str | bytes | None) -> str:
    if given is None:
        return "sha256:" + hashlib.sha256(request).hexdigest()
    if isinstance(given, bytes):
        return given.hex()
    return str(given)


def _parse_state(state: State | str) -> State:
    try:
        return State(state)
    except ValueError:
        raise InvalidOperationArgumentError("states", f"unknown operation state {state!r}") from None


def _status_code(code: int | grpc.StatusCode) -> int:
    value = code.value[0] if isinstance(code, grpc.StatusCode) else int(code)
    if not 1 <= value <= 16:
        raise InvalidOperationArgumentError(
            "code", f"a failure needs a google.rpc.Code from 1 to 16, got {code!r}"
        )
    return value


def _encode_details(details: Sequence[bytes]) -> bytes | None:
    if not details:
        return None
    try:
        packed = [any_pb2.Any.FromString(bytes(detail)) for detail in details]
    except message.DecodeError as exc:
        raise InvalidOperationArgumentError(
            "details", "each must be a serialized google.protobuf.Any"
        ) from exc
    return status_pb2.Status(details=packed).SerializeToString()


def _decode_details(blob: bytes | None) -> tuple[bytes, ...]:
    if not blob:
        return ()
    return tuple(detail.SerializeToString() for detail in status_pb2.Status.FromString(blob).details)


def _scope_digest(kind: str | None, states: Sequence[State] | None) -> str:
    scope = json.dumps([kind, None if states is None else [state.value for state in states]])
    return hashlib.sha256(scope.encode()).hexdigest()[:16]


def _encode_page_token(create_ns: int, name: str, scope: str) -> str:
    payload = json.dumps({"v": 1, "c": create_ns, "n": name, "s": scope}, separators=(",", ":"))
    return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")


def _decode_page_token(token: str, scope: str) -> tuple[int, str]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        payload = json.loads(raw)
        create_ns, name, token_scope = payload["c"], payload["n"], payload["s"]
        if payload["v"] != 1 or not isinstance(create_ns, int) or not isinstance(name, str):
            raise ValueError("bad fields")
    except (binascii.Error, ValueError, KeyError, TypeError) as exc:
        raise InvalidOperationArgumentError("page_token", "not a page token this server issued") from exc
    if token_scope != scope:
        raise InvalidOperationArgumentError("page_token", "issued for a different filter")
    return create_ns, name
