"""Crash recovery: a process that holds a RUNNING operation is killed with SIGKILL; a fresh store on the same
file re-queues the operation, it runs to completion exactly once, and the dead attempt cannot finish it. A real
worker process killed from outside more often than `max_attempts` still finishes a healthy job; a job that kills
its worker process each time FAILS after `max_attempts` attempts, saying why."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from google.protobuf import wrappers_pb2

from libs.serving.operations import (
    InvalidTransitionError,
    OperationStore,
    StaleAttemptError,
    State,
    pack_any,
    unpack_any,
)

REPO_ROOT = Path(__file__).resolve().parents[3]

CRASHING_WORKER = """
import sys, time
from libs.serving.operations import OperationStore
store = OperationStore(sys.argv[1])
op, _ = store.create("video.create", b"make a video", request_id="req-crash")
claimed = store.claim_next("video.create")
store.update_progress(claimed.name, 0.3, attempt=claimed.attempts)
print(claimed.name, claimed.attempts, flush=True)
time.sleep(60)
"""


def test_operation_survives_sigkill_and_finishes_once(tmp_path):
    path = tmp_path / "ops.db"
    proc = subprocess.Popen(
        [sys.executable, "-c", CRASHING_WORKER, str(path)], cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        line = proc.stdout.readline().split()
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    name, old_attempt = line[0], int(line[1])
    assert old_attempt == 1

    with OperationStore(path) as store:
        orphan = store.get(name)
        assert orphan.state is State.RUNNING and orphan.progress == pytest.approx(0.3)

        assert store.recover() == [name]
        queued = store.get(name)
        assert queued.state is State.QUEUED and queued.attempts == 1

        # A client retrying its create with the same request_id still gets this operation.
        same, created = store.create("video.create", b"make a video", request_id="req-crash")
        assert not created and same.name == name

        claimed = store.claim_next("video.create")
        assert claimed.name == name and claimed.attempts == 2
        assert store.claim_next("video.create") is None  # claimed exactly once

        with pytest.raises(StaleAttemptError):  # the dead attempt, had it survived, could not finish it
            store.finish(name, pack_any(wrappers_pb2.StringValue(value="stale")), attempt=old_attempt)
        done = store.finish(name, pack_any(wrappers_pb2.StringValue(value="fresh")), attempt=claimed.attempts)
        assert done.state is State.SUCCEEDED
        with pytest.raises(InvalidTransitionError):
            store.finish(name, pack_any(wrappers_pb2.StringValue(value="twice")), attempt=claimed.attempts)

        assert unpack_any(store.get(name).result, wrappers_pb2.StringValue).value == "fresh"
        assert store.recover() == []
        assert store.counts()[State.SUCCEEDED] == 1 and store.queue_depth() == 0


# A worker process as a service runs one (no gRPC: the OperationWorker and its store are all that matter here).
# The job's request says how many steps it has, how long each takes, and at which step it kills its process.
WORKER_PROCESS = """
import asyncio, os, sys, time
from google.protobuf import wrappers_pb2
from libs.serving.operations import OperationStore, OperationWorker, ProgressReporter

class Reporter(ProgressReporter):
    def metadata(self, state, *, end):
        return self.progress(state)

class Worker(OperationWorker):
    def reporter_for(self, op):
        return Reporter(self.store, op, self.stopping, 0.05)

    def run(self, op, reporter):
        spec = dict(part.split("=") for part in op.request.decode().split())
        steps, delay, crash_at = int(spec["steps"]), float(spec["delay"]), int(spec.get("crash_at", 0))
        for step in range(1, steps + 1):
            if step == crash_at:
                os._exit(3)  # the job kills its own worker (a segfault, an abort in native code, ...)
            time.sleep(delay)
            reporter.advance(step, steps)
        return wrappers_pb2.StringValue(value="done")

async def main():
    worker = Worker(OperationStore(sys.argv[1]), "test.job", poll_interval=0.02, progress_interval=0.02)
    await worker.start()
    await asyncio.Event().wait()  # runs until killed

asyncio.run(main())
"""


def start_worker(path: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", WORKER_PROCESS, str(path)], cwd=REPO_ROOT)


def wait_for(condition, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


def attempt_and_progress(store: OperationStore, name: str) -> tuple[int, float]:
    row = (
        store._conn()
        .execute("SELECT attempts, attempt_progress FROM operations WHERE name = ?", (name,))
        .fetchone()
    )
    return row["attempts"], row["attempt_progress"]


def test_a_healthy_job_survives_more_kill_9s_of_its_server_than_max_attempts(tmp_path):
    path = tmp_path / "ops.db"
    with OperationStore(path) as store:  # the default max_attempts (5)
        assert store.max_attempts == 5
        name = store.create("test.job", b"steps=40 delay=0.02")[0].name
        last = 0.0  # how far the job had got when its last worker died
        for kill in range(1, 7):  # six kill -9s, each while the job runs, each later into it than the last
            process = start_worker(path)
            try:

                def further(kill: int = kill, last: float = last) -> bool:
                    assert not store.get(name).done, store.get(name).error
                    attempt, reached = attempt_and_progress(store, name)
                    return attempt == kill and reached > last

                wait_for(further, f"attempt {kill} to get further than {last:.0%}")
            finally:
                os.kill(process.pid, signal.SIGKILL)
                process.wait(10)
            assert store.get(name).state is State.RUNNING  # orphaned mid-job
            last = attempt_and_progress(store, name)[1]
        process = start_worker(path)
        try:
            wait_for(lambda: store.get(name).done, "the job to end")
        finally:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(10)
        done = store.get(name)
        assert done.state is State.SUCCEEDED, done.error
        assert done.attempts == 7 and unpack_any(done.result, wrappers_pb2.StringValue).value == "done"


def test_a_job_that_kills_its_worker_each_time_fails_after_max_attempts_with_the_reason(tmp_path):
    path = tmp_path / "ops.db"
    with OperationStore(path) as store:
        # Steps slower than the progress throttle (as real denoising steps are): every step is on record.
        name = store.create("test.job", b"steps=6 delay=0.1 crash_at=3")[0].name
        exits = []
        for _ in range(8):  # restarted after each crash, as Kubernetes restarts a pod
            process = start_worker(path)
            try:

                def crashed_or_done(process: subprocess.Popen = process) -> bool:
                    return process.poll() is not None or store.get(name).done

                wait_for(crashed_or_done, "a crash or the end")
            finally:
                if process.poll() is None:
                    os.kill(process.pid, signal.SIGKILL)
                exits.append(process.wait(10))
            if store.get(name).done:
                break
        failed = store.get(name)
    assert exits[:5] == [3] * 5  # five runs of the job, each killing its worker at step 3
    assert failed.state is State.FAILED and failed.attempts == 5 and failed.crashes == 5
    assert failed.error.code == 13  # INTERNAL
    assert failed.error.message == (
        "the worker process died during 5 attempts in a row, each getting no further than the one before "
        "(33% done): the job is taken to crash its worker and is not retried (attempt 5)"
    )
