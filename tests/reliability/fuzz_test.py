"""Every RPC of every service, fed generated messages and raw bytes on a real server process: no answer may be
INTERNAL or UNKNOWN, and every INVALID_ARGUMENT must name the field at fault (a BadRequest field violation).

Messages come from the RPC's own descriptor (`proto_messages`): any field may be set, to ordinary values or to the
ones attacks use (extremes of every integer, NaN and infinities, 1e-9 fps, megabyte strings, path traversal,
remote URIs, unknown enum values, nested messages), plus undecodable bytes. Services whose engine is not built
yet answer UNIMPLEMENTED, which passes; as their engines land the same test covers them. Bounded: 120 messages
and 30 byte strings per RPC; long (`make reliability`): 10,000 and 1,000.
"""

from __future__ import annotations

import importlib
import math

import grpc
import pytest
from google.longrunning import operations_pb2  # noqa: F401 - registers google.longrunning.Operations
from google.protobuf import descriptor_pool, message_factory
from google.protobuf.descriptor import FieldDescriptor
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services import SERVICE_FULL_NAMES, SERVICE_NAMES
from tests.reliability.harness import HERE, LONG, ServerProcess, free_port, report, scaled

OPERATIONS = "google.longrunning.Operations"
FAKE_ENGINES = ("video", "masks")  # long-running services run a torch-free fake engine (fake_servers.py)
STATE_ARGS = {"dialogue": ("--data-dir", "{tmp}")}  # services that keep state keep it in the test's folder
FORBIDDEN = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}
HOSTILE_STRINGS = [
    "",
    "../../../../etc/passwd",
    "file:///etc/passwd",
    "file:///proc/self/environ",
    "operations/../artifacts/operations.sqlite",
    "operations/video-1/artifacts/video",
    "ftp://127.0.0.1:9/x.json",
    "webhdfs://127.0.0.1:9/x",
    "local:///etc/hostname",
    "memory://x.pb",
    "a" * 70_000,
    "\x00\u202e\ufeff",
    "ball.",
    "done = false",
]
STATS: dict[str, dict[str, int]] = {}


def _scalar(field: FieldDescriptor) -> st.SearchStrategy:
    kind = field.type
    if kind in (FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_SINT32, FieldDescriptor.TYPE_SFIXED32):
        return st.one_of(st.integers(-3, 40), st.sampled_from([-(2**31), 2**31 - 1, 10**6, 16384]))
    if kind in (FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_SINT64, FieldDescriptor.TYPE_SFIXED64):
        return st.one_of(st.integers(-3, 40), st.sampled_from([-(2**63), 2**63 - 1, 10**12]))
    if kind in (FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_FIXED32):
        return st.one_of(st.integers(0, 40), st.just(2**32 - 1))
    if kind in (FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED64):
        return st.one_of(st.integers(0, 40), st.just(2**64 - 1))
    if kind in (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE):
        special = [math.nan, math.inf, -math.inf, 1e-9, 1e-45, 1e30, -1.0, 0.5, 8.0, 8e5]
        return st.one_of(st.sampled_from(special), st.floats(-1e3, 1e3, width=32))
    if kind == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if kind == FieldDescriptor.TYPE_STRING:
        return st.one_of(st.sampled_from(HOSTILE_STRINGS), st.text(max_size=12))
    if kind == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=48)
    if kind == FieldDescriptor.TYPE_ENUM:
        values = [v.number for v in field.enum_type.values]
        return st.one_of(st.sampled_from(values), st.integers(-1, max(values) + 3))
    raise AssertionError(f"unhandled field type {kind}")


def _fill(message, data, depth: int, odds: int = 3) -> None:
    """Set a random subset of `message`'s fields (each one time in `odds`, drawing from `data`), nested
    messages down to `depth`."""
    for field in message.DESCRIPTOR.fields:
        if data.draw(st.integers(0, odds - 1)):
            continue
        is_message = field.type == FieldDescriptor.TYPE_MESSAGE
        if is_message and field.message_type.GetOptions().map_entry:
            _fill_map(getattr(message, field.name), field.message_type, data, depth, odds)
            continue
        if is_message and depth <= 0:
            continue
        if field.is_repeated:
            target = getattr(message, field.name)
            for _ in range(data.draw(st.integers(0, 3))):
                if is_message:
                    _fill(target.add(), data, depth - 1, odds)
                else:
                    target.append(data.draw(_scalar(field)))
        elif is_message:
            _fill(getattr(message, field.name), data, depth - 1, odds)
            getattr(message, field.name).SetInParent()
        else:
            setattr(message, field.name, data.draw(_scalar(field)))


