"""Tests of the protoc wrapper and of the shape of the kmono contracts.

The contracts are compiled with the wrapper into a temporary directory and imported in a subprocess (so the
descriptors of this tmp copy never meet the in-place generated code in this process's descriptor pool); the
subprocess sends back each file's serialized FileDescriptorProto and the round-tripped sample messages, and
the checks below run on those.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import re
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import pytest
from google.longrunning import operations_pb2  # registers the operation_info extension in this process
from google.protobuf import descriptor_pb2

_SPEC = importlib.util.spec_from_file_location("kmono_protoc_wrapper", Path(__file__).with_name("protoc.py"))
protoc = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(protoc)

REPO_ROOT = Path(__file__).resolve().parents[2]
PROTO_ROOT = REPO_ROOT / "proto"
OPERATION = ".google.longrunning.Operation"

UNARY, SERVER_STREAMING = "unary", "server_streaming"
EXPECTED_SERVICES = {
    "kmono.video.v1.VideoGenerationService": {
        "CreateVideo": UNARY,
        "WatchOperation": SERVER_STREAMING,
        "DownloadArtifact": SERVER_STREAMING,
    },
    "kmono.masks.v1.MaskService": {
        "ExtractMasks": UNARY,
        "EditMasks": UNARY,
        "ComposeMasks": UNARY,
        "SynthesizeMasks": UNARY,
        "WatchOperation": SERVER_STREAMING,
    },
    "kmono.rank.v1.RankingService": {"RankCandidates": UNARY},
    "kmono.rerank.v1.RerankService": {"RerankList": UNARY},
    "kmono.dialogue.v1.DialogueService": {
        "CreateSession": UNARY,
        "GetSession": UNARY,
        "ListSessions": UNARY,
        "DeleteSession": UNARY,
        "AttachMedia": UNARY,
        "Chat": SERVER_STREAMING,
    },
}
# (service, method) -> (operation_info.response_type, operation_info.metadata_type)
LONG_RUNNING = {
    ("kmono.video.v1.VideoGenerationService", "CreateVideo"): (
        "kmono.video.v1.CreateVideoResponse",
        "kmono.video.v1.CreateVideoMetadata",
    ),
    ("kmono.masks.v1.MaskService", "ExtractMasks"): (
        "kmono.masks.v1.ExtractMasksResponse",
        "kmono.masks.v1.ExtractMasksMetadata",
    ),
}

# Runs in the subprocess: argv[1] is the generated tree, argv[2:] the module names to import.
_IMPORT_SCRIPT = r"""
import base64, json, struct, sys
from pathlib import Path

out = Path(sys.argv[1]).resolve()
sys.path.insert(0, str(out))
import importlib

files = {}
for name in sys.argv[2:]:
    module = importlib.import_module(name)
    assert Path(module.__file__).resolve().is_relative_to(out), (name, module.__file__)
    importlib.import_module(name + "_grpc")
    files[module.DESCRIPTOR.name] = base64.b64encode(module.DESCRIPTOR.serialized_pb).decode()

from kmono.common.v1 import media_pb2, tensor_pb2

seq = media_pb2.MaskSequence(width=4, height=3, num_frames=2, fps=8.0)
seq.objects.add(id=1, label="ball", score=0.9)
seq.objects.add(id=2, label="box", score=1.0)
frame0 = seq.frames.add(frame_index=0)
# 3x4 mask, column-major runs: 4 background, 2 foreground, 6 background (sum 12 = h * w).
frame0.object_masks.add(
    object_id=1,
    rle=media_pb2.RleMask(height=3, width=4, counts=[4, 2, 6]),
    box=media_pb2.BoundingBox(x0=1.0, y0=1.0, x1=2.0, y1=3.0),
    visibility=media_pb2.VISIBILITY_VISIBLE,
)
frame1 = seq.frames.add(frame_index=1)
frame1.object_masks.add(
    object_id=2,
    rle=media_pb2.RleMask(height=3, width=4, compressed_counts=b"52<"),
    visibility=media_pb2.VISIBILITY_OCCLUDED,
)
seq_back = media_pb2.MaskSequence.FromString(seq.SerializeToString())

values = [1.5, -2.0, 0.25, 8.0, 0.0, 3.0]
tensor = tensor_pb2.Tensor(dtype=tensor_pb2.DATA_TYPE_FLOAT32, dims=[2, 3], data=struct.pack("<6f", *values))
tensor_back = tensor_pb2.Tensor.FromString(tensor.SerializeToString())

