"""OperationsServicer over loopback gRPC (grpc.aio server on 127.0.0.1, OperationsStub client), the filter parser,
the record -> google.longrunning.Operation conversion, and watch_operation (woken by the store, polling for
other processes)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
import pytest
from google.longrunning import operations_pb2, operations_pb2_grpc
from google.protobuf import duration_pb2, empty_pb2, wrappers_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from libs.serving.errors import InvalidArgumentError, find_detail
from libs.serving.operations import (
    DONE_STATES,
    InvalidOperationArgumentError,
    OperationError,
    OperationFilter,
    OperationsServicer,
    OperationStore,
    State,
    pack_any,
    parse_filter,
    to_operation_proto,
    unpack_any,
    watch_operation,
)

KIND = "video.create"


def string_any(text: str) -> bytes:
    return pack_any(wrappers_pb2.StringValue(value=text))


@asynccontextmanager
async def serve(store: OperationStore, **options: float) -> AsyncIterator[operations_pb2_grpc.OperationsStub]:
    server = grpc.aio.server()
    options = {"default_wait_timeout": 0.3, "poll_interval": 0.01, "max_poll_interval": 0.05, **options}
    servicer = OperationsServicer(store, **options)
    servicer.add_to_server(server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield operations_pb2_grpc.OperationsStub(channel)
    finally:
        await server.stop(grace=None)


def run_with_stub(
    store: OperationStore,
    body: Callable[[operations_pb2_grpc.OperationsStub], Awaitable[None]],
    **options: float,
) -> None:
    async def main() -> None:
        async with serve(store, **options) as stub:
            await body(stub)

    asyncio.run(main())


async def expect_code(call: Awaitable[object], code: grpc.StatusCode) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    assert info.value.code() == code, info.value.details()
    return info.value.details()


@pytest.fixture
def store(tmp_path: Path):
    with OperationStore(tmp_path / "ops.db") as s:
        yield s


# ---- conversion ----------------------------------------------------------------------------------------------


def test_to_operation_proto_in_each_state(store):
    queued = store.create(KIND, b"x", metadata=string_any("m0"))[0]
    proto = to_operation_proto(queued)
    assert proto.name == queued.name and not proto.done
    assert proto.metadata.Is(wrappers_pb2.StringValue.DESCRIPTOR)
    assert not proto.HasField("response") and not proto.HasField("error")

    store.claim_next()
    store.update_progress(queued.name, 0.5, string_any("m1"))
    succeeded = store.finish(queued.name, string_any("video"))
    proto = to_operation_proto(succeeded)
    assert proto.done and proto.WhichOneof("result") == "response"
    assert unpack_any(proto.response.SerializeToString(), wrappers_pb2.StringValue).value == "video"
    assert unpack_any(proto.metadata.SerializeToString(), wrappers_pb2.StringValue).value == "m1"

    empty = store.create(KIND, b"e")[0]
    store.claim_next()
    proto = to_operation_proto(store.finish(empty.name))
    assert proto.response.Is(empty_pb2.Empty.DESCRIPTOR)

    failing = store.create(KIND, b"f")[0]
    store.claim_next()
    info = error_details_pb2.ErrorInfo(reason="OUT_OF_MEMORY", domain="kmono.video")
    proto = to_operation_proto(store.fail(failing.name, 8, "GPU OOM", details=[pack_any(info)]))
    assert proto.done and proto.WhichOneof("result") == "error"
    assert proto.error.code == 8 and proto.error.message == "GPU OOM"
    unpacked = error_details_pb2.ErrorInfo()
    assert proto.error.details[0].Unpack(unpacked) and unpacked == info

    cancelled = store.create(KIND, b"c")[0]
    proto = to_operation_proto(store.cancel(cancelled.name))
    assert proto.done and proto.error.code == grpc.StatusCode.CANCELLED.value[0]


def test_unpack_any_checks_the_type():
    data = string_any("x")
    with pytest.raises(InvalidOperationArgumentError):
        unpack_any(data, wrappers_pb2.Int64Value)
    with pytest.raises(InvalidOperationArgumentError):
        unpack_any(b"\xff\xff", wrappers_pb2.StringValue)


# ---- filter --------------------------------------------------------------------------------------------------


def test_parse_filter():
    assert parse_filter("") == OperationFilter()
    assert parse_filter("  ") == OperationFilter()
    assert parse_filter("done = true") == OperationFilter(states=DONE_STATES)
    assert parse_filter("done=false").states == frozenset({State.QUEUED, State.RUNNING})
    assert parse_filter('kind = "video.create"') == OperationFilter(kind=KIND)
    assert parse_filter("kind=video.create AND state = running") == OperationFilter(
        kind=KIND, states=frozenset({State.RUNNING})
    )
    assert parse_filter("done = true AND state = RUNNING").states == frozenset()
    assert parse_filter('kind = "a" AND kind = "b"').states == frozenset()
    for bad in (
        "done = maybe",
        "state = BOGUS",
        "owner = me",
        "done",
        "done = true OR done = false",
        "a AND",
    ):
        with pytest.raises(InvalidOperationArgumentError):
            parse_filter(bad)


# ---- RPCs ----------------------------------------------------------------------------------------------------


def test_get_operation(store):
    op = store.create(KIND, b"x", metadata=string_any("m"))[0]

    async def body(stub):
        got = await stub.GetOperation(operations_pb2.GetOperationRequest(name=op.name))
        assert got == to_operation_proto(store.get(op.name))
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.GetOperation(operations_pb2.GetOperationRequest(name="operations/unknown"))
        assert info.value.code() == grpc.StatusCode.NOT_FOUND and "operations/unknown" in info.value.details()
        status = rpc_status.from_call(info.value)  # the kit's rich status (AIP-193)
        assert find_detail(status, error_details_pb2.ErrorInfo).reason == "OPERATION_NOT_FOUND"
        assert find_detail(status, error_details_pb2.ResourceInfo).resource_name == "operations/unknown"
        await expect_code(
            stub.GetOperation(operations_pb2.GetOperationRequest()), grpc.StatusCode.INVALID_ARGUMENT
        )

    run_with_stub(store, body)


def test_list_operations_pages_and_filters(store):
    names = [store.create(KIND, str(i).encode())[0].name for i in range(10)]
    store.claim_next()
    store.finish(names[0], string_any("r"))
    store.cancel(names[1])
    mask = store.create("masks.extract", b"m")[0].name

    async def body(stub):
        seen, token = [], ""
        while True:
            response = await stub.ListOperations(
                operations_pb2.ListOperationsRequest(name="operations", page_size=3, page_token=token)
            )
            assert len(response.operations) <= 3
            seen += [op.name for op in response.operations]
            token = response.next_page_token
            if not token:
                break
        assert seen == [*names, mask]

        done = await stub.ListOperations(operations_pb2.ListOperationsRequest(filter="done = true"))
        assert [op.name for op in done.operations] == names[:2] and all(op.done for op in done.operations)
        pending = await stub.ListOperations(
            operations_pb2.ListOperationsRequest(
                filter='done = false AND kind = "video.create"', page_size=100
            )
        )
        assert [op.name for op in pending.operations] == names[2:]
        assert not pending.next_page_token

        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.ListOperations(operations_pb2.ListOperationsRequest(filter="owner = me"))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        violation = find_detail(
            rpc_status.from_call(info.value), error_details_pb2.BadRequest
        ).field_violations[0]
        assert violation.field == "filter" and "owner" in violation.description
        await expect_code(
            stub.ListOperations(operations_pb2.ListOperationsRequest(page_token="not-a-token")),
            grpc.StatusCode.INVALID_ARGUMENT,
        )
        first = await stub.ListOperations(operations_pb2.ListOperationsRequest(page_size=2))
        await expect_code(  # a token is tied to the filter it was issued for
            stub.ListOperations(
                operations_pb2.ListOperationsRequest(page_token=first.next_page_token, filter="done = true")
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
        )
        await expect_code(
            stub.ListOperations(operations_pb2.ListOperationsRequest(page_size=-1)),
            grpc.StatusCode.INVALID_ARGUMENT,
        )
        await expect_code(
            stub.ListOperations(operations_pb2.ListOperationsRequest(name="projects/x")),
            grpc.StatusCode.INVALID_ARGUMENT,
        )

    run_with_stub(store, body)


def test_cancel_operation(store):
    running = store.create(KIND, b"r")[0]
    queued = store.create(KIND, b"q")[0]
    assert store.claim_next().name == running.name  # oldest first

    async def body(stub):
        await stub.CancelOperation(operations_pb2.CancelOperationRequest(name=queued.name))
        got = await stub.GetOperation(operations_pb2.GetOperationRequest(name=queued.name))
        assert got.done and got.error.code == grpc.StatusCode.CANCELLED.value[0]

        await stub.CancelOperation(operations_pb2.CancelOperationRequest(name=running.name))
        got = await stub.GetOperation(operations_pb2.GetOperationRequest(name=running.name))
        assert not got.done
        assert store.is_cancel_requested(running.name)

        store.mark_cancelled(running.name)
        await stub.CancelOperation(operations_pb2.CancelOperationRequest(name=running.name))  # done: no-op
        await expect_code(
            stub.CancelOperation(operations_pb2.CancelOperationRequest(name="operations/unknown")),
            grpc.StatusCode.NOT_FOUND,
        )

    run_with_stub(store, body)


def test_delete_operation(store):
    done = store.create(KIND, b"d")[0]
    store.cancel(done.name)
    pending = store.create(KIND, b"p")[0]

    async def body(stub):
        await stub.DeleteOperation(operations_pb2.DeleteOperationRequest(name=done.name))
        await expect_code(
            stub.GetOperation(operations_pb2.GetOperationRequest(name=done.name)), grpc.StatusCode.NOT_FOUND
        )
        await expect_code(
            stub.DeleteOperation(operations_pb2.DeleteOperationRequest(name=done.name)),
            grpc.StatusCode.NOT_FOUND,
        )
        await expect_code(
            stub.DeleteOperation(operations_pb2.DeleteOperationRequest(name=pending.name)),
            grpc.StatusCode.FAILED_PRECONDITION,
        )

    run_with_stub(store, body)


def test_wait_operation(store):
    op = store.create(KIND, b"w")[0]

    async def finish_later() -> None:
        await asyncio.sleep(0.2)
        claimed = await asyncio.to_thread(store.claim_next)
        await asyncio.to_thread(store.finish, claimed.name, string_any("done"), attempt=claimed.attempts)

    # Elapsed times are checked only from below (it did wait); "it did not wait too long" is a generous
    # asyncio.wait_for bound far below the waits it must not take, so a loaded machine cannot fail the test.
    def wait(
        stub, name: str, wait_for: duration_pb2.Duration | None = None, rpc_deadline: float | None = None
    ):
        request = operations_pb2.WaitOperationRequest(name=name, timeout=wait_for)
        return asyncio.wait_for(stub.WaitOperation(request, timeout=rpc_deadline), 10)

    async def body(stub):
        # Returns as soon as the operation is done, not at the 60 s timeout.
        worker = asyncio.create_task(finish_later())
        start = time.monotonic()
        got = await wait(stub, op.name, duration_pb2.Duration(seconds=60))
        await worker
        assert got.done and got.response.Is(wrappers_pb2.StringValue.DESCRIPTOR)
        assert time.monotonic() - start > 0.15

        # A done operation returns at once, not at the 60 s timeout.
        got = await wait(stub, op.name, duration_pb2.Duration(seconds=60))
        assert got.done

        pending = store.create(KIND, b"p")[0]
        # Returns the latest (not done) state after `timeout`.
        start = time.monotonic()
        got = await wait(stub, pending.name, duration_pb2.Duration(nanos=200_000_000))
        assert not got.done and time.monotonic() - start > 0.15

        # Without a timeout: the server's default wait (0.3 s here).
        start = time.monotonic()
        got = await wait(stub, pending.name)
        assert not got.done and time.monotonic() - start > 0.25

        # Bounded by the RPC deadline: answers (not DEADLINE_EXCEEDED) before it, though asked to wait 30 s.
        got = await wait(stub, pending.name, duration_pb2.Duration(seconds=30), rpc_deadline=1.0)
        assert not got.done

        await expect_code(
            stub.WaitOperation(operations_pb2.WaitOperationRequest(name="operations/unknown")),
            grpc.StatusCode.NOT_FOUND,
        )
        await expect_code(
            stub.WaitOperation(
                operations_pb2.WaitOperationRequest(
                    name=pending.name, timeout=duration_pb2.Duration(seconds=-1)
                )
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
        )

    run_with_stub(store, body)


def test_corrupt_record_is_internal(store):
    op = store.create(KIND, b"x")[0]
    store._conn().execute("UPDATE operations SET metadata = ? WHERE name = ?", (b"\xff\xff", op.name))
    with pytest.raises(OperationError):
        to_operation_proto(store.get(op.name))

    async def body(stub):
        await expect_code(
            stub.GetOperation(operations_pb2.GetOperationRequest(name=op.name)), grpc.StatusCode.INTERNAL
        )

    run_with_stub(store, body)


def test_inside_the_kit_server(store):
    """Behind the kit's server (interceptor, health, reflection) the statuses are the same."""
    from libs.serving import ServiceRegistration
    from libs.serving.testing.loopback import loopback_server, run_async

    op = store.create(KIND, b"x")[0]
    servicer = OperationsServicer(store)
    registration = ServiceRegistration(
        operations_pb2.DESCRIPTOR.services_by_name["Operations"].full_name, servicer.add_to_server
    )

    async def main() -> None:
        async with loopback_server([registration]) as (_, channel):
            stub = operations_pb2_grpc.OperationsStub(channel)
            got = await stub.GetOperation(operations_pb2.GetOperationRequest(name=op.name))
            assert got.name == op.name and not got.done
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.DeleteOperation(operations_pb2.DeleteOperationRequest(name=op.name))
            assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            reason = find_detail(rpc_status.from_call(info.value), error_details_pb2.ErrorInfo).reason
            assert reason == "OPERATION_STATE"

    run_async(main())


