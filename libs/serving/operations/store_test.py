"""Unit tests of OperationStore: idempotency, state machine, progress, cancellation, paging, expiry, leases,
exclusive claims across threads and processes, the queue limit, change notification and which writes fsync."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import grpc
import pytest
from google.protobuf import wrappers_pb2
from google.rpc import error_details_pb2

from libs.serving.errors import find_detail, status_from_exception
from libs.serving.operations import (
    Change,
    InvalidOperationArgumentError,
    InvalidTransitionError,
    Operation,
    OperationNotFoundError,
    OperationStore,
    QueueFullError,
    RequestIdConflictError,
    StaleAttemptError,
    State,
    is_legal_transition,
    pack_any,
    unpack_any,
)

REPO_ROOT = Path(__file__).resolve().parents[3]
KIND = "video.create"


class FakeClock:
    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


def meta(text: str) -> bytes:
    return pack_any(wrappers_pb2.StringValue(value=text))


@pytest.fixture
def store(tmp_path: Path):
    with OperationStore(tmp_path / "ops.db") as s:
        yield s


def running(store: OperationStore, request: bytes = b"r"):
    op, _ = store.create(KIND, request)
    claimed = store.claim_next(KIND)
    assert claimed is not None and claimed.name == op.name
    return claimed


# ---- creation and idempotency --------------------------------------------------------------------------------


def test_create_defaults_and_name(store):
    op, created = store.create(KIND, b"payload", metadata=meta("queued"))
    assert created
    assert op.name.startswith("operations/video-") and len(op.name) == len("operations/video-") + 32
    assert op.kind == KIND and op.request == b"payload" and op.request_id is None
    assert op.state is State.QUEUED and not op.done
    assert op.progress == 0.0 and op.attempts == 0 and not op.cancel_requested
    assert unpack_any(op.metadata, wrappers_pb2.StringValue).value == "queued"
    assert op.result is None and op.error is None and op.start_time is None and op.expire_time is None
    assert store.get(op.name) == op


def test_same_request_id_returns_existing_operation(store):
    first, created = store.create(KIND, b"same", request_id="req-1")
    again, created_again = store.create(KIND, b"same", request_id="req-1")
    assert created and not created_again
    assert again == first
    # Also once it is done.
    store.claim_next()
    store.finish(first.name, meta("ok"))
    done, created_done = store.create(KIND, b"same", request_id="req-1")
    assert not created_done and done.name == first.name and done.state is State.SUCCEEDED
    assert store.queue_depth() == 0


def test_request_id_reused_with_other_request_is_an_error(store):
    first, _ = store.create(KIND, b"one", request_id="req-1")
    with pytest.raises(RequestIdConflictError) as info:
        store.create(KIND, b"two", request_id="req-1")
    assert info.value.existing_name == first.name
    assert info.value.code.name == "ALREADY_EXISTS"


def test_request_fingerprint_overrides_the_bytes(store):
    first, _ = store.create(KIND, b"one", request_id="req-1", request_fingerprint="fp")
    again, created = store.create(
        KIND, b"differently-serialized", request_id="req-1", request_fingerprint="fp"
    )
    assert not created and again.name == first.name
    with pytest.raises(RequestIdConflictError):
        store.create(KIND, b"one", request_id="req-1", request_fingerprint=b"other")


def test_request_id_is_scoped_by_kind_and_empty_means_none(store):
    a, _ = store.create(KIND, b"x", request_id="req-1")
    b, created = store.create("masks.extract", b"y", request_id="req-1")
    assert created and a.name != b.name and b.name.startswith("operations/masks-")
    c, c_created = store.create(KIND, b"x", request_id="")
    d, d_created = store.create(KIND, b"x", request_id="")
    assert c_created and d_created and c.name != d.name and c.request_id is None


def test_request_id_can_be_reused_after_expiry(tmp_path):
    clock = FakeClock()
    with OperationStore(tmp_path / "ops.db", retention_seconds=10, clock=clock) as store:
        op, _ = store.create(KIND, b"x", request_id="req-1")
        store.cancel(op.name)
        clock.now += 11
        assert store.expire() == 1
        again, created = store.create(KIND, b"other", request_id="req-1")
        assert created and again.name != op.name


@pytest.mark.parametrize("kind", ["", "has space", "../x", "1abc", None])
def test_invalid_kind(store, kind):
    with pytest.raises(InvalidOperationArgumentError):
        store.create(kind, b"x")


def test_payloads_must_be_any(store):
    with pytest.raises(InvalidOperationArgumentError):
        store.create(KIND, b"x", metadata=b"\xff\xff\xff")
    op = running(store)
    with pytest.raises(InvalidOperationArgumentError):
        store.update_progress(op.name, 0.1, b"\xff\xff")
    with pytest.raises(InvalidOperationArgumentError):
        store.finish(op.name, b"\xff\xff")
    with pytest.raises(InvalidOperationArgumentError):
        store.fail(op.name, 13, "x", details=[b"\xff\xff"])
    with pytest.raises(InvalidOperationArgumentError):
        store.fail(op.name, 0, "OK is not a failure")
    assert store.get(op.name).state is State.RUNNING


def test_unknown_name(store):
    for call in (
        lambda: store.get("operations/nope"),
        lambda: store.update_progress("operations/nope", 0.5),
        lambda: store.finish("operations/nope"),
        lambda: store.fail("operations/nope", 2, "x"),
        lambda: store.cancel("operations/nope"),
        lambda: store.delete("operations/nope"),
        lambda: store.mark_cancelled("operations/nope"),
    ):
        with pytest.raises(OperationNotFoundError) as info:
            call()
        assert info.value.code.name == "NOT_FOUND"
        assert "operations/nope" in str(info.value)


# ---- state machine -------------------------------------------------------------------------------------------


def test_transition_table():
    legal = {
        (State.QUEUED, State.RUNNING),
        (State.QUEUED, State.CANCELLED),
        (State.QUEUED, State.FAILED),
        (State.RUNNING, State.QUEUED),
        (State.RUNNING, State.SUCCEEDED),
        (State.RUNNING, State.FAILED),
        (State.RUNNING, State.CANCELLED),
    }
    for src in State:
        for dst in State:
            assert is_legal_transition(src, dst) == ((src, dst) in legal), (src, dst)


def test_happy_path_timestamps_and_result(tmp_path):
    clock = FakeClock()
    with OperationStore(tmp_path / "ops.db", retention_seconds=100, clock=clock) as store:
        op, _ = store.create(KIND, b"x")
        clock.now += 1
        claimed = store.claim_next()
        assert claimed.state is State.RUNNING and claimed.attempts == 1
        assert claimed.start_time == pytest.approx(op.create_time + 1)
        assert claimed.lease_expire_time == pytest.approx(claimed.start_time + store.lease_seconds)
        clock.now += 1
        done = store.finish(op.name, meta("video"), attempt=1)
        assert done.state is State.SUCCEEDED and done.done and done.progress == 1.0
        assert unpack_any(done.result, wrappers_pb2.StringValue).value == "video"
        assert done.finish_time == pytest.approx(op.create_time + 2)
        assert done.expire_time == pytest.approx(done.finish_time + 100)
        assert done.update_time == pytest.approx(done.finish_time)
        assert done.lease_expire_time is None


def test_finish_requires_running(store):
    op, _ = store.create(KIND, b"x")
    with pytest.raises(InvalidTransitionError):
        store.finish(op.name)
    with pytest.raises(InvalidTransitionError):
        store.mark_cancelled(op.name)
    with pytest.raises(InvalidTransitionError):
        store.update_progress(op.name, 0.5)
    with pytest.raises(InvalidTransitionError):
        store.requeue(op.name)


def test_done_operations_never_change(store):
    ops = []
    for end in ("finish", "fail", "cancel"):
        op = running(store)
        if end == "finish":
            store.finish(op.name, meta("r"))
        elif end == "fail":
            store.fail(op.name, 13, "boom")
        else:
            store.cancel(op.name)
            store.mark_cancelled(op.name)
        ops.append(store.get(op.name))
    for op in ops:
        assert op.done
        for method, args in (
            (store.finish, (op.name, meta("again"))),
            (store.fail, (op.name, 2, "again")),
            (store.mark_cancelled, (op.name,)),
            (store.update_progress, (op.name, 1.0)),
            (store.requeue, (op.name,)),
            (store.heartbeat, (op.name,)),
        ):
            with pytest.raises(InvalidTransitionError):
                method(*args)
        assert store.cancel(op.name) == op  # no-op
        assert store.get(op.name) == op
    assert store.claim_next() is None
    assert store.recover() == []


def test_fail_with_details_and_status_code(store):
    import grpc

    op = running(store)
    info = error_details_pb2.ErrorInfo(reason="OUT_OF_MEMORY", domain="kmono.video")
    failed = store.fail(op.name, grpc.StatusCode.RESOURCE_EXHAUSTED, "GPU OOM", details=[pack_any(info)])
    assert failed.state is State.FAILED and failed.error.code == 8 and failed.error.message == "GPU OOM"
    assert unpack_any(failed.error.details[0], error_details_pb2.ErrorInfo) == info
    assert failed.expire_time is not None


def test_fail_from_queued(store):
    op, _ = store.create(KIND, b"x")
    failed = store.fail(op.name, 3, "rejected before running")
    assert failed.state is State.FAILED and failed.attempts == 0
    # ... but not for a worker holding an attempt: a queued operation has no current attempt.
    other, _ = store.create(KIND, b"y")
    with pytest.raises(StaleAttemptError):
        store.fail(other.name, 3, "x", attempt=0)


# ---- progress ------------------------------------------------------------------------------------------------


def test_progress_is_monotonic_and_clamped(store):
    op = running(store)
    assert store.update_progress(op.name, 0.4, meta("a")).progress == pytest.approx(0.4)
    lower = store.update_progress(op.name, 0.2, meta("b"))
    assert lower.progress == pytest.approx(0.4)
    assert unpack_any(lower.metadata, wrappers_pb2.StringValue).value == "b"  # metadata is the latest
    assert store.update_progress(op.name, 7.0).progress == 1.0
    assert unpack_any(store.get(op.name).metadata, wrappers_pb2.StringValue).value == "b"  # None keeps it
    assert store.update_progress(op.name, -3.0).progress == 1.0
    with pytest.raises(InvalidOperationArgumentError):
        store.update_progress(op.name, float("nan"))


def test_progress_renews_lease(tmp_path):
    clock = FakeClock()
    with OperationStore(tmp_path / "ops.db", lease_seconds=10, clock=clock) as store:
        store.create(KIND, b"x")
        op = store.claim_next(lease_seconds=5)
        assert op.lease_expire_time == pytest.approx(clock.now + 5)
        clock.now += 3
        assert store.update_progress(op.name, 0.1).lease_expire_time == pytest.approx(clock.now + 5)
        clock.now += 3
        assert store.heartbeat(op.name, attempt=1).lease_expire_time == pytest.approx(clock.now + 5)


def test_requeued_operation_keeps_progress(store):
    op = running(store)
    store.update_progress(op.name, 0.6)
    requeued = store.requeue(op.name, attempt=1)
    assert requeued.state is State.QUEUED and requeued.progress == pytest.approx(0.6)
    again = store.claim_next()
    assert again.attempts == 2
    assert store.update_progress(op.name, 0.1, attempt=2).progress == pytest.approx(0.6)


# ---- cancellation --------------------------------------------------------------------------------------------


def test_cancel_queued_is_immediate(store):
    op, _ = store.create(KIND, b"x")
    cancelled = store.cancel(op.name)
    assert cancelled.state is State.CANCELLED and cancelled.done
    assert cancelled.error.code == 1 and cancelled.expire_time is not None
    assert store.is_cancel_requested(op.name)
    assert store.claim_next() is None


def test_cancel_running_sets_flag_then_worker_marks(store):
    op = running(store)
    assert not store.is_cancel_requested(op.name)
    flagged = store.cancel(op.name)
    assert flagged.state is State.RUNNING and flagged.cancel_requested
    assert store.is_cancel_requested(op.name)
    assert store.cancel(op.name) == flagged  # idempotent
    cancelled = store.mark_cancelled(op.name, attempt=1)
    assert cancelled.state is State.CANCELLED and cancelled.error.code == 1


def test_worker_may_finish_despite_cancel_request(store):
    op = running(store)
    store.cancel(op.name)
    assert store.finish(op.name, meta("r")).state is State.SUCCEEDED


def test_requeue_of_cancel_requested_operation_cancels_it(store):
    op = running(store)
    store.cancel(op.name)
    assert store.requeue(op.name).state is State.CANCELLED


def test_is_cancel_requested_for_a_deleted_operation(store):
    op = running(store)
    store.delete(op.name, force=True)
    assert store.is_cancel_requested(op.name)
    with pytest.raises(OperationNotFoundError):
        store.update_progress(op.name, 0.5)


# ---- delete and expire ---------------------------------------------------------------------------------------


def test_delete(store):
    op, _ = store.create(KIND, b"x")
    with pytest.raises(InvalidTransitionError):
        store.delete(op.name)
    store.cancel(op.name)
    store.delete(op.name)
    with pytest.raises(OperationNotFoundError):
        store.get(op.name)
    with pytest.raises(OperationNotFoundError):
        store.delete(op.name)


def test_expire_deletes_only_done_operations_past_retention(tmp_path):
    clock = FakeClock()
    with OperationStore(tmp_path / "ops.db", retention_seconds=60, clock=clock) as store:
        queued, _ = store.create(KIND, b"q")
        run = store.create(KIND, b"r")[0]
        old = store.create(KIND, b"o")[0]
        store.claim_next()  # queued
        store.claim_next()  # run
        store.cancel(old.name)
        clock.now += 30
        young = store.create(KIND, b"y")[0]
        store.fail(young.name, 2, "x")
        clock.now += 31  # old expired (61 s), young not (31 s)
        assert store.expire() == 1
        names = {op.name for op in store.list()[0]}
        assert names == {queued.name, run.name, young.name}
        assert store.expire(now=clock.now + 10_000) == 1  # only young: queued/run are not done
        assert {op.name for op in store.list()[0]} == {queued.name, run.name}


def test_on_delete_hears_of_every_deleted_record_and_its_failure_is_not_raised(tmp_path, caplog):
    clock, heard = FakeClock(), []

    def on_delete(name: str) -> None:
        heard.append(name)
        if name.endswith("boom") or len(heard) == 2:
            raise OSError("artifact store down")

    with OperationStore(tmp_path / "ops.db", retention_seconds=60, clock=clock, on_delete=on_delete) as store:
        deleted = store.create(KIND, b"d")[0]
        store.cancel(deleted.name)
        store.delete(deleted.name)
        old = store.create(KIND, b"o")[0]
        store.cancel(old.name)
        live = store.create(KIND, b"l")[0]
        clock.now += 61
        assert store.expire() == 1  # the failing callback does not stop the expiry
        assert heard == [deleted.name, old.name] and live.name not in heard
        assert "artifact store down" in caplog.text
        with pytest.raises(OperationNotFoundError):
            store.get(old.name)


# ---- listing -------------------------------------------------------------------------------------------------


def test_pagination_walks_every_operation_once(store):
    created = [store.create(KIND, str(i).encode())[0].name for i in range(10)]
    seen, token, pages = [], "", 0
    while True:
        page, token = store.list(page_size=3, page_token=token)
        pages += 1
        assert len(page) <= 3
        seen += [op.name for op in page]
        if not token:
            break
    assert seen == created  # oldest first, no duplicates, no gaps
    assert pages == 4


def test_pagination_is_stable_under_concurrent_changes(store):
    created = [store.create(KIND, str(i).encode())[0].name for i in range(10)]
    page, token = store.list(page_size=4)
    assert [op.name for op in page] == created[:4]
    store.cancel(created[5])
    store.delete(created[5])
    newer = store.create(KIND, b"new")[0].name
    rest = []
    while token:
        page, token = store.list(page_size=4, page_token=token)
        rest += [op.name for op in page]
    assert rest == [*created[4:5], *created[6:], newer]


def test_list_filters(store):
    a = store.create(KIND, b"a")[0]
    b = store.create("masks.extract", b"b")[0]
    c = store.create(KIND, b"c")[0]
    store.claim_next(KIND)  # a -> RUNNING
    store.cancel(c.name)
    assert [op.name for op in store.list(kind=KIND)[0]] == [a.name, c.name]
    assert [op.name for op in store.list(states=[State.QUEUED])[0]] == [b.name]
    assert [op.name for op in store.list(states=["RUNNING", "CANCELLED"])[0]] == [a.name, c.name]
    assert store.list(kind=KIND, states=[State.QUEUED]) == ([], "")
    assert store.list(states=[]) == ([], "")
    with pytest.raises(InvalidOperationArgumentError):
        store.list(states=["BOGUS"])


def test_page_token_is_validated(store):
    for i in range(5):
        store.create(KIND, str(i).encode())
    _, token = store.list(page_size=2)
    assert token
    with pytest.raises(InvalidOperationArgumentError):
        store.list(page_size=2, page_token="garbage!")
    with pytest.raises(InvalidOperationArgumentError):
        store.list(page_size=2, page_token=token, kind=KIND)  # token was issued for another filter
    with pytest.raises(InvalidOperationArgumentError):
        store.list(page_size=-1)
    assert len(store.list(page_size=0)[0]) == 5  # 0 -> default size


def test_queue_depth_and_counts(store):
    for i in range(4):
        store.create(KIND, str(i).encode())
    store.create("masks.extract", b"m")
    store.claim_next(KIND)
    assert store.queue_depth() == 4
    assert store.queue_depth(KIND) == 3
    assert store.queue_depth("masks.extract") == 1
    counts = store.counts()
    assert counts[State.QUEUED] == 4 and counts[State.RUNNING] == 1 and counts[State.SUCCEEDED] == 0
    assert store.counts(KIND)[State.QUEUED] == 3


def test_create_with_max_queued_refuses_a_new_operation_when_full(store):
    kept = [store.create(KIND, str(i).encode(), request_id=f"r{i}", max_queued=2)[0] for i in range(2)]
    store.create("masks.extract", b"other kind")  # other kinds do not count
    with pytest.raises(QueueFullError) as error:
        store.create(KIND, b"new", max_queued=2)
    with pytest.raises(QueueFullError):
        store.create(KIND, b"new with an id", request_id="r-new", max_queued=2)
    status = status_from_exception(error.value)
    assert status.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
    assert find_detail(status, error_details_pb2.RetryInfo).retry_delay.seconds == 10
    assert find_detail(status, error_details_pb2.ErrorInfo).reason == "QUEUE_FULL"
    # A retry of a queued request (AIP-155) is never refused, and a refused request left nothing behind.
    again, created = store.create(KIND, b"0", request_id="r0", max_queued=2)
    assert not created and again.name == kept[0].name
    assert store.queue_depth(KIND) == 2 and len(store.list()[0]) == 3
    store.claim_next(KIND)  # a RUNNING operation no longer waits: room for one
    assert store.create(KIND, b"new", max_queued=2)[1]


def test_max_queued_holds_under_concurrent_creates(store):
    created: list[str] = []
    refused = []
    start = threading.Barrier(4)

    def client(i: int) -> None:
        start.wait()
        for j in range(10):
            try:
                created.append(store.create(KIND, f"{i}-{j}".encode(), max_queued=7)[0].name)
            except QueueFullError:
                refused.append((i, j))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(created) == 7 and len(refused) == 33 and store.queue_depth(KIND) == 7


# ---- claiming ------------------------------------------------------------------------------------------------


def test_claim_next_is_fifo_and_filters_by_kind(store):
    names = [store.create(KIND, str(i).encode())[0].name for i in range(3)]
    mask = store.create("masks.extract", b"m")[0].name
    assert store.claim_next("masks.extract").name == mask
    assert [store.claim_next().name for _ in range(3)] == names
    assert store.claim_next() is None
    store.create(KIND, b"z")
    assert store.claim_next(worker_id="w").worker_id == "w"


def test_claim_next_exclusive_across_threads(store):
    names = {store.create(KIND, str(i).encode())[0].name for i in range(50)}
    claimed: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(4)

    def worker() -> None:
        start.wait()
        while (op := store.claim_next(KIND)) is not None:
            store.finish(op.name, meta("done"), attempt=op.attempts)
            with lock:
                claimed.append(op.name)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(claimed) == 50 and set(claimed) == names
    assert store.counts()[State.SUCCEEDED] == 50
    assert all(op.attempts == 1 for op in store.list(page_size=100)[0])


WORKER_SCRIPT = """
import sys
from libs.serving.operations import OperationStore, pack_any
from google.protobuf import empty_pb2
store = OperationStore(sys.argv[1])
sys.stdin.readline()  # start together
while (op := store.claim_next("video.create")) is not None:
    store.finish(op.name, pack_any(empty_pb2.Empty()), attempt=op.attempts)
    print(op.name, flush=True)
