"""OperationWorker and ProgressReporter with a fake job over a real OperationStore: order, one job at a time,
cancel within a step, stop re-queues for the next worker, throttled progress flushed, failures mapped, the job
deadline, woken by the store's change notification, one write for the ending."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable

import grpc
import pytest
from google.protobuf import wrappers_pb2
from kmono.common.v1 import operation_pb2
from kmono.masks.v1 import masks_pb2
from kmono.video.v1 import video_pb2

from libs.serving import InvalidArgumentError
from libs.serving.operations import (
    Change,
    JobDeadlineExceededError,
    Operation,
    OperationStore,
    OperationWorker,
    ProgressReporter,
    State,
    pack_any,
    unpack_any,
)
from libs.serving.operations.worker import metadata_after

KIND = "test.job"
Job = Callable[[Operation, "FakeReporter"], None]


class FakeReporter(ProgressReporter):
    def metadata(self, state: int, *, end: bool) -> operation_pb2.Progress:
        return self.progress(state)  # a service packs its own metadata message; Progress is enough here


class FakeWorker(OperationWorker[FakeReporter]):
    """Runs `job` on each operation and answers its request echoed; ValueError is the client's fault."""

    def __init__(
        self, store: OperationStore, job: Job, *, throttle: float = 60.0, **kwargs: float | None
    ) -> None:
        super().__init__(store, KIND, task_name="fake-worker", **kwargs)
        self.job, self.throttle = job, throttle
        self.loads = 0

    async def load(self) -> None:
        self.loads += 1

    def reporter_for(self, op: Operation) -> FakeReporter:
        return FakeReporter(self.store, op, self.stopping, self.throttle)

    def run(self, op: Operation, reporter: FakeReporter) -> wrappers_pb2.StringValue:
        self.job(op, reporter)
        return wrappers_pb2.StringValue(value=op.request.decode())

    def error_for(self, exc: Exception, reporter: FakeReporter) -> Exception:
        if isinstance(exc, ValueError):
            return InvalidArgumentError.single("request", str(exc))
        return exc


def progress_of(op: Operation) -> operation_pb2.Progress:
    assert op.metadata is not None
    return unpack_any(op.metadata, operation_pb2.Progress)


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


async def settle(store: OperationStore, names: list[str], timeout: float = 10.0) -> list[Operation]:
    await asyncio.to_thread(wait_until, lambda: all(store.get(name).done for name in names), timeout)
    return [store.get(name) for name in names]


def test_jobs_run_one_at_a_time_in_creation_order_and_load_once(tmp_path):
    store = OperationStore(tmp_path / "ops.db")
    names = [store.create(KIND, f"job {i}".encode())[0].name for i in range(3)]
    started, running, most = [], [0], [0]
    lock = threading.Lock()

    def job(op: Operation, reporter: FakeReporter) -> None:
        with lock:
            started.append(op.name)
            running[0] += 1
            most[0] = max(most[0], running[0])
        for step in range(1, 4):
            time.sleep(0.01)
            reporter.advance(step, 3)
        with lock:
            running[0] -= 1

    async def main() -> None:
        worker = FakeWorker(store, job, poll_interval=0.05, progress_interval=0.01)
        await worker.start()
        ops = await settle(store, names)
        await worker.stop()
        await worker.start()  # a restart loads nothing again
        await worker.stop()
        assert worker.loads == 1 and worker.wait_idle(0)
        assert started == names and most[0] == 1
        for i, op in enumerate(ops):
            assert op.state is State.SUCCEEDED and op.attempts == 1
            assert unpack_any(op.result, wrappers_pb2.StringValue).value == f"job {i}"
            progress = progress_of(op)
            assert (progress.step, progress.total_steps, progress.fraction, progress.stage) == (
                3,
                3,
                1.0,
                "done",
            )

    asyncio.run(main())