# ---- watching ------------------------------------------------------------------------------------------------


async def collect(watch: AsyncIterator[operations_pb2.Operation]) -> list[operations_pb2.Operation]:
    return [op async for op in watch]


def test_watch_sees_the_end_at_once_without_waiting_for_a_poll(store):
    """Intervals of an hour: only the store's change notification can end this watch in time, and the write
    that ends the operation cuts short the hold on progress writes."""
    name = store.create(KIND, b"w")[0].name

    async def main() -> None:
        watch = watch_operation(store, name, interval=3600.0, max_interval=3600.0)
        first = await anext(watch)
        assert first.name == name and not first.done
        rest = asyncio.create_task(collect(watch))
        claimed = await asyncio.to_thread(store.claim_next, KIND)
        await asyncio.to_thread(
            store.update_progress, name, 0.5, string_any("half"), attempt=claimed.attempts
        )
        await asyncio.to_thread(store.finish, name, string_any("done"), attempt=claimed.attempts)
        seen = await asyncio.wait_for(rest, 60)  # a generous bound, far below the intervals
        result = wrappers_pb2.StringValue()
        assert seen[-1].done and seen[-1].response.Unpack(result) and result.value == "done"
        assert store._subscribers == {}  # the watch unsubscribed when it ended

    asyncio.run(main())


