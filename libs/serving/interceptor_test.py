"""What happens around every RPC, over loopback gRPC: cap, errors, deadlines, access log, streams."""

import asyncio
import json
import logging

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from libs.serving.errors import find_detail
from libs.serving.testing import (
    ECHO_SERVICE,
    EchoService,
    echo_registration,
    loopback_server,
    run_async,
    status_of,
)
from libs.serving.testing.echo import SECRET


def _unary(channel, method):
    return channel.unary_unary(f"/{ECHO_SERVICE}/{method}")


async def _until(predicate, timeout=2.0):
    """Poll `predicate` (server-side effects of a cancelled call land a moment after the client's error)."""
    loop = asyncio.get_running_loop()
    ends = loop.time() + timeout
    while not predicate():
        assert loop.time() < ends, "condition not reached in time"
        await asyncio.sleep(0.01)


def test_concurrency_cap_rejects_with_error_info_and_retry_info_but_not_probes():
    async def scenario():
        service = EchoService()
        async with loopback_server([echo_registration(service)], max_concurrent_rpcs=1) as (server, channel):
            slow = asyncio.ensure_future(_unary(channel, "Block")(b""))
            await asyncio.wait_for(service.entered.wait(), 5)

            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await _unary(channel, "Echo")(b"second")
            health = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service="")
            )

            service.release.set()
            first = await slow
            after = await _unary(channel, "Echo")(b"third")
            return caught.value, health, first, after, server.interceptor.in_flight

    error, health, first, after, in_flight = run_async(scenario())
    assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    status = status_of(error)
    info = find_detail(status, error_details_pb2.ErrorInfo)
    assert (info.reason, info.domain, info.metadata["maxConcurrentRpcs"]) == (
        "TOO_MANY_REQUESTS",
        "kmono",
        "1",
    )
    assert find_detail(status, error_details_pb2.RetryInfo).retry_delay.seconds == 1
    assert health.status == health_pb2.HealthCheckResponse.SERVING  # probes pass at the cap
    assert (first, after, in_flight) == (b"released", b"third", 0)


def test_invalid_argument_reaches_the_client_with_the_field():
    async def scenario():
        async with loopback_server([echo_registration()]) as (_, channel):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await _unary(channel, "Fail")(b"invalid")
            return caught.value

    error = run_async(scenario())
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    status = status_of(error)
    assert find_detail(status, error_details_pb2.ErrorInfo).reason == "INVALID_ARGUMENT"
    (violation,) = find_detail(status, error_details_pb2.BadRequest).field_violations
    assert (violation.field, violation.description) == ("prompt", "must not be empty")


def test_unexpected_error_is_internal_without_traceback_or_exception_text(caplog):
    caplog.set_level(logging.INFO)

    async def scenario():
        async with loopback_server([echo_registration()]) as (_, channel):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await _unary(channel, "Fail")(b"boom")
            # the status reaches the client before the server's handler has finished its bookkeeping
            await _until(lambda: any(hasattr(r, "rpc") for r in caplog.records))
            return caught.value

    error = run_async(scenario())
    assert error.code() is grpc.StatusCode.INTERNAL
    sent = error.details() + "".join(str(value) for _, value in error.trailing_metadata())
    assert SECRET not in sent and "Traceback" not in sent and "RuntimeError" not in sent
    error_id = find_detail(status_of(error), error_details_pb2.ErrorInfo).metadata["errorId"]
    assert error_id in error.details()
    logged = [r for r in caplog.records if r.name == "libs.serving.errors"]
    assert error_id in logged[0].getMessage() and logged[0].exc_info is not None
    access = [r.rpc for r in caplog.records if r.name == "libs.serving.access_log"]
    assert access[-1]["error_id"] == error_id and access[-1]["code"] == "INTERNAL"


def test_handler_abort_keeps_its_own_code_and_is_counted():
    async def scenario():
        async with loopback_server([echo_registration()]) as (server, channel):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await _unary(channel, "Fail")(b"abort")
            labels = {"method": f"/{ECHO_SERVICE}/Fail", "code": "FAILED_PRECONDITION"}

            def counted():
                return server.registry.get_sample_value("kmono_grpc_server_errors_total", labels)

            await _until(lambda: counted() is not None)
            return caught.value, counted()

    error, counted = run_async(scenario())
    assert (error.code(), error.details()) == (grpc.StatusCode.FAILED_PRECONDITION, "aborted by handler")
    assert counted == 1


def test_handler_sees_the_client_deadline():
    async def scenario():
        async with loopback_server([echo_registration()]) as (_, channel):
            with_deadline = await _unary(channel, "Remaining")(b"", timeout=3)
            without = await _unary(channel, "Remaining")(b"")
            return float(with_deadline), without

    remaining, without = run_async(scenario())
    assert 2.5 < remaining <= 3.1
    assert without == b"None"