def test_wake_from_another_thread_claims_before_the_poll(tmp_path):
    store = OperationStore(tmp_path / "ops.db")

    async def main() -> None:
        worker = FakeWorker(store, lambda op, reporter: None, poll_interval=60.0)
        await worker.start()
        await asyncio.sleep(0.05)  # the loop found nothing and sleeps until woken
        name = store.create(KIND, b"late")[0].name
        threading.Thread(target=worker.wake).start()
        [op] = await settle(store, [name], timeout=5.0)
        await worker.stop()
        assert op.state is State.SUCCEEDED

    asyncio.run(main())


def test_cancel_request_stops_the_job_at_its_next_step(tmp_path):
    store = OperationStore(tmp_path / "ops.db")
    name = store.create(KIND, b"long")[0].name
    at_step_2, cancelled, steps = threading.Event(), threading.Event(), []

    def job(op: Operation, reporter: FakeReporter) -> None:
        for step in range(1, 11):
            reporter.advance(step, 10)
            steps.append(step)
            if step == 2:
                at_step_2.set()
                cancelled.wait(10)

    async def main() -> None:
        worker = FakeWorker(store, job, progress_interval=0.01)
        await worker.start()
        await asyncio.to_thread(at_step_2.wait, 10)
        assert store.cancel(name).state is State.RUNNING  # flagged for the worker
        cancelled.set()
        [op] = await settle(store, [name])
        await worker.stop()
        assert op.state is State.CANCELLED and steps == [1, 2]
        progress = progress_of(op)
        assert (progress.step, progress.stage) == (3, "cancelled")

    asyncio.run(main())


def test_stop_mid_job_requeues_and_the_next_worker_finishes_it_once(tmp_path):
    path = tmp_path / "ops.db"
    first_store = OperationStore(path)
    name = first_store.create(KIND, b"survivor")[0].name
    at_step_1, release, finished = threading.Event(), threading.Event(), []

    def job(op: Operation, reporter: FakeReporter) -> None:
        reporter.advance(1, 2)
        if op.attempts == 1:
            at_step_1.set()
            release.wait(10)
        reporter.advance(2, 2)
        finished.append(op.attempts)

    async def main() -> None:
        first = FakeWorker(first_store, job)
        await first.start()
        await asyncio.to_thread(at_step_1.wait, 10)
        stopping = asyncio.create_task(first.stop())
        await asyncio.to_thread(wait_until, first.stopping.is_set)
        release.set()
        await stopping
        op = first_store.get(name)
        assert (op.state, op.attempts, finished) == (State.QUEUED, 1, [])

        second = FakeWorker(OperationStore(path), job)  # the next process, on the same file
        await second.start()
        [op] = await settle(second.store, [name])
        await second.stop()
        assert (op.state, op.attempts, finished) == (State.SUCCEEDED, 2, [2])

    asyncio.run(main())


def test_throttled_progress_is_flushed_while_the_job_waits(tmp_path):
    store = OperationStore(tmp_path / "ops.db")
    name = store.create(KIND, b"slow")[0].name
    seen = {}

    def job(op: Operation, reporter: FakeReporter) -> None:
        reporter.advance(1, 4)  # within the 60 s throttle of the "starting" write: held back
        seen["at_once"] = progress_of(store.get(name))
        wait_until(lambda: progress_of(store.get(name)).step == 1)  # the worker's flush stores it
        seen["flushed"] = progress_of(store.get(name))
        reporter.advance(4, 4)  # the last step is always written
        seen["last"] = progress_of(store.get(name))

    async def main() -> None:
        worker = FakeWorker(store, job, progress_interval=0.02, throttle=60.0)
        await worker.start()
        [op] = await settle(store, [name])
        await worker.stop()
        assert op.state is State.SUCCEEDED

    asyncio.run(main())
    assert (seen["at_once"].step, seen["at_once"].stage) == (0, "starting")
    assert (seen["flushed"].step, seen["flushed"].fraction) == (1, 0.25) and seen["flushed"].HasField("eta")
    assert (seen["last"].step, seen["last"].fraction) == (4, 1.0)