def test_watch_sends_progress_in_order_and_ends_with_done(store):
    name = store.create(KIND, b"w")[0].name

    def text_of(op: operations_pb2.Operation) -> str:
        value = wrappers_pb2.StringValue()
        return value.value if op.metadata.Unpack(value) else ""

    async def main() -> None:
        watch = watch_operation(store, name, interval=0.01, max_interval=0.02)
        assert not (await anext(watch)).done
        claimed = await asyncio.to_thread(store.claim_next, KIND)
        seen = []
        for text in ("a", "b"):
            await asyncio.to_thread(
                store.update_progress, name, 0.5, string_any(text), attempt=claimed.attempts
            )
            while not seen or seen[-1] != text:
                op = await anext(watch)
                assert not op.done
                seen.append(text_of(op))
        assert [text for text in seen if text] == ["a", "b"]
        await asyncio.to_thread(store.finish, name, attempt=claimed.attempts)
        assert [op.done for op in await collect(watch)] == [True]

    asyncio.run(main())


def test_watch_polls_for_writes_from_other_processes(store, tmp_path):
    name = store.create(KIND, b"w")[0].name

    async def main() -> None:
        rest = asyncio.create_task(collect(watch_operation(store, name, interval=0.01, max_interval=0.02)))
        with OperationStore(tmp_path / "ops.db") as elsewhere:  # another store object: no notification
            claimed = await asyncio.to_thread(elsewhere.claim_next, KIND)
            await asyncio.to_thread(elsewhere.finish, name, string_any("done"), attempt=claimed.attempts)
        seen = await asyncio.wait_for(rest, 60)
        assert seen[0].name == name and seen[-1].done

    asyncio.run(main())


