"""The job runner every long-running-operation service shares, and the progress reporter its jobs write through.

Why one module: services/masks (ExtractMasks) and services/video (CreateVideo) run their operations the same
way, and the subtle parts (attempt-guarded writes, the throttle, stop and cancel between steps) must not drift.

`OperationWorker` is one asyncio task per process: `start` (the server's start-up hook) calls `load()` once
(engines), re-queues what a dead process left RUNNING (`store.recover()`), then loops: claim the oldest QUEUED
operation of its kind, run it in a thread so the event loop keeps serving RPCs, flush throttled progress every
`progress_interval` while it runs, and, with nothing queued, delete expired done operations (every
`expire_interval`) and sleep until an operation of its kind becomes QUEUED through the same store object (the
store's change notification; `wake()` does the same by hand), or `poll_interval` passes (for operations
created by other processes). One job at a time: one warm engine per process (per device), jobs in creation
order. The job's endings are decided here, each one store write that sets the final metadata with the state:

- `run` returns the response: `finish` with metadata SUCCEEDED;
- a cancel request (`reporter.check()` raises): `mark_cancelled` with metadata CANCELLED;
- `stop()` (`reporter.check()` raises): the operation goes back to QUEUED (`requeue`), for the next process;
- `job_timeout` seconds after the claim (`reporter.check()` raises `JobDeadlineExceededError`): `fail` with
  DEADLINE_EXCEEDED naming the timeout, the step and the stage;
- a stale attempt (the job was re-queued or deleted underneath it): its result is dropped;
- any other exception, mapped by `error_for`: `fail` with its rich status and metadata FAILED (INTERNAL under
  an error id, traceback in the log, for one that is no `KmonoError`).

`ProgressReporter` writes one claimed operation's metadata: under a lock (the job thread reports, the loop
flushes), at most every `interval` seconds (and at the last step), each write carrying the claim's attempt
number, nothing after the final write. Its `Progress` has step, total, fraction, stage and an ETA from the
elapsed time since `eta_origin`. Progress writes are not fsynced (see the store's durability); the final one is.
`check()` (the job calls it between steps) raises when the server stops, the client cancelled, or the
deadline passed, so each takes effect within one step.

Our choices for jobs that run more than once (the store's "Poison jobs vs killed servers"):
- **Progress stays monotonic across attempts.** Engines cannot resume from a checkpoint, so a re-run after a
  restart starts again at step 0. What clients see never goes back: `Progress.fraction` and `step` stay at
  the furthest any attempt reached (the store's high-water mark, `op.progress`) until the new attempt passes
  it, and while it redoes those steps the stage says so: `denoising (attempt 2: redoing step 3 of 7)`. The
  ETA is the new attempt's own (its rate, all its remaining steps). The store still gets the attempt's own
  progress (it keeps the high-water mark itself), which is how `recover` sees how far each attempt got.
  The proto has no attempt field; the stage carries it.
- **Endings the store makes alone** (cancel while QUEUED, `recover`'s re-queue, CANCELLED or FAILED) get their
  metadata from `metadata_for(op, state)`, which the worker registers as the store's hook for its kind: the
  last metadata with the new state, `end_time`, no queue position and the stage named; `metadata_type` says
  the service's message.
- `stop()` records `mark_stopping` for the running job before it stops it, so a kill during the shutdown is
  not blamed on the job; a job that crashed its worker before reports every step (no throttle), so the store
  knows exactly how far it got should it crash again.

Subclasses provide: the worker, `reporter_for(op)` and `run(op, reporter)` (and `load`, `error_for`,
`metadata_type` where they need them); the reporter, `metadata(state, end)`, the service's own metadata
message, and their extras.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, ClassVar, Generic, TypeVar

from google.protobuf import any_pb2, duration_pb2, timestamp_pb2
from google.protobuf.message import Message
from kmono.common.v1 import operation_pb2

from libs.serving.errors import status_from_exception
from libs.serving.operations.convert import pack_any
from libs.serving.operations.errors import (
    JobDeadlineExceededError,
    OperationError,
    OperationNotFoundError,
    StaleAttemptError,
)
from libs.serving.operations.store import Change, Operation, OperationStore, State
from libs.serving.server import Hook

__all__ = ["OperationWorker", "ProgressReporter", "metadata_after", "timestamp"]

logger = logging.getLogger(__name__)

RUNNING = operation_pb2.OPERATION_STATE_RUNNING

OPERATION_STATES = {
    State.QUEUED: operation_pb2.OPERATION_STATE_QUEUED,
    State.RUNNING: operation_pb2.OPERATION_STATE_RUNNING,
    State.SUCCEEDED: operation_pb2.OPERATION_STATE_SUCCEEDED,
    State.FAILED: operation_pb2.OPERATION_STATE_FAILED,
    State.CANCELLED: operation_pb2.OPERATION_STATE_CANCELLED,
}
"""The store's states as the metadata's `kmono.common.v1.OperationState`."""

_STAGES = {
    State.QUEUED: "queued",
    State.RUNNING: "running",
    State.SUCCEEDED: "done",
    State.FAILED: "failed",
    State.CANCELLED: "cancelled",
}


class _Cancelled(Exception):
    """The client cancelled the operation."""


class _Interrupted(Exception):
    """The server is shutting down; the operation goes back to the queue."""


def timestamp(seconds: float) -> timestamp_pb2.Timestamp:
    """A protobuf Timestamp of a `time.time()` value."""
    stamp = timestamp_pb2.Timestamp()
    stamp.FromNanoseconds(int(seconds * 1e9))
    return stamp


def metadata_after(previous: bytes | None, message_type: type[Message], state: State, now: float) -> Message:
    """The metadata of an operation the store moved to `state` without its worker: the `previous` metadata (a
    packed `message_type`; a fresh one if absent or of another type) with `state`, `update_time` now, on an
    ending `end_time` now, no `queue_position`, no `start_time` when QUEUED again, and `progress.stage` naming
    the state (no ETA; fraction 1 and step = total on success). Works on any metadata message with a `state`
    field of `OperationState`; the other fields are set only where the message has them."""
    meta = message_type()
    if previous:
        packed = any_pb2.Any.FromString(previous)
        if packed.Is(message_type.DESCRIPTOR):
            packed.Unpack(meta)
    fields = message_type.DESCRIPTOR.fields_by_name
    meta.state = OPERATION_STATES[state]  # type: ignore[attr-defined]
    if "update_time" in fields:
        meta.update_time.CopyFrom(timestamp(now))  # type: ignore[attr-defined]
    if state.done and "end_time" in fields:
        meta.end_time.CopyFrom(timestamp(now))  # type: ignore[attr-defined]
    if state is State.QUEUED and "start_time" in fields:
        meta.ClearField("start_time")
    if "queue_position" in fields:
        meta.ClearField("queue_position")
    if "progress" in fields:
        progress = meta.progress  # type: ignore[attr-defined]
        progress.stage = _STAGES[state]
        progress.ClearField("eta")
        if state is State.SUCCEEDED:
            progress.fraction, progress.step = 1.0, progress.total_steps
    return meta


class ProgressReporter(abc.ABC):
    """Writes one claimed operation's metadata (throttled) and tells its job when to stop."""

    def __init__(self, store: OperationStore, op: Operation, stop: threading.Event, interval: float) -> None:
        self.store, self.op, self.stop, self.interval = store, op, stop, interval
        self.step, self.total = 0, 0
        self.stage = "starting"
        self.eta_origin: float | None = time.monotonic()  # when the measured work began; None: no ETA
        self.last_write = 0.0
        self.pending = False  # progress newer than what the store has
        self.closed = False  # the final metadata is written: no more writes
        self.lock = threading.Lock()  # guards the fields above and the subclasses' between the two threads
        self.job_timeout: float | None = None  # set by the worker (`start_deadline`)
        self.job_deadline: float | None = None  # time.monotonic() past which `check` raises
        self.floor = op.progress  # how far earlier attempts got: what clients see never goes below it
        self.floor_total = 0  # the total steps earlier attempts reported (`resume_after`), while `total` is 0

    @abc.abstractmethod
    def metadata(self, state: int, *, end: bool) -> Message:
        """The service's metadata message now (use `progress(state)` and `stamps(end)`)."""

    def own_fraction(self, state: int) -> float:
        """How far this attempt is (what the store gets)."""
        if state == operation_pb2.OPERATION_STATE_SUCCEEDED:
            return 1.0
        return self.step / self.total if self.total else 0.0

    def fraction(self, state: int) -> float:
        """How far the operation is (what clients see): this attempt's, never below an earlier attempt's."""
        return max(self.own_fraction(state), self.floor)

    def resume_after(self, previous: operation_pb2.Progress) -> None:
        """Continue the progress an earlier attempt showed (its total steps, while this one knows none yet)."""
        self.floor_total = previous.total_steps

    def progress(self, state: int) -> operation_pb2.Progress:
        own = self.own_fraction(state)
        step, stage, total = self.step, self.stage, self.total or self.floor_total
        floor_step = min(total, round(self.floor * total))
        if step < floor_step:  # a re-run redoing the steps an earlier attempt did
            if state == RUNNING:
                stage = f"{stage} (attempt {self.op.attempts}: redoing step {step} of {floor_step})"
            step = floor_step
        progress = operation_pb2.Progress(
            step=step, total_steps=total, fraction=max(own, self.floor), stage=stage
        )
        if 0 < own < 1 and self.eta_origin is not None:
            elapsed = time.monotonic() - self.eta_origin
            eta = duration_pb2.Duration()
            eta.FromNanoseconds(int(elapsed / own * (1 - own) * 1e9))
            progress.eta.CopyFrom(eta)
        return progress

    def stamps(self, end: bool) -> dict[str, timestamp_pb2.Timestamp]:
        """create_time, update_time (now) and, on the final write, end_time: fields every metadata has."""
        now = timestamp(time.time())
        stamps = {"create_time": timestamp(self.op.create_time), "update_time": now}
        if end:
            stamps["end_time"] = now
        return stamps

    def write(self, state: int, stage: str | None = None, *, end: bool = False) -> None:
        """Store the metadata now (with a new stage, if given); `end` writes the last one."""
        with self.lock:
            if stage is not None:
                self.stage = stage
            self._write(state, end)

    def _write(self, state: int, end: bool) -> None:
        if self.closed:
            return
        self.closed = end
        metadata = pack_any(self.metadata(state, end=end))
        self.store.update_progress(self.op.name, self.own_fraction(state), metadata, attempt=self.op.attempts)
        self.last_write = time.monotonic()
        self.pending = False

    def final(self, state: int, stage: str) -> bytes | None:
        """The last metadata (packed), for the store write that ends the operation; None if already closed.
        Nothing is written after it."""
        with self.lock:
            if self.closed:
                return None
            self.stage, self.closed, self.pending = stage, True, False
            return pack_any(self.metadata(state, end=True))

    def start_deadline(self, timeout: float | None) -> None:
        """From now, `check` raises `JobDeadlineExceededError` once `timeout` seconds have passed (None: never)."""
        self.job_timeout = timeout or None
        self.job_deadline = None if self.job_timeout is None else time.monotonic() + self.job_timeout

    def check(self) -> None:
        """Raise out of the job (thread) if it must stop now: the server is stopping, a cancel was asked, or
        the job's deadline passed."""
        if self.stop.is_set():
            raise _Interrupted
        if self.store.is_cancel_requested(self.op.name):
            raise _Cancelled
        if self.job_deadline is not None and time.monotonic() > self.job_deadline:
            assert self.job_timeout is not None
            raise JobDeadlineExceededError(self.job_timeout, self.step, self.total, self.stage)

    def advance(self, step: int, total: int, *, force: bool = False) -> None:
        """A job's per-step report (thread): record, `check`, write if due (the last step always is)."""
        with self.lock:
            self.step, self.total = max(self.step, step), total
            self.pending = True
        self.check()
        if force or step == total or time.monotonic() - self.last_write >= self.interval:
            self.write(RUNNING)

    def flush(self) -> None:
        """Store progress the throttle held back (the worker calls it every `interval` while the job runs)."""
        with self.lock, contextlib.suppress(OperationError):  # OperationError: the job ended meanwhile
            if self.pending:
                self._write(RUNNING, False)