def test_failures_end_failed_with_the_mapped_status(tmp_path):
    store = OperationStore(tmp_path / "ops.db")
    bad, broken = (store.create(KIND, text)[0].name for text in (b"bad", b"broken"))

    def job(op: Operation, reporter: FakeReporter) -> None:
        reporter.advance(1, 2)
        raise ValueError("no good") if op.request == b"bad" else RuntimeError("bug")

    async def main() -> list[Operation]:
        worker = FakeWorker(store, job)
        await worker.start()
        ops = await settle(store, [bad, broken])
        await worker.stop()
        return ops

    for op in asyncio.run(main()):
        assert op.state is State.FAILED and progress_of(op).stage == "failed"
    assert store.get(bad).error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert store.get(broken).error.code == grpc.StatusCode.INTERNAL.value[0]
    assert "error id" in store.get(broken).error.message


def test_server_hooks_close_the_store_only_once_no_job_thread_runs(tmp_path):
    release = threading.Event()

    def stubborn(op: Operation, reporter: FakeReporter) -> None:
        release.wait(10)  # never checks for stop: the thread outlives `stop`

    async def shutdown(worker: FakeWorker, on_shutdown) -> None:
        for hook in reversed(on_shutdown):  # the server runs shutdown hooks in reverse order
            await hook()

    async def main() -> None:
        idle_store = OperationStore(tmp_path / "idle.db")
        idle = FakeWorker(idle_store, lambda op, reporter: None, poll_interval=0.05)
        on_startup, on_shutdown = idle.server_hooks(close_timeout=5)
        for hook in on_startup:
            await hook()
        name = idle_store.create(KIND, b"x")[0].name
        await settle(idle_store, [name])
        await shutdown(idle, on_shutdown)
        try:
            idle_store.get(name)
            raise AssertionError("the store of an idle worker stays open")
        except Exception as exc:  # closed: any use fails
            assert not isinstance(exc, AssertionError)

        busy_store = OperationStore(tmp_path / "busy.db")
        busy = FakeWorker(busy_store, stubborn, poll_interval=0.05)
        on_startup, on_shutdown = busy.server_hooks(close_timeout=0.05)
        for hook in on_startup:
            await hook()
        name = busy_store.create(KIND, b"y")[0].name
        await asyncio.to_thread(wait_until, lambda: busy_store.get(name).state is State.RUNNING)
        close_store, stop = on_shutdown
        with contextlib.suppress(TimeoutError):  # the server's shutdown budget cancels a `stop` that hangs
            await asyncio.wait_for(stop(), timeout=0.2)
        await close_store()
        assert busy_store.get(name).state is State.RUNNING  # left open under the running thread
        release.set()
        await asyncio.to_thread(busy.wait_idle, 10)

    asyncio.run(main())


def test_an_idle_worker_expires_done_operations_past_their_retention(tmp_path):
    deleted: list[str] = []
    store = OperationStore(tmp_path / "ops.db", retention_seconds=0, on_delete=deleted.append)
    name = store.create(KIND, b"x")[0].name

    async def main() -> None:
        worker = FakeWorker(store, lambda op, reporter: None, poll_interval=0.05, expire_interval=0.0)
        await worker.start()
        await asyncio.to_thread(wait_until, lambda: deleted == [name])
        await worker.stop()

    asyncio.run(main())
    assert store.list()[0] == []


def test_a_job_past_its_deadline_fails_with_deadline_exceeded_naming_the_timeout_and_step(tmp_path):
    store = OperationStore(tmp_path / "ops.db")
    name = store.create(KIND, b"endless")[0].name
    steps: list[int] = []

    def endless(op: Operation, reporter: FakeReporter) -> None:
        for step in range(1, 100_000):  # far more than fit in the deadline: stopped by `check`
            time.sleep(0.005)
            reporter.advance(step, 100_000)
            steps.append(step)

    async def main() -> None:
        worker = FakeWorker(store, endless, job_timeout=0.1)
        await worker.start()
        await settle(store, [name], timeout=60)
        await worker.stop()

    asyncio.run(main())
    op = store.get(name)
    assert op.state is State.FAILED and op.error.code == grpc.StatusCode.DEADLINE_EXCEEDED.value[0]
    stopped_at = steps[-1] + 1  # the step whose check raised
    assert (
        op.error.message
        == f"the job ran past its deadline of 0.1 s at step {stopped_at} of 100000 (starting)"
    )
    assert (progress_of(op).stage, progress_of(op).step) == ("failed", stopped_at)