json.dump({
    "files": files,
    "mask_sequence": {
        "equal": seq_back == seq,
        "size": [seq_back.height, seq_back.width, seq_back.num_frames, seq_back.fps],
        "objects": [[o.id, o.label] for o in seq_back.objects],
        "counts": list(seq_back.frames[0].object_masks[0].rle.counts),
        "box": [getattr(seq_back.frames[0].object_masks[0].box, k) for k in ("x0", "y0", "x1", "y1")],
        "compressed_counts": seq_back.frames[1].object_masks[0].rle.compressed_counts.decode(),
        "visibility": media_pb2.Visibility.Name(seq_back.frames[1].object_masks[0].visibility),
    },
    "tensor": {
        "equal": tensor_back == tensor,
        "dtype": tensor_pb2.DataType.Name(tensor_back.dtype),
        "dims": list(tensor_back.dims),
        "values": list(struct.unpack("<6f", tensor_back.data)),
    },
}, sys.stdout)
"""


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Compile every contract into a tmp dir with the wrapper, import it all in a subprocess, return its report."""
    out = tmp_path_factory.mktemp("gen")
    files = protoc.contract_files(PROTO_ROOT)
    protoc.compile_protos(PROTO_ROOT, out, files)
    modules = [str(f.with_suffix("")).replace("/", ".") + "_pb2" for f in files]
    proc = subprocess.run(
        [sys.executable, "-c", _IMPORT_SCRIPT, str(out), *modules],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    report["descriptors"] = {
        name: descriptor_pb2.FileDescriptorProto.FromString(base64.b64decode(data))
        for name, data in report["files"].items()
    }
    return report


def _services(
    files: Iterable[descriptor_pb2.FileDescriptorProto],
) -> dict[str, descriptor_pb2.ServiceDescriptorProto]:
    return {f"{f.package}.{s.name}": s for f in files for s in f.service}


def _upper_snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).upper()


def enum_style_violations(files: Iterable[descriptor_pb2.FileDescriptorProto]) -> list[str]:
    """buf-style problems of every enum (nested ones included): the zero value must be ENUM_NAME_UNSPECIFIED
    and every value must carry the ENUM_NAME_ prefix. Returns one line per problem."""
    problems: list[str] = []

    def check(scope: str, enums: Iterable[descriptor_pb2.EnumDescriptorProto]) -> None:
        for enum in enums:
            prefix = _upper_snake(enum.name) + "_"
            zero = [v.name for v in enum.value if v.number == 0]
            if zero != [prefix + "UNSPECIFIED"]:
                problems.append(f"{scope}.{enum.name}: zero value {zero} is not {prefix}UNSPECIFIED")
            problems.extend(
                f"{scope}.{enum.name}: {v.name} lacks prefix {prefix}"
                for v in enum.value
                if not v.name.startswith(prefix)
            )

    def walk(scope: str, messages: Iterable[descriptor_pb2.DescriptorProto]) -> None:
        for message in messages:
            check(f"{scope}.{message.name}", message.enum_type)
            walk(f"{scope}.{message.name}", message.nested_type)

    for f in files:
        check(f.package, f.enum_type)
        walk(f.package, f.message_type)
    return problems


def _count_enums(files: Iterable[descriptor_pb2.FileDescriptorProto]) -> int:
    def nested(messages: Iterable[descriptor_pb2.DescriptorProto]) -> int:
        return sum(len(m.enum_type) + nested(m.nested_type) for m in messages)

    return sum(len(f.enum_type) + nested(f.message_type) for f in files)


def test_every_contract_file_generated_and_imported(generated: dict) -> None:
    expected = {str(f) for f in protoc.contract_files(PROTO_ROOT)}
    assert set(generated["descriptors"]) == expected
    for name, fd in generated["descriptors"].items():
        assert re.fullmatch(r"kmono\.[a-z]+\.v1", fd.package), name
        assert name.startswith(fd.package.replace(".", "/") + "/"), (
            f"{name}: directory does not match package"
        )


def test_services_have_expected_rpcs_and_streaming_kinds(generated: dict) -> None:
    services = _services(generated["descriptors"].values())
    assert set(services) == set(EXPECTED_SERVICES)
    for full_name, methods in EXPECTED_SERVICES.items():
        service = services[full_name]
        assert service.name.endswith("Service")
        kinds = {}
        for m in service.method:
            assert not m.client_streaming, f"{full_name}.{m.name} is client-streaming"
            kinds[m.name] = SERVER_STREAMING if m.server_streaming else UNARY
        assert kinds == methods, full_name


def test_unary_rpcs_use_their_own_request_and_response(generated: dict) -> None:
    for full_name, service in _services(generated["descriptors"].values()).items():
        package = full_name.rsplit(".", 1)[0]
        for m in service.method:
            assert m.input_type == f".{package}.{m.name}Request", f"{full_name}.{m.name}"
            if m.output_type != OPERATION:
                assert m.output_type == f".{package}.{m.name}Response", f"{full_name}.{m.name}"