def _fill_map(target, entry, data, depth: int, odds: int) -> None:
    """Add 0-2 entries to a map field (feature maps, score maps, tensors by name: where a request's free-form
    input lives); message values are filled like nested messages."""
    key_field, value_field = entry.fields_by_name["key"], entry.fields_by_name["value"]
    for _ in range(data.draw(st.integers(0, 2))):
        key = data.draw(_scalar(key_field))
        if value_field.type != FieldDescriptor.TYPE_MESSAGE:
            target[key] = data.draw(_scalar(value_field))
        elif depth > 0:
            _fill(target[key], data, depth - 1, odds)
        else:
            target[key].SetInParent()


def rpcs_of(service: str) -> list[tuple[str, object, object]]:
    """(full method path, request class, method descriptor) of a service, plus the Operations service for the
    long-running ones."""
    importlib.import_module(f"kmono.{service}.v1.{service}_pb2")  # registers the descriptors
    pool = descriptor_pool.Default()
    names = [SERVICE_FULL_NAMES[service]] + ([OPERATIONS] if service in FAKE_ENGINES else [])
    out = []
    for name in names:
        for method in pool.FindServiceByName(name).methods:
            request_class = message_factory.GetMessageClass(method.input_type)
            out.append((f"/{name}/{method.name}", request_class, method))
    return out


def valid_requests() -> dict[str, object]:
    """A valid request per RPC that does real work: half the examples mutate one of these a little, so the
    fuzzing reaches past the first required-field check."""
    import numpy as np
    from kmono.common.v1 import media_pb2
    from kmono.masks.v1 import masks_pb2
    from kmono.rank.v1 import rank_pb2
    from kmono.rerank.v1 import rerank_pb2
    from kmono.video.v1 import video_pb2

    from generation.masks.synth import SyntheticObject, synthesize
    from generation.masks.trajectory import Trajectory
    from libs.media import encode_video, to_proto
    from libs.serving.inputs import to_float_tensor
    from recsys.mmbee.defaults import DEFAULT_MODEL_PATH as MMBEE_DEFAULT
    from recsys.mmbee.engine import read_engine_file
    from recsys.mmbee.requests import CONTENT_EMBEDDINGS

    ball = to_proto(
        synthesize([SyntheticObject("circle", Trajectory([(0, (8, 8)), (8, (24, 20))]), width=8, height=8)],
                   width=32, height=32, num_frames=9, fps=8)
    )  # fmt: skip
    video = encode_video(np.full((4, 16, 16, 3), 90, np.uint8), fps=4, format="mp4")
    masks, created = "/kmono.masks.v1.MaskService/", "/kmono.video.v1.VideoGenerationService/"
    # a segment of the shape the served MMBee default reads ([segment seconds, content dim], from its engine file)
    engine = read_engine_file(MMBEE_DEFAULT)
    tokens = to_float_tensor(np.full((engine["segment_seconds"], engine["content_dim"]), 0.1, np.float32))
    streams = [rank_pb2.Candidate(stream_id=f"s{i}", author_id=f"a{i}") for i in range(4)]
    for name in CONTENT_EMBEDDINGS:
        streams[0].features.embeddings[name].CopyFrom(tokens)
    items = [
        rerank_pb2.RerankItem(item_id=f"i{i}", author_id=f"a{i % 3}", scores={"ctr": 0.1 * (i + 1)})
        for i in range(6)
    ]
    return {
        "/kmono.rank.v1.RankingService/RankCandidates": rank_pb2.RankCandidatesRequest(
            user_id="u1", candidates=streams, top_k=3
        ),
        "/kmono.rerank.v1.RerankService/RerankList": rerank_pb2.RerankListRequest(
            user_id="u1", items=items, num_slots=3
        ),
        f"{created}CreateVideo": video_pb2.CreateVideoRequest(
            prompt="a red circle", mask_sequence=ball, num_inference_steps=2
        ),
        f"{masks}EditMasks": masks_pb2.EditMasksRequest(
            mask_sequence=ball,
            edits=[
                masks_pb2.MaskEdit(
                    translate=masks_pb2.MaskEdit.Translate(constant_offset=masks_pb2.Offset(dx=2))
                )
            ],
        ),
        f"{masks}ComposeMasks": masks_pb2.ComposeMasksRequest(
            layers=[masks_pb2.MaskLayer(mask_sequence=ball)] * 2
        ),
        f"{masks}SynthesizeMasks": masks_pb2.SynthesizeMasksRequest(
            width=32,
            height=32,
            num_frames=8,
            fps=8,
            objects=[
                masks_pb2.SyntheticObject(
                    shape=masks_pb2.SHAPE_CIRCLE,
                    width=6,
                    height=6,
                    center_trajectory=masks_pb2.PointTrajectory(
                        keyframes=[masks_pb2.PointKeyframe(x=8, y=8)]
                    ),
                )
            ],
        ),
        f"{masks}ExtractMasks": masks_pb2.ExtractMasksRequest(
            video=media_pb2.MediaRef(inline_data=video), text_query="ball."
        ),
    }