def test_the_deadline_counts_from_start_deadline_and_none_or_zero_means_none(tmp_path):
    store = OperationStore(tmp_path / "ops.db")
    store.create(KIND, b"x")
    reporter = FakeReporter(store, store.claim_next(KIND), threading.Event(), 60.0)
    for none in (None, 0.0):
        reporter.start_deadline(none)
        assert reporter.job_deadline is None
        reporter.check()  # no deadline: never raises
    reporter.start_deadline(1e-6)
    time.sleep(0.01)  # well past it
    with pytest.raises(JobDeadlineExceededError):
        reporter.check()
    assert FakeWorker(store, lambda op, reporter: None, job_timeout=0).job_timeout is None
    with pytest.raises(ValueError):
        FakeWorker(store, lambda op, reporter: None, job_timeout=-1)


def test_an_operation_queued_through_the_same_store_wakes_the_idle_worker(tmp_path):
    polls = []

    class CountingStore(OperationStore):
        def claim_next(self, *args, **kwargs):
            polls.append(None)
            return super().claim_next(*args, **kwargs)

    store = CountingStore(tmp_path / "ops.db")

    async def main() -> None:
        worker = FakeWorker(store, lambda op, reporter: None, poll_interval=3600.0)
        await worker.start()
        await asyncio.to_thread(wait_until, lambda: len(polls) == 1)  # found nothing; sleeps for an hour
        name = store.create(KIND, b"late")[0].name  # no wake(): the store's change notification wakes it
        [op] = await settle(store, [name], timeout=60)
        await worker.stop()
        assert op.state is State.SUCCEEDED

    asyncio.run(main())


def test_the_ending_and_its_final_metadata_are_one_store_write(tmp_path):
    store = OperationStore(tmp_path / "ops.db")
    names = [store.create(KIND, text)[0].name for text in (b"fine", b"bad")]
    heard: list[Change] = []
    store.subscribe(heard.append)

    def job(op: Operation, reporter: FakeReporter) -> None:
        reporter.advance(1, 1)  # the last step: written at once
        if op.request == b"bad":
            raise ValueError("no good")

    async def main() -> None:
        worker = FakeWorker(store, job)
        await worker.start()
        await settle(store, names)
        await worker.stop()

    asyncio.run(main())
    for name, end in zip(names, (State.SUCCEEDED, State.FAILED), strict=True):
        # claim, "starting", step 1, then the ending with its metadata (no separate "done"/"failed" write)
        assert [c.state for c in heard if c.name == name] == [
            State.RUNNING,
            State.RUNNING,
            State.RUNNING,
            end,
        ]
        assert progress_of(store.get(name)).stage == ("done" if end is State.SUCCEEDED else "failed")


# ---- runs after a restart, and the metadata of the store's own changes -------------------------------------------


class VideoLikeReporter(ProgressReporter):
    def metadata(self, state: int, *, end: bool) -> video_pb2.CreateVideoMetadata:
        return video_pb2.CreateVideoMetadata(state=state, progress=self.progress(state), **self.stamps(end))


class VideoLikeWorker(FakeWorker):
    metadata_type = video_pb2.CreateVideoMetadata

    def reporter_for(self, op: Operation) -> VideoLikeReporter:  # type: ignore[override]
        return VideoLikeReporter(self.store, op, self.stopping, self.throttle)


def video_meta(op: Operation) -> video_pb2.CreateVideoMetadata:
    assert op.metadata is not None
    return unpack_any(op.metadata, video_pb2.CreateVideoMetadata)


