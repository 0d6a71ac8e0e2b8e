"""Server lifecycle over loopback gRPC: health, reflection, message size, metrics, hooks, shutdown."""

import asyncio
import time
import urllib.request

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from libs.serving.config import ServerConfig
from libs.serving.server import ServiceRegistration, build_server
from libs.serving.testing import ECHO_SERVICE, EchoService, echo_registration, loopback_server, run_async

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def _check(channel, service):
    return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service))


def test_health_is_serving_per_service_and_overall():
    async def scenario():
        async with loopback_server([echo_registration()]) as (_, channel):
            overall = await _check(channel, "")
            echo = await _check(channel, ECHO_SERVICE)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await _check(channel, "kmono.nope.v1.NopeService")
            return overall.status, echo.status, caught.value.code()

    assert run_async(scenario()) == (SERVING, SERVING, grpc.StatusCode.NOT_FOUND)


def test_health_turns_not_serving_when_stop_begins():
    async def scenario():
        async with loopback_server([echo_registration()]) as (server, channel):
            watch = health_pb2_grpc.HealthStub(channel).Watch(
                health_pb2.HealthCheckRequest(service=ECHO_SERVICE)
            )
            before = (await watch.read()).status
            stopping = asyncio.ensure_future(server.stop(grace=60))
            during = (await watch.read()).status  # pushed before the server stops taking RPCs
            watch.cancel()
            await asyncio.wait_for(stopping, 20)  # the cancelled watch does not hold the server for the grace
            return before, during

    assert run_async(scenario()) == (SERVING, NOT_SERVING)


def test_stop_lets_in_flight_rpcs_finish_within_grace():
    async def scenario():
        service = EchoService()
        async with loopback_server([echo_registration(service)]) as (server, channel):
            slow = asyncio.ensure_future(channel.unary_unary(f"/{ECHO_SERVICE}/Block")(b""))
            await asyncio.wait_for(service.entered.wait(), 5)
            stopping = asyncio.ensure_future(server.stop(grace=5))
            await asyncio.sleep(0.05)
            assert not stopping.done()
            service.release.set()
            result = await slow
            await stopping
            return result

    assert run_async(scenario()) == b"released"


def test_stop_cancels_rpcs_still_running_after_grace():
    async def scenario():
        service = EchoService()
        async with loopback_server([echo_registration(service)]) as (server, channel):
            slow = asyncio.ensure_future(channel.unary_unary(f"/{ECHO_SERVICE}/Block")(b""))
            await asyncio.wait_for(service.entered.wait(), 5)
            started = time.monotonic()
            await asyncio.wait_for(server.stop(grace=0.2), 20)  # not held by the RPC that never returns
            stop_seconds = time.monotonic() - started
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await slow
            return stop_seconds, caught.value.code()

    stop_seconds, code = run_async(scenario())
    assert stop_seconds > 0.15  # the RPC had its grace
    assert code in (grpc.StatusCode.CANCELLED, grpc.StatusCode.UNAVAILABLE)


def test_reflection_lists_registered_health_and_reflection_services():
    async def scenario():
        async with loopback_server([echo_registration()]) as (_, channel):
            stub = reflection_pb2_grpc.ServerReflectionStub(channel)
            call = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
            return [response async for response in call]

    (response,) = run_async(scenario())
    names = {service.name for service in response.list_services_response.service}
    assert names == {ECHO_SERVICE, "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"}


def test_messages_over_the_size_limit_are_rejected():
    async def scenario():
        async with loopback_server([echo_registration()], max_message_bytes=1024) as (_, channel):
            echo = channel.unary_unary(f"/{ECHO_SERVICE}/Echo")
            small = await echo(b"x" * 512)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await echo(b"x" * 2048)
            return small, caught.value.code()

    small, code = run_async(scenario())
    assert small == b"x" * 512
    assert code is grpc.StatusCode.RESOURCE_EXHAUSTED


