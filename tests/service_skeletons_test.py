"""Every service skeleton, built exactly as its server builds it, answers health, reflection and its RPCs."""

import argparse
import importlib

import grpc
import pytest
from google.longrunning import operations_pb2, operations_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from demo import EXTRA_ARGS, PROBE_CALLS
from demo.rerank import model_args as rerank_model_args
from libs.serving.service import StatefulServiceConfig
from libs.serving.testing.loopback import loopback_server, run_async, status_of
from services import SERVICE_FULL_NAMES, SERVICE_NAMES
from services.cli import register

# Services whose engine is built answer their probe call; the others are still skeletons.
BUILT = ("masks", "video", "rank", "rerank", "dialogue")
SKELETONS = [name for name in SERVICE_NAMES if name not in BUILT]


def _serve(name: str, tmp_path):
    """(config, loopback server context) of the service, built exactly as its server builds it."""
    server = importlib.import_module(f"services.{name}.server")
    parser = argparse.ArgumentParser()
    server.CONFIG_TYPE.add_arguments(parser)
    argv = ["--port", "0", "--host", "127.0.0.1"]
    # every service that keeps state (operations, sessions) keeps it under tmp_path, never in the working directory
    if (
        issubclass(server.CONFIG_TYPE, StatefulServiceConfig)
        or "data_dir" in server.CONFIG_TYPE.__dataclass_fields__
    ):
        argv += ["--data-dir", str(tmp_path)]
    # the rerank service serves its embedded default model
    extra = rerank_model_args(tmp_path)[0] if name == "rerank" else EXTRA_ARGS.get(name, [])
    config = server.CONFIG_TYPE.from_args(parser.parse_args([*argv, *extra]))
    registrations, on_startup, on_shutdown = server.build(config)
    return config, loopback_server(registrations, on_startup=on_startup, on_shutdown=on_shutdown)


async def _assert_serving(name: str, channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    reply = await health.Check(health_pb2.HealthCheckRequest(service=SERVICE_FULL_NAMES[name]))
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def _probe(name: str, channel):
    stub_type, method, request = PROBE_CALLS[name]
    return await getattr(stub_type(channel), method)(request)


@pytest.mark.parametrize("name", BUILT)
def test_built_services_serve_health_and_answer_their_probe(name, tmp_path):
    _, serving = _serve(name, tmp_path)

    async def scenario():
        async with serving as (_, channel):
            await _assert_serving(name, channel)
            await _probe(name, channel)

    run_async(scenario(), timeout=60)


@pytest.mark.parametrize("name", SKELETONS)
def test_skeleton_serves_health_and_answers_unimplemented_naming_the_engine(name, tmp_path):
    _, serving = _serve(name, tmp_path)

    async def scenario():
        async with serving as (_, channel):
            await _assert_serving(name, channel)
            with pytest.raises(grpc.aio.AioRpcError) as error:
                await _probe(name, channel)
            assert error.value.code() == grpc.StatusCode.UNIMPLEMENTED
            method = PROBE_CALLS[name][1]
            assert method in error.value.details() and "engine" in error.value.details()
            assert status_of(error.value) is not None  # rich status with ErrorInfo

    run_async(scenario())


@pytest.mark.parametrize("name", ["video", "masks"])
def test_long_running_services_serve_operations_from_their_store(name, tmp_path):
    config, serving = _serve(name, tmp_path)

    async def scenario():
        async with serving as (_, channel):
            operations = operations_pb2_grpc.OperationsStub(channel)
            listed = await operations.ListOperations(operations_pb2.ListOperationsRequest(name="operations"))
            assert list(listed.operations) == []
            with pytest.raises(grpc.aio.AioRpcError) as error:
                await operations.GetOperation(
                    operations_pb2.GetOperationRequest(name="operations/video-missing")
                )
            assert error.value.code() == grpc.StatusCode.NOT_FOUND

    run_async(scenario(), timeout=60)
    assert config.operations_db(name).exists()


def test_kmono_serve_has_a_subcommand_with_flags_per_service():
    parser = argparse.ArgumentParser(prog="kmono")
    register(parser.add_subparsers(dest="command"))
    for name in SERVICE_NAMES:
        args = parser.parse_args(["serve", name, "--port", "1234", "--max-concurrent-rpcs", "7"])
        assert (args.service, args.port, args.max_concurrent_rpcs) == (name, 1234, 7)
    with pytest.raises(SystemExit):
        parser.parse_args(["serve", "nonexistent"])
