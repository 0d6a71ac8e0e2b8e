"""Crash recovery: a process that holds a RUNNING operation is killed with SIGKILL; a fresh store on the same
file re-queues the operation, it runs to completion exactly once, and the dead attempt cannot finish it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
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