def test_metadata_after_gives_any_state_bearing_metadata_the_new_state(tmp_path):
    queued = video_pb2.CreateVideoMetadata(
        state=operation_pb2.OPERATION_STATE_QUEUED,
        progress=operation_pb2.Progress(step=0, total_steps=8, stage="queued"),
        queue_position=3,
        engine=video_pb2.ENGINE_MVIDEO,
    )
    queued.create_time.FromSeconds(100)
    cancelled = metadata_after(pack_any(queued), video_pb2.CreateVideoMetadata, State.CANCELLED, 200.0)
    assert cancelled.state == operation_pb2.OPERATION_STATE_CANCELLED and cancelled.queue_position == 0
    assert cancelled.progress.stage == "cancelled" and cancelled.progress.total_steps == 8
    assert (cancelled.create_time.seconds, cancelled.update_time.seconds, cancelled.end_time.seconds) == (
        100,
        200,
        200,
    )
    assert cancelled.engine == video_pb2.ENGINE_MVIDEO  # everything else kept

    running = video_pb2.CreateVideoMetadata(
        state=operation_pb2.OPERATION_STATE_RUNNING,
        progress=operation_pb2.Progress(step=5, total_steps=8, fraction=0.625, stage="denoising"),
    )
    running.start_time.FromSeconds(150)
    running.progress.eta.FromSeconds(9)
    failed = metadata_after(pack_any(running), video_pb2.CreateVideoMetadata, State.FAILED, 300.0)
    assert failed.state == operation_pb2.OPERATION_STATE_FAILED and failed.start_time.seconds == 150
    assert (failed.progress.step, failed.progress.stage, failed.progress.HasField("eta")) == (
        5,
        "failed",
        False,
    )
    requeued = metadata_after(pack_any(running), video_pb2.CreateVideoMetadata, State.QUEUED, 300.0)
    assert requeued.state == operation_pb2.OPERATION_STATE_QUEUED and requeued.progress.step == 5
    assert not requeued.HasField("start_time") and not requeued.HasField("end_time")

    masks = metadata_after(None, masks_pb2.ExtractMasksMetadata, State.SUCCEEDED, 400.0)  # none before
    assert masks.state == operation_pb2.OPERATION_STATE_SUCCEEDED and masks.progress.fraction == 1.0
    other = metadata_after(pack_any(wrappers_pb2.StringValue(value="x")), masks_pb2.ExtractMasksMetadata,
                           State.FAILED, 400.0)  # fmt: skip
    assert other.state == operation_pb2.OPERATION_STATE_FAILED


def test_changes_the_store_makes_alone_get_the_workers_final_metadata(tmp_path):
    store = OperationStore(tmp_path / "ops.db", max_attempts=1)
    orphan = store.create(KIND, b"orphan")[0].name
    claimed = store.claim_next(KIND)
    VideoLikeReporter(store, claimed, threading.Event(), 0.0).advance(3, 8)  # then its process "died"
    assert video_meta(store.get(orphan)).state == operation_pb2.OPERATION_STATE_RUNNING
    queued = store.create(KIND, b"queued", metadata=pack_any(video_pb2.CreateVideoMetadata(
        state=operation_pb2.OPERATION_STATE_QUEUED, queue_position=1)))[0].name  # fmt: skip

    release, names = threading.Event(), []

    def job(op: Operation, reporter: FakeReporter) -> None:
        reporter.advance(1, 2)
        release.wait(10)
        reporter.advance(2, 2)

    async def main() -> None:
        worker = VideoLikeWorker(store, job, poll_interval=0.05, progress_interval=0.01)
        store.cancel(queued)  # the hook is the worker's from its construction
        await worker.start()  # recover fails the orphan: max_attempts=1
        later = store.create(KIND, b"later")[0].name
        names.append(later)
        await asyncio.to_thread(wait_until, lambda: store.get(later).state is State.RUNNING)
        stop = asyncio.create_task(worker.stop())  # the running job goes back to the queue
        await asyncio.to_thread(wait_until, worker.stopping.is_set)
        release.set()
        await stop

    asyncio.run(main())
    failed = store.get(orphan)
    meta = video_meta(failed)
    assert failed.state is State.FAILED and meta.state == operation_pb2.OPERATION_STATE_FAILED
    assert (meta.progress.step, meta.progress.stage) == (3, "failed") and meta.HasField("end_time")
    meta = video_meta(store.get(queued))
    assert meta.state == operation_pb2.OPERATION_STATE_CANCELLED and meta.queue_position == 0
    assert meta.HasField("end_time")
    meta = video_meta(store.get(names[0]))
    assert meta.state == operation_pb2.OPERATION_STATE_QUEUED and meta.progress.stage == "queued"