VALID = valid_requests()
ALL_RPCS = [(service, path) for service in SERVICE_NAMES for path, _, _ in rpcs_of(service)]


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """service -> its running server process, started on first use, stopped after the module."""
    started: dict[str, ServerProcess] = {}

    def get(service: str) -> ServerProcess:
        if service not in started:
            tmp = tmp_path_factory.mktemp(service)
            if service in FAKE_ENGINES:
                argv = [str(HERE / "fake_servers.py"), service, "--delay", "0.001", "--",
                        "--data-dir", str(tmp), "--max-queued-jobs", "100000"]  # fmt: skip
            else:
                argv = ["-m", f"services.{service}", *STATE_ARGS.get(service, ())]
                argv = [a.replace("{tmp}", str(tmp)) for a in argv]
            process = ServerProcess(
                argv=argv, port=free_port(), log=tmp / "server.log", service=SERVICE_FULL_NAMES[service]
            )
            process.start()
            started[service] = process
        return started[service]

    yield get
    for process in started.values():
        process.stop()


def rpc(service: str, path: str):
    return next((cls, method) for p, cls, method in rpcs_of(service) if p == path)


def call(channel: grpc.Channel, path: str, method, payload: bytes, *, parsed: bool = True) -> grpc.StatusCode:
    """Send `payload` (serialized) to `path`; the status the server answered (OK for a stream's first messages).
    A `parsed` message that is INVALID_ARGUMENT must name a field; bytes that do not parse name none."""
    identity = lambda b: b  # noqa: E731 - bytes pass through both ways
    try:
        if method.server_streaming and not method.client_streaming:
            stream = channel.unary_stream(path, request_serializer=identity, response_deserializer=identity)(
                payload, timeout=10
            )
            for count, _ in enumerate(stream):
                if count >= 2:
                    stream.cancel()
                    break
        else:
            channel.unary_unary(path, request_serializer=identity, response_deserializer=identity)(
                payload, timeout=10
            )
        return grpc.StatusCode.OK
    except grpc.RpcError as error:
        code = error.code()
        if code == grpc.StatusCode.CANCELLED:  # our own cancel of a stream
            return grpc.StatusCode.OK
        assert code not in FORBIDDEN, f"{path}: {code.name}: {error.details()}"
        if code == grpc.StatusCode.INVALID_ARGUMENT and parsed:
            status = rpc_status.from_call(error)
            violations = []
            for detail in status.details if status else []:
                if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                    bad = error_details_pb2.BadRequest()
                    detail.Unpack(bad)
                    violations.extend(bad.field_violations)
            assert violations, f"{path}: INVALID_ARGUMENT without a field violation: {error.details()}"
        return code


SETTINGS = dict(deadline=None, suppress_health_check=list(HealthCheck), derandomize=not LONG, database=None)


@pytest.mark.parametrize("path", sorted(VALID))
def test_the_valid_starting_requests_are_answered_ok(servers, path):
    """Half the fuzzing mutates these: one that a contract change made invalid would quietly stop the mutations
    from reaching the engine."""
    service = next(service for service, rpc_path in ALL_RPCS if rpc_path == path)
    _, method = rpc(service, path)
    assert call(servers(service).channel, path, method, VALID[path].SerializeToString()) == grpc.StatusCode.OK


@pytest.mark.parametrize(("service", "path"), ALL_RPCS)
def test_generated_messages_are_answered_without_internal_or_unknown(servers, service, path):
    channel = servers(service).channel
    request_class, method = rpc(service, path)

    @settings(max_examples=scaled(120, 10_000), **SETTINGS)
    @given(st.data())
    def one(data):
        message = request_class()
        if path in VALID and data.draw(st.booleans()):
            message.CopyFrom(VALID[path])
            _fill(message, data, depth=3, odds=12)  # a valid request, a few fields changed
        else:
            _fill(message, data, depth=3)
        code = call(channel, path, method, message.SerializeToString())
        STATS.setdefault(path, {}).setdefault(code.name, 0)
        STATS[path][code.name] += 1

    one()
    report(f"fuzz {path}", ", ".join(f"{k} {v}" for k, v in sorted(STATS[path].items())))


@pytest.mark.parametrize(("service", "path"), ALL_RPCS)
def test_undecodable_bytes_are_invalid_argument_on_every_rpc(servers, service, path):
    channel = servers(service).channel
    _, method = rpc(service, path)
    seen: dict[str, int] = {}

    @settings(max_examples=scaled(30, 1_000), **SETTINGS)
    @given(st.binary(min_size=1, max_size=64))
    def one(payload):
        code = call(channel, path, method, b"\xff\xff\xff" + payload, parsed=False)  # an invalid wire type
        seen[code.name] = seen.get(code.name, 0) + 1
        assert code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.UNIMPLEMENTED), code

    one()
    report(f"fuzz bytes {path}", ", ".join(f"{k} {v}" for k, v in sorted(seen.items())))