def test_long_running_rpcs_return_operation_with_operation_info(generated: dict) -> None:
    files = generated["descriptors"].values()
    messages = {f"{f.package}.{msg.name}" for f in files for msg in f.message_type}
    found = {}
    for full_name, service in _services(files).items():
        for m in service.method:
            info = m.options.Extensions[operations_pb2.operation_info]
            if m.output_type == OPERATION and not m.server_streaming:
                found[(full_name, m.name)] = (info.response_type, info.metadata_type)
            else:
                assert not m.options.HasExtension(operations_pb2.operation_info), f"{full_name}.{m.name}"
            if m.name == "WatchOperation":
                assert (m.output_type, m.server_streaming) == (OPERATION, True)
    assert found == LONG_RUNNING
    for response_type, metadata_type in found.values():
        assert response_type in messages and metadata_type in messages
        metadata = next(
            msg for f in files for msg in f.message_type if f"{f.package}.{msg.name}" == metadata_type
        )
        fields = {fld.name: fld.type_name for fld in metadata.field}
        assert fields["progress"] == ".kmono.common.v1.Progress"
        assert fields["state"] == ".kmono.common.v1.OperationState"


def test_long_running_requests_carry_request_id(generated: dict) -> None:
    files = generated["descriptors"].values()
    requests = {f".{f.package}.{msg.name}": msg for f in files for msg in f.message_type}
    for full_name, method in LONG_RUNNING:
        service = _services(files)[full_name]
        m = next(m for m in service.method if m.name == method)
        field = next(fld for fld in requests[m.input_type].field if fld.name == "request_id")
        assert field.type == descriptor_pb2.FieldDescriptorProto.TYPE_STRING


def test_mask_sequence_round_trips(generated: dict) -> None:
    report = generated["mask_sequence"]
    assert report["equal"]
    assert report["size"] == [3, 4, 2, 8.0]
    assert report["objects"] == [[1, "ball"], [2, "box"]]
    assert report["counts"] == [4, 2, 6]
    assert report["box"] == [1.0, 1.0, 2.0, 3.0]
    assert report["compressed_counts"] == "52<"
    assert report["visibility"] == "VISIBILITY_OCCLUDED"


def test_tensor_round_trips(generated: dict) -> None:
    report = generated["tensor"]
    assert report["equal"]
    assert report["dtype"] == "DATA_TYPE_FLOAT32"
    assert report["dims"] == [2, 3]
    assert report["values"] == [1.5, -2.0, 0.25, 8.0, 0.0, 3.0]


def test_every_enum_zero_value_is_unspecified(generated: dict) -> None:
    files = list(generated["descriptors"].values())
    assert _count_enums(files) >= 10  # the check below really looked at the contracts' enums
    assert enum_style_violations(files) == []


def test_enum_check_flags_bad_enums() -> None:
    bad = descriptor_pb2.FileDescriptorProto(name="x/v1/bad.proto", package="x.v1")
    top = bad.enum_type.add(name="Color")
    top.value.add(name="COLOR_UNSPECIFIED", number=0)
    top.value.add(name="RED", number=1)
    nested = bad.message_type.add(name="Outer").nested_type.add(name="Inner").enum_type.add(name="Kind")
    nested.value.add(name="KIND_NONE", number=0)
    problems = enum_style_violations([bad])
    assert len(problems) == 2, problems
    assert any("x.v1.Color: RED lacks prefix COLOR_" in p for p in problems)
    assert any("x.v1.Outer.Inner.Kind: zero value ['KIND_NONE']" in p for p in problems)


def test_third_party_staging_is_closed_under_imports(tmp_path: Path) -> None:
    staged = protoc.stage_third_party(tmp_path, PROTO_ROOT)
    for name in (
        "google/longrunning/operations.proto",
        "google/api/annotations.proto",
        "google/api/field_behavior.proto",
        "google/rpc/status.proto",
    ):
        assert name in staged
    assert not (tmp_path / "google/longrunning/operations_proto.proto").exists()
    assert "package google.longrunning;" in (tmp_path / "google/longrunning/operations.proto").read_text()
    for path in tmp_path.rglob("*.proto"):
        for imp in protoc.proto_imports(path):
            assert imp.startswith("google/protobuf/") or (tmp_path / imp).is_file(), f"{path}: {imp}"
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*.proto")) == staged


def test_third_party_closure_follows_contract_imports_and_rejects_unknown(tmp_path: Path) -> None:
    (tmp_path / "a/v1").mkdir(parents=True)
    (tmp_path / "a/v1/a.proto").write_text('syntax = "proto3";\nimport "a/v1/b.proto";\n')
    (tmp_path / "a/v1/b.proto").write_text('syntax = "proto3";\nimport public "google/type/money.proto";\n')
    names = protoc.third_party_closure(tmp_path, [Path("a/v1/a.proto")], extra=())
    assert names == ["google/type/money.proto"]
    (tmp_path / "a/v1/b.proto").write_text('syntax = "proto3";\nimport "google/api/no_such.proto";\n')
    with pytest.raises(FileNotFoundError, match="no_such"):
        protoc.third_party_closure(tmp_path, [Path("a/v1/a.proto")], extra=())


def test_cli_third_party_out(tmp_path: Path) -> None:
    protoc.main(["--proto_root", str(PROTO_ROOT), "--third_party_out", str(tmp_path / "tp")])
    assert (tmp_path / "tp/google/longrunning/operations.proto").is_file()
    assert not list(tmp_path.rglob("*_pb2.py"))