def test_a_rerun_after_a_restart_never_shows_less_progress_than_before(tmp_path):
    store = OperationStore(tmp_path / "ops.db")
    name = store.create(KIND, b"rerun")[0].name
    claimed = store.claim_next(KIND)
    first = VideoLikeReporter(store, claimed, threading.Event(), 0.0)
    first.stage = "denoising"
    first.advance(6, 10)  # then its process died
    store.recover()
    seen: list[operation_pb2.Progress] = []
    store.subscribe(
        lambda change: (
            change.operation
            and change.operation.metadata
            and seen.append(video_meta(change.operation).progress)
        )
    )

    def job(op: Operation, reporter: FakeReporter) -> None:
        reporter.stage = "denoising"
        for step in range(1, 11):
            reporter.advance(step, 10, force=True)

    async def main() -> None:
        worker = VideoLikeWorker(store, job)
        await worker.start()
        await settle(store, [name])
        await worker.stop()

    asyncio.run(main())
    steps, fractions = [p.step for p in seen], [p.fraction for p in seen]
    assert steps == sorted(steps) and fractions == sorted(fractions) and min(steps) == 6
    assert fractions[0] == pytest.approx(0.6) and (steps[-1], fractions[-1]) == (10, 1.0)
    stages = [p.stage for p in seen]
    assert "denoising (attempt 2: redoing step 1 of 6)" in stages
    assert "denoising (attempt 2: redoing step 5 of 6)" in stages and "denoising" in stages
    assert stages[-1] == "done"
    assert store.get(name).attempts == 2


def test_a_job_that_crashed_its_worker_before_reports_every_step(tmp_path):
    store = OperationStore(tmp_path / "ops.db")
    crashed, fresh = (store.create(KIND, text)[0].name for text in (b"crashed", b"fresh"))
    store.claim_next(KIND)
    store.recover()  # "crashed"'s worker died: one crash
    assert store.get(crashed).crashes == 1
    written: dict[str, list[int]] = {crashed: [], fresh: []}
    store.subscribe(
        lambda c: (
            c.state is State.RUNNING
            and c.operation.metadata
            and written[c.name].append(progress_of(c.operation).step)
        )
    )

    def job(op: Operation, reporter: FakeReporter) -> None:
        for step in range(1, 5):
            reporter.advance(step, 5)

    async def main() -> None:
        worker = FakeWorker(store, job, throttle=60.0)
        await worker.start()
        await settle(store, [crashed, fresh])
        await worker.stop()

    asyncio.run(main())
    assert written[crashed] == [0, 1, 2, 3, 4]  # "starting", then every step
    assert written[fresh] == [0]  # the throttle held the steps back


def test_a_kill_while_the_worker_stops_is_not_the_jobs_fault(tmp_path):
    path = tmp_path / "ops.db"
    store = OperationStore(path, max_attempts=1)
    name = store.create(KIND, b"deploy")[0].name
    started, release = threading.Event(), threading.Event()

    def job(op: Operation, reporter: FakeReporter) -> None:
        started.set()
        release.wait(10)  # a long step: the stop is seen only after it
        reporter.advance(1, 2)

    def stopping_recorded() -> bool:
        return store._conn().execute("SELECT stopping FROM operations WHERE name = ?", (name,)).fetchone()[0]

    async def main() -> None:
        worker = FakeWorker(store, job)
        await worker.start()
        await asyncio.to_thread(started.wait, 10)
        stop = asyncio.create_task(worker.stop())
        await asyncio.to_thread(wait_until, stopping_recorded)
        # SIGKILL now (the grace period ran out): the next process recovers the job; not a crash of the job's
        with OperationStore(path, max_attempts=1) as next_process:
            assert next_process.recover() == [name]
        release.set()
        await stop

    asyncio.run(main())
    op = store.get(name)
    assert (op.state, op.crashes) == (State.QUEUED, 0)
