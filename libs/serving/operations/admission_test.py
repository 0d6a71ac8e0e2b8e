"""The bounded queue every long-running service creates through: the fast refusal before validation, the refusal
inside the create's transaction (nothing left behind), RetryInfo and the service's own reason, and AIP-155
retries that are never refused."""

from __future__ import annotations

import grpc
import pytest
from google.rpc import error_details_pb2

from libs.serving.errors import ResourceExhaustedError, find_detail, status_from_exception
from libs.serving.operations import OperationStore, QueueFullError, check_queue, create_queued

KIND = "video.create"
LIMIT = {"retry_after_seconds": 2.5, "reason": "VIDEO_QUEUE_FULL", "noun": "video jobs"}


@pytest.fixture
def store(tmp_path):
    with OperationStore(tmp_path / "ops.db") as s:
        yield s


def test_check_queue_refuses_early_only_requests_without_a_request_id(store):
    assert check_queue(store, KIND, 2) == 0
    for i in range(2):
        create_queued(store, KIND, str(i).encode(), max_queued=2)
    with pytest.raises(QueueFullError) as error:
        check_queue(store, KIND, 2, "", **LIMIT)
    assert error.value.message == "2 video jobs are already queued; retry after 2.5 s"
    assert check_queue(store, KIND, 2, "has-an-id") == 2  # create_queued decides: it may be a retry
    assert check_queue(store, "masks.extract", 2) == 0


def test_create_queued_refuses_with_retry_info_and_leaves_nothing_behind(store):
    first, created = create_queued(store, KIND, b"a", "id-a", max_queued=1, **LIMIT)
    assert created
    for request_id in (None, "id-b"):
        with pytest.raises(ResourceExhaustedError) as error:
            create_queued(store, KIND, b"b", request_id, max_queued=1, **LIMIT)
        status = status_from_exception(error.value)
        assert status.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
        assert find_detail(status, error_details_pb2.ErrorInfo).reason == "VIDEO_QUEUE_FULL"
        retry = find_detail(status, error_details_pb2.RetryInfo).retry_delay
        assert (retry.seconds, retry.nanos) == (2, 500_000_000)
    assert [op.name for op in store.list()[0]] == [first.name]  # no create-then-roll-back

    again, created = create_queued(store, KIND, b"a", "id-a", max_queued=1, **LIMIT)  # a retry, queue full
    assert again.name == first.name and not created
    store.claim_next(KIND)
    second, created = create_queued(store, KIND, b"b", "id-b", max_queued=1, **LIMIT)
    assert created and store.queue_depth(KIND) == 1 and second.request_id == "id-b"