def test_watch_of_an_empty_name_is_invalid_argument(store):
    async def main() -> None:
        with pytest.raises(InvalidArgumentError) as error:
            await anext(watch_operation(store, ""))
        assert error.value.field_violations[0][0] == "name"

    asyncio.run(main())


def test_wait_operation_returns_at_the_store_change_not_the_next_poll(store):
    name = store.create(KIND, b"w")[0].name

    async def main() -> None:
        server = grpc.aio.server()
        servicer = OperationsServicer(
            store, default_wait_timeout=7200, poll_interval=3600, max_poll_interval=3600
        )
        servicer.add_to_server(server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                stub = operations_pb2_grpc.OperationsStub(channel)
                waiting = asyncio.ensure_future(
                    stub.WaitOperation(operations_pb2.WaitOperationRequest(name=name))
                )
                await asyncio.to_thread(wait_until_subscribed, store, name)
                claimed = await asyncio.to_thread(store.claim_next, KIND)
                await asyncio.to_thread(store.finish, name, string_any("done"), attempt=claimed.attempts)
                got = await asyncio.wait_for(waiting, 60)  # a generous bound, far below the poll interval
                assert got.done and got.response.Is(wrappers_pb2.StringValue.DESCRIPTOR)
        finally:
            await server.stop(grace=None)

    asyncio.run(main())


def wait_until_subscribed(store: OperationStore, name: str) -> None:
    deadline = time.monotonic() + 30
    while name not in store._subscribers:
        assert time.monotonic() < deadline, "nobody subscribed"
        time.sleep(0.005)


def _violation_field(error: grpc.aio.AioRpcError) -> str:
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (error.code(), error.details())
    return find_detail(rpc_status.from_call(error), error_details_pb2.BadRequest).field_violations[0].field


def test_forged_page_tokens_and_oversized_filters_are_invalid_argument(store):
    import base64
    import json

    for i in range(3):
        store.create(KIND, str(i).encode())

    def forged(token: str, **fields: object) -> str:
        payload = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        payload.update(fields)
        return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")

    async def body(stub):
        first = await stub.ListOperations(operations_pb2.ListOperationsRequest(page_size=1))
        assert first.next_page_token
        tokens = [
            forged(first.next_page_token, c=2**70),  # was INTERNAL: OverflowError binding it to SQLite
            forged(first.next_page_token, c=-(2**64)),
            "A" * 100_000,
        ]
        for token in tokens:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.ListOperations(operations_pb2.ListOperationsRequest(page_size=1, page_token=token))
            assert _violation_field(info.value) == "page_token"
        # A filter of many spaces took quadratic time in the AND split; now it is refused before parsing.
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.ListOperations(
                operations_pb2.ListOperationsRequest(filter="done = true" + " " * 200_000 + "x")
            )
        assert _violation_field(info.value) == "filter"
        assert "at most 1024 characters" in info.value.details()

    run_with_stub(store, body)


def test_wait_timeouts_past_a_duration_are_invalid_and_long_ones_are_clamped(store):
    pending = store.create(KIND, b"p")[0]

    async def body(stub):
        for timeout in (
            duration_pb2.Duration(seconds=2**62),  # was INTERNAL: OverflowError in ToTimedelta
            duration_pb2.Duration(seconds=315_576_000_001),
            duration_pb2.Duration(seconds=1, nanos=-5),
            duration_pb2.Duration(nanos=2_000_000_000),
            duration_pb2.Duration(seconds=-(2**62)),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.WaitOperation(
                    operations_pb2.WaitOperationRequest(name=pending.name, timeout=timeout)
                )
            assert _violation_field(info.value) == "timeout"
        # The longest valid Duration waits max_wait_timeout (0.2 s here), then answers with the latest state.
        longest = duration_pb2.Duration(seconds=315_576_000_000, nanos=999_999_999)
        start = time.monotonic()
        got = await asyncio.wait_for(
            stub.WaitOperation(operations_pb2.WaitOperationRequest(name=pending.name, timeout=longest)), 30
        )
        assert not got.done and time.monotonic() - start > 0.15

    run_with_stub(store, body, max_wait_timeout=0.2)