Reporter = TypeVar("Reporter", bound=ProgressReporter)


class OperationWorker(abc.ABC, Generic[Reporter]):
    """Runs the queued operations of one `kind`, one at a time; `start`/`stop` are the server's hooks.

    `job_timeout` (seconds from the claim; None or 0: none): past it the job's next `reporter.check()` raises
    and the operation FAILS with DEADLINE_EXCEEDED (`JobDeadlineExceededError`).

    The worker registers `metadata_for` as the store's metadata hook of its kind (`set_metadata_hook`)."""

    metadata_type: ClassVar[type[Message] | None] = None
    """The service's metadata message (e.g. `CreateVideoMetadata`), for `metadata_for`; None: the store leaves
    the metadata of its own changes as it was."""

    def __init__(
        self,
        store: OperationStore,
        kind: str,
        poll_interval: float = 1.0,
        progress_interval: float = 0.2,
        *,
        task_name: str = "operation-worker",
        expire_interval: float = 600.0,
        job_timeout: float | None = None,
    ) -> None:
        if job_timeout is not None and job_timeout < 0:
            raise ValueError(f"job_timeout must be >= 0 (0: none), got {job_timeout}")
        self.store, self.kind, self.task_name = store, kind, task_name
        self.poll_interval = poll_interval
        self.progress_interval = progress_interval
        self.expire_interval = expire_interval  # idle workers delete expired done operations this often
        self.job_timeout = job_timeout or None
        self._unsubscribe: Callable[[], None] | None = None
        self._next_expiry = 0.0
        self.stopping = threading.Event()  # set by `stop`: the running job's `check` raises
        # Set while no job thread runs: a thread can outlive a `stop` cancelled by the shutdown budget.
        self._idle = threading.Event()
        self._idle.set()
        self._loaded = False
        self._wakeup: asyncio.Event | None = None
        self._event_loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._current: Operation | None = None  # the claimed operation whose job runs now
        store.set_metadata_hook(kind, self._hook)

    def metadata_for(self, op: Operation, state: State) -> Message | None:
        """The metadata of `op` (as it was) once the store has moved it to `state` without this worker: a
        cancel while QUEUED, `recover`'s re-queue or failure, a re-queue that cancels. Default: `metadata_after`
        of `metadata_type` (None if that is None: keep the old)."""
        if self.metadata_type is None:
            return None
        return metadata_after(op.metadata, self.metadata_type, state, time.time())

    def _progress_of(self, op: Operation) -> operation_pb2.Progress | None:
        """The `progress` of `op`'s metadata, if it has one of `metadata_type`."""
        message_type = self.metadata_type
        if message_type is None or not op.metadata or op.progress <= 0:
            return None
        if "progress" not in message_type.DESCRIPTOR.fields_by_name:
            return None
        packed, meta = any_pb2.Any.FromString(op.metadata), message_type()
        if not packed.Unpack(meta):
            return None
        return meta.progress  # type: ignore[attr-defined]

    def _hook(self, op: Operation, state: State) -> bytes | None:
        metadata = self.metadata_for(op, state)
        return None if metadata is None else pack_any(metadata)

    async def load(self) -> None:
        """Load what the jobs need (engines): called once, by the first `start` (again if it raised)."""

    @abc.abstractmethod
    def reporter_for(self, op: Operation) -> Reporter:
        """The reporter of a just-claimed operation (on the event loop; pass `self.stopping`)."""

    @abc.abstractmethod
    def run(self, op: Operation, reporter: Reporter) -> Message:
        """Run one claimed operation (in a thread, calling `reporter.advance`/`check` often); its response."""

    def error_for(self, exc: Exception, reporter: Reporter) -> Exception:
        """The error a failed job reports for `exc` (e.g. a `KmonoError` naming the bad field); default `exc`."""
        return exc

    async def start(self) -> None:
        """Load (once), re-queue operations a dead process left RUNNING, start the loop."""
        if not self._loaded:
            await self.load()
            self._loaded = True
        requeued = await asyncio.to_thread(self.store.recover)
        if requeued:
            logger.info("re-queued %d interrupted %s operations", len(requeued), self.kind)
        self.stopping.clear()
        self._event_loop = asyncio.get_running_loop()
        self._wakeup = asyncio.Event()
        self._unsubscribe = self.store.subscribe(self._on_change)
        self._task = asyncio.create_task(self._loop(), name=self.task_name)

    async def stop(self) -> None:
        """Stop claiming; a running job stops at its next check and goes back to the queue. The job is first
        recorded as stopping (`store.mark_stopping`): a kill before it is back in the queue is not its fault."""
        current = self._current
        if current is not None:
            try:
                await asyncio.to_thread(self.store.mark_stopping, current.name, attempt=current.attempts)
            except Exception:
                logger.exception("%s: recording the shutdown failed; stopping anyway", current.name)
        self.stopping.set()
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._wakeup is not None:
            self._wakeup.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def wake(self) -> None:
        """An operation was queued: claim it now rather than at the next poll (safe from any thread). The
        store's change notification calls it for operations queued through the same store object."""
        if self._wakeup is not None and self._event_loop is not None:
            with contextlib.suppress(RuntimeError):  # the event loop is closed: nothing to wake
                self._event_loop.call_soon_threadsafe(self._wakeup.set)

    def _on_change(self, change: Change) -> None:
        if change.state is State.QUEUED and change.kind == self.kind:
            self.wake()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no job thread runs; False if one still runs after `timeout` seconds."""
        return self._idle.wait(timeout)

    def server_hooks(self, close_timeout: float = 30.0) -> tuple[list[Hook], list[Hook]]:
        """(on_startup, on_shutdown) for the server: start this worker; at shutdown stop it (its job goes back to
        the queue), then close the store. A job thread can outlive a `stop` cancelled by the shutdown budget, and
        closing SQLite under it would crash the process, so the store closes only once no job thread runs
        (else it stays open and the OS reclaims it at exit)."""

        async def close_store() -> None:
            if await asyncio.to_thread(self.wait_idle, close_timeout):
                self.store.close()
            else:
                logger.warning(
                    "a %s job thread is still running; leaving the operation store open", self.kind
                )

        # shutdown hooks run in reverse order: the worker stops before the store closes
        return [self.start], [close_store, self.stop]

    async def _loop(self) -> None:
        assert self._wakeup is not None
        while not self.stopping.is_set():
            try:
                op = await asyncio.to_thread(self.store.claim_next, self.kind)
            except Exception:
                logger.exception("claiming a %s operation failed; retrying", self.kind)
                op = None
            if op is None:
                await self._expire_when_due()
                self._wakeup.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.poll_interval):
                        await self._wakeup.wait()
                continue
            reporter = self.reporter_for(op)
            reporter.start_deadline(self.job_timeout)
            if op.crashes:  # it crashed a worker before: the store must know exactly how far it gets
                reporter.interval = 0.0
            previous = self._progress_of(op)
            if previous is not None:
                reporter.resume_after(previous)
            self._current = op
            self._idle.clear()
            job = asyncio.ensure_future(asyncio.to_thread(self._run_tracked, op, reporter))
            while not job.done():
                await asyncio.wait({job}, timeout=self.progress_interval)
                if not job.done():
                    await asyncio.to_thread(reporter.flush)
            self._current = None
            await job

    async def _expire_when_due(self) -> None:
        """Delete done operations past their retention (and, through the store's `on_delete`, their artifacts)."""
        if time.monotonic() < self._next_expiry:
            return
        self._next_expiry = time.monotonic() + self.expire_interval
        try:
            await asyncio.to_thread(self.store.expire)
        except Exception:
            logger.exception(
                "expiring %s operations failed; retrying in %g s", self.kind, self.expire_interval
            )

    def _run_tracked(self, op: Operation, reporter: Reporter) -> None:
        try:
            self._run_to_end(op, reporter)
        finally:
            self._idle.set()

    def _run_to_end(self, op: Operation, reporter: Reporter) -> None:
        """One claimed operation, start to end (in the job thread)."""
        try:
            reporter.write(RUNNING, "starting")
            response = pack_any(self.run(op, reporter))
            metadata = reporter.final(operation_pb2.OPERATION_STATE_SUCCEEDED, "done")
            self.store.finish(op.name, response, metadata=metadata, attempt=op.attempts)
        except _Interrupted:
            logger.info("%s: server stopping, back to the queue", op.name)
            _quietly(self.store.requeue, op.name, attempt=op.attempts)
        except _Cancelled:
            metadata = reporter.final(operation_pb2.OPERATION_STATE_CANCELLED, "cancelled")
            _quietly(self.store.mark_cancelled, op.name, metadata=metadata, attempt=op.attempts)
            logger.info("%s: cancelled at step %d", op.name, reporter.step)
        except (StaleAttemptError, OperationNotFoundError) as exc:
            logger.warning("%s: dropping the result of a stale attempt: %s", op.name, exc)
        except Exception as exc:
            status = status_from_exception(self.error_for(exc, reporter))
            details = [detail.SerializeToString() for detail in status.details]
            metadata = reporter.final(operation_pb2.OPERATION_STATE_FAILED, "failed")
            _quietly(
                self.store.fail,
                op.name,
                status.code,
                status.message,
                details=details,
                metadata=metadata,
                attempt=op.attempts,
            )


def _quietly(call: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    try:
        call(*args, **kwargs)
    except OperationError as exc:  # the operation was deleted or re-queued underneath us
        logger.warning("%s: %s", getattr(call, "__name__", call), exc)