"""


def test_claim_next_exclusive_across_processes(tmp_path):
    path = tmp_path / "ops.db"
    with OperationStore(path) as store:
        names = {store.create(KIND, str(i).encode())[0].name for i in range(50)}
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", WORKER_SCRIPT, str(path)],
                cwd=REPO_ROOT,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        for proc in procs:
            proc.stdin.write("go\n")
            proc.stdin.flush()
        outputs = [proc.communicate(timeout=30)[0].split() for proc in procs]
        assert all(proc.returncode == 0 for proc in procs)
        claimed = outputs[0] + outputs[1]
        assert sorted(claimed) == sorted(names)  # each exactly once
        assert store.counts()[State.SUCCEEDED] == 50


# ---- recovery ------------------------------------------------------------------------------------------------


def test_recover_requeues_running(store):
    op = running(store)
    queued, _ = store.create(KIND, b"q")
    assert store.recover() == [op.name]
    recovered = store.get(op.name)
    assert recovered.state is State.QUEUED and recovered.attempts == 1 and recovered.worker_id is None
    assert store.get(queued.name).state is State.QUEUED
    assert store.claim_next().name == op.name  # it keeps its place at the head of the queue


def test_recover_expired_only_spares_live_leases(tmp_path):
    clock = FakeClock()
    with OperationStore(tmp_path / "ops.db", lease_seconds=10, clock=clock) as store:
        store.create(KIND, b"a")
        store.create(KIND, b"b")
        stale = store.claim_next()
        live = store.claim_next()
        clock.now += 8
        store.heartbeat(live.name)
        clock.now += 5  # stale's lease ran out 3 s ago; live's has 5 s left
        assert store.recover(expired_only=True) == [stale.name]
        assert store.get(live.name).state is State.RUNNING
        assert store.recover(expired_only=True, now=clock.now + 6) == [live.name]


def test_recover_cancels_cancel_requested_and_fails_crash_loops(tmp_path):
    with OperationStore(tmp_path / "ops.db", max_attempts=2) as store:
        to_cancel = running(store)
        store.cancel(to_cancel.name)
        poison = running(store)
        assert store.recover() == [poison.name]
        assert store.get(to_cancel.name).state is State.CANCELLED
        assert store.claim_next().attempts == 2
        assert store.recover() == []
        failed = store.get(poison.name)
        assert (
            failed.state is State.FAILED and failed.error.code == 13 and "2 attempts" in failed.error.message
        )


def crash(store: OperationStore, reached: float) -> Operation:
    """Claim the operation at the head of the queue, let the attempt get to `reached`, and "kill" its worker:
    `recover` (as the next process's start-up does) finds it orphaned."""
    claimed = store.claim_next()
    assert claimed is not None
    store.update_progress(claimed.name, reached, attempt=claimed.attempts)
    store.recover()
    return store.get(claimed.name)


def test_a_job_killed_at_the_same_point_each_time_fails_after_max_attempts_crashes_in_a_row(tmp_path):
    with OperationStore(tmp_path / "ops.db", max_attempts=3) as store:
        name = store.create(KIND, b"poison")[0].name
        assert [crash(store, 0.4).crashes for _ in range(2)] == [1, 2]
        assert store.get(name).state is State.QUEUED
        failed = crash(store, 0.3)  # no further than the attempt before: the third in a row
        assert failed.state is State.FAILED and failed.attempts == 3 and failed.crashes == 3
        assert failed.error.code == grpc.StatusCode.INTERNAL.value[0]
        assert "died during 3 attempts in a row" in failed.error.message
        assert "each getting no further than the one before (30% done)" in failed.error.message
        assert store.claim_next() is None


def test_a_job_killed_from_outside_at_random_points_is_not_blamed_while_it_gets_further(tmp_path):
    with OperationStore(tmp_path / "ops.db", max_attempts=3) as store:
        name = store.create(KIND, b"healthy")[0].name
        # kills land wherever they land: each time the job got further than the last time, the run restarts
        runs = [crash(store, reached).crashes for reached in (0.1, 0.05, 0.3, 0.2, 0.5, 0.6, 0.4, 0.7, 0.9)]
        assert runs == [1, 2, 1, 2, 1, 1, 2, 1, 1]
        op = store.get(name)
        assert op.state is State.QUEUED and op.attempts == 9
        claimed = store.claim_next()
        assert store.finish(name, meta("done"), attempt=claimed.attempts).state is State.SUCCEEDED


def test_a_worker_killed_while_shutting_down_costs_its_job_nothing(tmp_path):
    with OperationStore(tmp_path / "ops.db", max_attempts=2) as store:
        name = store.create(KIND, b"deploys")[0].name
        for _ in range(5):  # SIGKILL at the end of each deploy's grace period, the job still running
            claimed = store.claim_next()
            store.mark_stopping(name, attempt=claimed.attempts)
            assert store.recover() == [name]
            assert store.get(name).crashes == 0
        assert crash(store, 0.0).crashes == 1  # a crash outside a shutdown still counts
        claimed = store.claim_next()
        store.mark_stopping(name, attempt=claimed.attempts - 1)  # a stale attempt: no-op
        store.recover()
        assert store.get(name).state is State.FAILED  # the second crash in a row, no further


def test_mark_stopping_is_a_no_op_once_the_attempt_ended(store):
    op = running(store)
    store.finish(op.name, meta("r"), attempt=op.attempts)
    store.mark_stopping(op.name, attempt=op.attempts)
    store.mark_stopping("operations/video-gone")
    assert store.get(op.name).state is State.SUCCEEDED


def test_a_schema_1_file_gains_the_new_columns(tmp_path):
    path = tmp_path / "ops.db"
    with OperationStore(path) as store:
        name = store.create(KIND, b"old")[0].name
        store.claim_next()
        conn = store._conn()
        for column in ("crashes", "crash_progress", "attempt_progress", "stopping"):
            conn.execute(f"ALTER TABLE operations DROP COLUMN {column}")
        conn.execute("PRAGMA user_version = 1")
    with OperationStore(path) as store:
        assert store.recover() == [name]
        op = store.get(name)
        assert op.state is State.QUEUED and op.crashes == 1
        assert store._conn().execute("PRAGMA user_version").fetchone()[0] == 2


# ---- the metadata of the store's own changes ---------------------------------------------------------------------


def test_the_kinds_metadata_hook_writes_the_metadata_of_every_change_the_store_makes_alone(tmp_path):
    calls: list[tuple[str, State, State]] = []

    def hook(op: Operation, state: State) -> bytes:
        calls.append((op.request.decode(), op.state, state))
        return meta(f"{op.request.decode()} {state.value}")

    with OperationStore(tmp_path / "ops.db", max_attempts=1) as store:
        store.set_metadata_hook(KIND, hook)
        names = {}
        for request in (b"cancelled-queued", b"failed-queued", b"requeued", b"recover-cancel", b"poison"):
            names[request.decode()] = store.create(KIND, request, metadata=meta("QUEUED 3 ahead"))[0].name
        other = store.create("masks.extract", b"other kind", metadata=meta("mine"))[0].name
        store.cancel(names["cancelled-queued"])
        store.fail(names["failed-queued"], 3, "rejected")
        op = store.claim_next(KIND)
        assert op.name == names["requeued"]
        store.requeue(op.name, attempt=op.attempts)
        requeued = store.get(op.name)
        store.claim_next(KIND)  # "requeued" again
        store.fail(op.name, 13, "boom", metadata=meta("the worker's own"))  # given: the hook is not asked
        store.cancel(store.claim_next(KIND).name)  # "recover-cancel": RUNNING with a cancel request
        store.claim_next(KIND)  # "poison"
        store.recover()  # cancels one, fails the other (max_attempts=1)
        store.claim_next("masks.extract")
        store.recover()  # another kind: no hook

        def text(name: str) -> str:
            return unpack_any(store.get(name).metadata, wrappers_pb2.StringValue).value

        assert text(names["cancelled-queued"]) == "cancelled-queued CANCELLED"
        assert text(names["failed-queued"]) == "failed-queued FAILED"
        assert unpack_any(requeued.metadata, wrappers_pb2.StringValue).value == "requeued QUEUED"
        assert text(names["requeued"]) == "the worker's own"
        assert text(names["recover-cancel"]) == "recover-cancel CANCELLED"
        assert store.get(names["poison"]).state is State.FAILED and text(names["poison"]) == "poison FAILED"
        assert unpack_any(store.get(other).metadata, wrappers_pb2.StringValue).value == "mine"
        assert calls == [
            ("cancelled-queued", State.QUEUED, State.CANCELLED),
            ("failed-queued", State.QUEUED, State.FAILED),
            ("requeued", State.RUNNING, State.QUEUED),
            ("recover-cancel", State.RUNNING, State.CANCELLED),
            ("poison", State.RUNNING, State.FAILED),
        ]
        store.set_metadata_hook(KIND, None)
        done = store.finish(running(store, b"unhooked").name)
        assert done.metadata is None


@pytest.mark.parametrize("answer", [RuntimeError("bug in the hook"), b"\xff\xff not an Any"])
def test_a_failing_metadata_hook_never_blocks_the_change(tmp_path, answer, caplog):
    def hook(op: Operation, state: State) -> bytes:
        if isinstance(answer, Exception):
            raise answer
        return answer

    with OperationStore(tmp_path / "ops.db") as store:
        store.set_metadata_hook(KIND, hook)
        name = store.create(KIND, b"x", metadata=meta("queued"))[0].name
        cancelled = store.cancel(name)
    assert cancelled.state is State.CANCELLED
    assert unpack_any(cancelled.metadata, wrappers_pb2.StringValue).value == "queued"
    assert "the metadata hook of video.create failed" in caplog.text


def test_stale_attempt_is_refused(store):
    op = running(store)
    store.recover()
    with pytest.raises(StaleAttemptError):
        store.update_progress(op.name, 0.5, attempt=1)  # re-queued, not yet claimed again
    again = store.claim_next()
    assert again.attempts == 2
    for call in (
        lambda: store.finish(op.name, meta("old"), attempt=1),
        lambda: store.fail(op.name, 2, "old", attempt=1),
        lambda: store.mark_cancelled(op.name, attempt=1),
        lambda: store.requeue(op.name, attempt=1),
        lambda: store.heartbeat(op.name, attempt=1),
    ):
        with pytest.raises(StaleAttemptError):
            call()
    assert store.finish(op.name, meta("new"), attempt=2).state is State.SUCCEEDED
    with pytest.raises(InvalidTransitionError):
        store.finish(op.name, meta("twice"), attempt=2)


def test_an_ending_may_set_the_final_metadata_in_the_same_write(store):
    done = store.finish(running(store, b"a").name, meta("result"), metadata=meta("final a"))
    failed = store.fail(running(store, b"b").name, 13, "boom", metadata=meta("final b"))
    cancelled = store.mark_cancelled(running(store, b"c").name, metadata=meta("final c"))
    for op, text in ((done, "final a"), (failed, "final b"), (cancelled, "final c")):
        assert op.done and unpack_any(op.metadata, wrappers_pb2.StringValue).value == text
    kept = store.finish(running(store, b"d").name, metadata=None)
    assert kept.metadata is None  # none given: the metadata is left as it was
    with pytest.raises(InvalidOperationArgumentError):
        store.finish(running(store, b"e").name, metadata=b"\xff\xff")


# ---- change notification -------------------------------------------------------------------------------------


def test_subscribers_hear_each_committed_change_once_it_is_committed(store, caplog):
    heard: list[Change] = []
    seen_in_file: list[State | None] = []

    def read_committed(name: str) -> None:
        try:
            seen_in_file.append(store.get(name).state)
        except OperationNotFoundError:
            seen_in_file.append(None)

    def every(change: Change) -> None:
        heard.append(change)
        # Another thread has its own connection, which sees only committed writes: the change is committed.
        reader = threading.Thread(target=read_committed, args=(change.name,))
        reader.start()
        reader.join()

    unsubscribe = store.subscribe(every)
    op, _ = store.create(KIND, b"x")
    one: list[Change] = []
    store.subscribe(one.append, name=op.name)
    other = store.create("masks.extract", b"y")[0]
    claimed = store.claim_next(KIND)
    store.update_progress(op.name, 0.5, attempt=claimed.attempts)
    with pytest.raises(InvalidTransitionError):
        store.requeue(other.name)  # refused, rolled back: nothing to hear
    store_done = store.finish(op.name, meta("done"), attempt=claimed.attempts)
    store.delete(op.name)
    expected = [
        Change(op.name, KIND, State.QUEUED),
        Change(other.name, "masks.extract", State.QUEUED),
        Change(op.name, KIND, State.RUNNING),
        Change(op.name, KIND, State.RUNNING),
        Change(op.name, KIND, State.SUCCEEDED),
        Change(op.name, KIND, None),
    ]
    assert [(c.name, c.kind, c.state) for c in heard] == [(c.name, c.kind, c.state) for c in expected]
    assert seen_in_file == [change.state for change in expected]
    for change in heard:  # each carries the operation as it left it
        assert change.operation is None if change.state is None else change.operation.state is change.state
    assert heard[4].operation == store_done and heard[3].operation.progress == 0.5
    assert one == heard[2:]  # only its own operation's, from when it subscribed

    unsubscribe()
    store.subscribe(lambda change: 1 / 0)  # a failing subscriber is logged; the write stands
    name = store.create(KIND, b"z")[0].name
    assert store.get(name).state is State.QUEUED and "a subscriber of" in caplog.text
    assert len(heard) == len(expected)  # unsubscribed


def test_progress_writes_skip_the_fsync_but_writes_that_accept_or_end_work_do_not(tmp_path):
    def synchronous(store: OperationStore) -> int:
        return store._conn().execute("PRAGMA synchronous").fetchone()[0]

    with OperationStore(tmp_path / "ops.db") as store:
        op = store.create(KIND, b"x")[0]
        assert synchronous(store) == 2  # FULL
        claimed = store.claim_next(KIND)
        assert synchronous(store) == 1  # NORMAL: survives kill -9 (recovery_test), not power loss
        store.update_progress(op.name, 0.5, attempt=claimed.attempts)
        store.heartbeat(op.name, attempt=claimed.attempts)
        assert synchronous(store) == 1
        store.finish(op.name, meta("done"), attempt=claimed.attempts)
        assert synchronous(store) == 2
    with OperationStore(tmp_path / "a.db", progress_synchronous="FULL") as store:
        store.update_progress(running(store).name, 0.5)
        assert synchronous(store) == 2
    with OperationStore(tmp_path / "b.db", synchronous="NORMAL", progress_synchronous="FULL") as store:
        store.update_progress(running(store).name, 0.5)  # never stronger than `synchronous`
        assert synchronous(store) == 1
    with pytest.raises(ValueError):
        OperationStore(tmp_path / "c.db", progress_synchronous="SOMETIMES")


# ---- files, threads, processes -------------------------------------------------------------------------------


def test_store_reopens_and_uses_wal(tmp_path):
    path = tmp_path / "sub" / "ops.db"
    with OperationStore(path) as store:
        op = store.create(KIND, b"x")[0]
        mode = store._conn().execute("PRAGMA journal_mode").fetchone()[0]
        sync = store._conn().execute("PRAGMA synchronous").fetchone()[0]
    assert mode == "wal" and sync == 2  # FULL
    with OperationStore(path) as again:
        assert again.get(op.name) == op
    with pytest.raises(RuntimeError):
        again.get(op.name)
    with pytest.raises(ValueError):
        OperationStore(":memory:")


def test_forked_child_gets_its_own_connection(store):
    import os

    op = store.create(KIND, b"x")[0]
    pid = os.fork()
    if pid == 0:  # child: uses the inherited store object
        code = 0
        try:
            claimed = store.claim_next()
            store.finish(claimed.name, meta("child"))
        except BaseException:
            code = 1
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert store.get(op.name).state is State.SUCCEEDED
    assert store.create(KIND, b"y")[1]  # the parent's connection still works