def _scrape(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return response.read().decode()


def test_metrics_endpoint_serves_latency_histogram_per_method():
    async def scenario():
        # Two servers with metrics in one process: each has its own registry, so no name clash.
        async with loopback_server([echo_registration()], metrics_port=0) as (server, channel):
            async with loopback_server([echo_registration()], metrics_port=0) as (other, _):
                await channel.unary_unary(f"/{ECHO_SERVICE}/Echo")(b"x")
                text = await asyncio.to_thread(_scrape, server.metrics_port)
                other_text = await asyncio.to_thread(_scrape, other.metrics_port)
        return text, other_text

    text, other_text = run_async(scenario())
    method = f"/{ECHO_SERVICE}/Echo"
    samples = _samples(text)
    assert samples[("kmono_grpc_server_handling_seconds_count", (("code", "OK"), ("method", method)))] == 1
    le_buckets = [labels for name, labels in samples if name == "kmono_grpc_server_handling_seconds_bucket"]
    assert (("code", "OK"), ("le", "0.1"), ("method", method)) in le_buckets
    assert samples[("kmono_grpc_server_in_flight_rpcs", (("method", method),))] == 0
    assert method not in other_text


def _samples(text):
    """{(sample name, sorted label items): value} of a Prometheus text exposition."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_metrics_endpoint_is_closed_after_stop():
    async def scenario():
        async with loopback_server([echo_registration()], metrics_port=0) as (server, _):
            port = server.metrics_port
        return port

    port = run_async(scenario())
    with pytest.raises(OSError):
        _scrape(port)


def test_hooks_run_in_order_around_serving():
    events = []

    def hook(name):
        async def run():
            events.append(name)

        run.__qualname__ = name
        return run

    async def scenario():
        async with loopback_server(
            [echo_registration()],
            on_startup=[hook("load model"), hook("start worker")],
            on_shutdown=[hook("unload model"), hook("stop worker")],
        ) as (_, channel):
            events.append("serving")
            await _check(channel, "")
        return events

    assert run_async(scenario()) == ["load model", "start worker", "serving", "stop worker", "unload model"]


def test_slow_shutdown_hook_is_cut_at_the_grace_deadline():
    async def never_finishes():
        await asyncio.sleep(60)

    async def scenario():
        config = ServerConfig(host="127.0.0.1", port=0, grace_seconds=0.2)
        server = build_server(config, [echo_registration()], on_shutdown=[never_finishes])
        await server.start()
        await asyncio.wait_for(server.stop(), 20)  # the hook sleeps 60 s: it must be cut at the grace

    run_async(scenario())


def test_failed_startup_hook_fails_start_cleans_up_and_binds_nothing():
    events = []

    async def broken():
        raise RuntimeError("model file missing")

    async def cleanup():
        events.append("cleanup")

    async def scenario():
        async with loopback_server([echo_registration()]) as (server, _):
            port = server.port  # known to be free once this server stops
        config = ServerConfig(host="127.0.0.1", port=port)
        failing = build_server(config, [echo_registration()], on_startup=[broken], on_shutdown=[cleanup])
        with pytest.raises(RuntimeError, match="model file missing"):
            await failing.start()
        again = build_server(config, [echo_registration()])
        assert await again.start() == port
        await again.stop(0)

    run_async(scenario())
    assert events == ["cleanup"]


def test_port_already_in_use_is_a_clear_error():
    async def scenario():
        async with loopback_server([echo_registration()]) as (server, _):
            clash = build_server(ServerConfig(host="127.0.0.1", port=server.port), [echo_registration()])
            with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{server.port}"):
                await clash.start()

    run_async(scenario())


def test_registration_validation():
    with pytest.raises(ValueError, match="full proto name"):
        ServiceRegistration("/kmono.x.v1.XService/Method", lambda server: None)
    health_descriptor = health_pb2.DESCRIPTOR.services_by_name["Health"]
    assert ServiceRegistration.from_descriptor(health_descriptor, lambda s: None).service_name == (
        "grpc.health.v1.Health"
    )

    async def scenario():
        with pytest.raises(ValueError, match="registered twice"):
            build_server(ServerConfig(), [echo_registration(), echo_registration()])

    run_async(scenario())
