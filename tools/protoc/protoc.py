"""Compile the project's .proto contracts to Python with the protoc bundled in grpcio-tools.

Used by `make` (generates in place under proto/, git-ignored) and by the Bazel genrule in proto/BUILD.bazel
(generates into bazel-bin). Both give the same import paths: `from kmono.video.v1 import video_pb2`.

Why a wrapper: the google/* protos our contracts import come from installed packages, not from vendored copies.
googleapis-common-protos ships google/longrunning/operations.proto under the file name `operations_proto.proto`
while it registers itself as `google/longrunning/operations.proto`; we stage a copy under the registered name in
a temporary include directory so generated code imports the module that really exists
(`google.longrunning.operations_pb2`).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import google.api
import grpc_tools
from grpc_tools import protoc


def googleapis_root() -> Path:
    """Directory that holds google/api, google/rpc, google/longrunning of googleapis-common-protos."""
    return Path(next(iter(google.api.__path__))).parent.parent


def stage_third_party(dest: Path) -> Path:
    """Copy operations_proto.proto to dest/google/longrunning/operations.proto; return dest."""
    target = dest / "google" / "longrunning" / "operations.proto"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(googleapis_root() / "google" / "longrunning" / "operations_proto.proto", target)
    return dest


def include_paths(staged: Path) -> list[str]:
    bundled = Path(grpc_tools.__file__).parent / "_proto"  # google/protobuf/*.proto
    return [str(staged), str(googleapis_root()), str(bundled)]


def compile_protos(proto_root: Path, out_dir: Path, files: list[Path], python: bool = True) -> None:
    """Generate _pb2.py, _pb2.pyi and _pb2_grpc.py for `files` (paths under proto_root) into out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        args = ["protoc", f"--proto_path={proto_root}"]
        args += [f"--proto_path={p}" for p in include_paths(stage_third_party(Path(tmp)))]
        if python:
            args += [f"--python_out={out_dir}", f"--pyi_out={out_dir}", f"--grpc_python_out={out_dir}"]
        else:
            args += [f"--descriptor_set_out={out_dir / 'descriptors.pb'}", "--include_imports"]
        args += [str(f.relative_to(proto_root)) if f.is_absolute() else str(f) for f in files]
        code = protoc.main(args)
    if code != 0:
        raise SystemExit(f"protoc failed with exit code {code}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--proto_root", type=Path, default=Path("proto"), help="import root of the contracts")
    parser.add_argument("--out", type=Path, default=None, help="output directory (default: the proto root)")
    parser.add_argument("--third_party_out", type=Path, default=None,
                        help="only stage google/* third-party protos here (for buf lint) and exit")
    parser.add_argument("files", nargs="*", type=Path, help=".proto files relative to --proto_root "
                        "(default: every kmono/**/*.proto)")
    args = parser.parse_args(argv)
    if args.third_party_out:
        stage_third_party(args.third_party_out)
        return
    files = args.files or sorted(p.relative_to(args.proto_root) for p in args.proto_root.glob("kmono/**/*.proto"))
    compile_protos(args.proto_root, args.out or args.proto_root, files)
    print(f"generated Python for {len(files)} proto files into {args.out or args.proto_root}", file=sys.stderr)


if __name__ == "__main__":
    main()