def test_default_deadline_is_visible_and_enforced():
    async def scenario():
        async with loopback_server([echo_registration()], default_deadline_seconds=0.3) as (server, channel):
            remaining = float(await _unary(channel, "Remaining")(b""))
            client_wins = await _unary(channel, "Sleep")(b"0.4", timeout=5)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await _unary(channel, "Sleep")(b"5")
            await _until(lambda: server.interceptor.in_flight == 0)
            return remaining, client_wins, caught.value

    remaining, client_wins, error = run_async(scenario())
    assert 0.2 < remaining <= 0.3
    assert client_wins == b"slept"  # an explicit client deadline replaces the default
    assert error.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert find_detail(status_of(error), error_details_pb2.ErrorInfo).reason == "DEADLINE_EXCEEDED"


def test_client_deadline_cancels_the_handler_and_frees_its_slot(caplog):
    caplog.set_level(logging.INFO, logger="libs.serving.access_log")

    async def scenario():
        async with loopback_server([echo_registration()], max_concurrent_rpcs=1) as (server, channel):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await _unary(channel, "Sleep")(b"5", timeout=0.2)
            await _until(lambda: server.interceptor.in_flight == 0)
            return caught.value, await _unary(channel, "Echo")(b"ok")

    error, after = run_async(scenario())
    assert error.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert after == b"ok"
    codes = {r.rpc["method"].rsplit("/", 1)[1]: r.rpc["code"] for r in caplog.records if hasattr(r, "rpc")}
    assert codes["Sleep"] == "DEADLINE_EXCEEDED"


def test_access_log_is_one_json_line_per_rpc_with_request_id(caplog):
    caplog.set_level(logging.DEBUG, logger="libs.serving.access_log")

    async def scenario():
        async with loopback_server([echo_registration()]) as (_, channel):
            await _unary(channel, "Echo")(b"x", metadata=(("x-request-id", "req-42"),))
            await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())

    run_async(scenario())
    records = [r for r in caplog.records if r.name == "libs.serving.access_log"]
    assert len(records) == 2
    echo, probe = records
    fields = json.loads(echo.getMessage())
    assert fields == echo.rpc
    assert fields["method"] == f"/{ECHO_SERVICE}/Echo"
    assert (fields["code"], fields["request_id"]) == ("OK", "req-42")
    assert fields["duration_ms"] >= 0 and "127.0.0.1" in fields["peer"]
    assert echo.levelno == logging.INFO
    assert probe.levelno == logging.DEBUG and probe.rpc["method"] == "/grpc.health.v1.Health/Check"


def test_streaming_kinds_pass_through_and_stream_errors_are_mapped():
    async def scenario():
        async with loopback_server([echo_registration()]) as (_, channel):
            countdown = [m async for m in channel.unary_stream(f"/{ECHO_SERVICE}/Countdown")(b"0")]
            collected = await channel.stream_unary(f"/{ECHO_SERVICE}/Collect")(iter([b"a", b"b", b"c"]))
            chat = [m async for m in channel.stream_stream(f"/{ECHO_SERVICE}/Chat")(iter([b"hi", b"yo"]))]
            call = channel.unary_stream(f"/{ECHO_SERVICE}/StreamFail")(b"")
            received = []
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                async for message in call:
                    received.append(message)
            return countdown, collected, chat, received, caught.value

    countdown, collected, chat, received, error = run_async(scenario())
    assert countdown == [b"started", b"done"]
    assert collected == b"abc"
    assert chat == [b"HI", b"YO"]
    assert received == [b"first"]
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert find_detail(status_of(error), error_details_pb2.BadRequest).field_violations[0].field == "count"


def test_bytes_that_do_not_parse_as_the_request_are_invalid_argument_for_every_kind(caplog):
    """gRPC answers UNKNOWN (or the kit INTERNAL) when a request deserializer raises; the kit makes it the
    client's error: INVALID_ARGUMENT, reason MALFORMED_REQUEST, naming the message type."""
    garbage = b"\xff\xff\xff\xff"
    health = "/grpc.health.v1.Health"
    reflection = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"

    async def scenario():
        async with loopback_server([echo_registration()]) as (_, channel):
            errors = {}
            for kind in ("unary", "server stream", "bidi stream"):
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    if kind == "unary":
                        await channel.unary_unary(f"{health}/Check")(garbage)
                    elif kind == "server stream":
                        [_ async for _ in channel.unary_stream(f"{health}/Watch")(garbage)]
                    else:
                        [_ async for _ in channel.stream_stream(reflection)(iter([garbage]))]
                errors[kind] = caught.value
            # a well-formed request still works, on the same connection
            ok = await channel.unary_unary(f"{health}/Check")(
                health_pb2.HealthCheckRequest().SerializeToString()
            )
            return errors, health_pb2.HealthCheckResponse.FromString(ok)

    caplog.set_level(logging.INFO)
    errors, ok = run_async(scenario())
    assert ok.status == health_pb2.HealthCheckResponse.SERVING
    names = {
        "unary": "grpc.health.v1.HealthCheckRequest",
        "server stream": "grpc.health.v1.HealthCheckRequest",
        "bidi stream": "grpc.reflection.v1alpha.ServerReflectionRequest",
    }
    for kind, error in errors.items():
        assert error.code() is grpc.StatusCode.INVALID_ARGUMENT, (kind, error.details())
        assert f"not a valid serialized {names[kind]}" in error.details()
        assert find_detail(status_of(error), error_details_pb2.ErrorInfo).reason == "MALFORMED_REQUEST"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]  # the client's fault: no traceback
