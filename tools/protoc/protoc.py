"""Compile the project's .proto contracts to Python with the protoc bundled in grpcio-tools.

Used by `make` (generates in place under proto/, git-ignored) and by the Bazel genrule in proto/BUILD.bazel
(generates into bazel-bin). Both give the same import paths: `from kmono.video.v1 import video_pb2`.

Why a wrapper: the google/* protos our contracts import come from installed packages, not from vendored copies.
googleapis-common-protos ships google/longrunning/operations.proto under the file name `operations_proto.proto`
while it registers itself as `google/longrunning/operations.proto`; we stage a copy under the registered name in
a temporary include directory so generated code imports the module that really exists
(`google.longrunning.operations_pb2`).

`--third_party_out DIR` stages, instead of compiling, every google/* proto (google/api, rpc, longrunning, type)
that the contracts need, the transitive closure of their imports, into DIR for `buf lint` (buf.yaml lists DIR
as a second, lint-excluded module). google/protobuf/* are not staged: protoc and buf both ship the well-known
types. The compile uses the same staged closure as its include path, so protoc and buf see the same files.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
from pathlib import Path

import google.api
import grpc_tools
from grpc_tools import protoc

# google/protobuf/* ship with protoc (grpc_tools/_proto) and with buf; every other google/* import is staged
# from googleapis-common-protos.
WELL_KNOWN_PREFIX = "google/protobuf/"
# Registered import path -> file name that googleapis-common-protos ships it under.
SHIPPED_NAMES = {"google/longrunning/operations.proto": "google/longrunning/operations_proto.proto"}
# Always staged, even before a contract imports it: the reason this wrapper exists.
ALWAYS_STAGED = ("google/longrunning/operations.proto",)

_IMPORT_RE = re.compile(r'^\s*import\s+(?:public\s+|weak\s+)?"([^"]+)"\s*;', re.MULTILINE)


def googleapis_root() -> Path:
    """Directory that holds google/api, google/rpc, google/longrunning of googleapis-common-protos."""
    return Path(next(iter(google.api.__path__))).parent.parent


def proto_imports(path: Path) -> list[str]:
    """Import paths named by one .proto file (plain, public and weak imports)."""
    return _IMPORT_RE.findall(path.read_text(encoding="utf-8"))


def third_party_closure(
    proto_root: Path, files: list[Path], extra: tuple[str, ...] = ALWAYS_STAGED
) -> list[str]:
    """Registered paths of every google/* proto (but google/protobuf/*) that `files` need, transitively.

    `files` are relative to proto_root; imports of other contracts under proto_root are followed too, so a
    subset of the contracts still gets everything its dependencies import. `extra` are registered paths staged
    (with their own imports) regardless. Raises FileNotFoundError for a google/* import that
    googleapis-common-protos does not ship.
    """
    root = googleapis_root()
    seen_local: set[Path] = set()
    needed: set[str] = set()
    pending = [str(f) for f in files] + list(extra)
    while pending:
        name = pending.pop()
        if name.startswith(WELL_KNOWN_PREFIX) or name in needed:
            continue
        local = proto_root / name
        if local.is_file():
            if local not in seen_local:
                seen_local.add(local)
                pending.extend(proto_imports(local))
            continue
        if not name.startswith("google/"):
            continue  # unknown import: left for protoc to report with its own message
        shipped = root / SHIPPED_NAMES.get(name, name)
        if not shipped.is_file():
            raise FileNotFoundError(
                f"{name} is imported but googleapis-common-protos does not ship it ({shipped})"
            )
        needed.add(name)
        pending.extend(proto_imports(shipped))
    return sorted(needed)


def contract_files(proto_root: Path) -> list[Path]:
    """Every kmono/**/*.proto under proto_root, relative to it, sorted."""
    return sorted(p.relative_to(proto_root) for p in proto_root.glob("kmono/**/*.proto"))


def stage_third_party(
    dest: Path, proto_root: Path = Path("proto"), files: list[Path] | None = None
) -> list[str]:
    """Copy the google/* protos that `files` (default: every contract) need into dest under their registered
    names (operations_proto.proto becomes google/longrunning/operations.proto); return the staged names."""
    files = contract_files(proto_root) if files is None else files
    names = third_party_closure(proto_root, files)
    root = googleapis_root()
    for name in names:
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(root / SHIPPED_NAMES.get(name, name), target)
    return names


def relative_files(proto_root: Path, files: list[Path]) -> list[Path]:
    """`files` as paths relative to proto_root (absolute paths must lie under it)."""
    return [f.resolve().relative_to(proto_root.resolve()) if f.is_absolute() else f for f in files]


def include_paths(staged: Path) -> list[str]:
    bundled = Path(grpc_tools.__file__).parent / "_proto"  # google/protobuf/*.proto
    return [str(staged), str(bundled)]


def compile_protos(proto_root: Path, out_dir: Path, files: list[Path], python: bool = True) -> None:
    """Generate _pb2.py, _pb2.pyi and _pb2_grpc.py for `files` (paths under proto_root) into out_dir.

    With python=False, write a descriptor set (with imports and source info) to out_dir/descriptors.pb instead.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    rel = relative_files(proto_root, files)
    with tempfile.TemporaryDirectory() as tmp:
        stage_third_party(Path(tmp), proto_root, rel)
        args = ["protoc", f"--proto_path={proto_root}"]
        args += [f"--proto_path={p}" for p in include_paths(Path(tmp))]
        if python:
            args += [f"--python_out={out_dir}", f"--pyi_out={out_dir}", f"--grpc_python_out={out_dir}"]
        else:
            args += [f"--descriptor_set_out={out_dir / 'descriptors.pb'}", "--include_imports"]
            args += ["--include_source_info"]
        args += [str(f) for f in rel]
        code = protoc.main(args)
    if code != 0:
        raise SystemExit(f"protoc failed with exit code {code}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--proto_root", type=Path, default=Path("proto"), help="import root of the contracts")
    parser.add_argument("--out", type=Path, default=None, help="output directory (default: the proto root)")
    parser.add_argument(
        "--third_party_out",
        type=Path,
        default=None,
        help="only stage the google/* third-party protos the contracts need here (for buf lint) and exit",
    )
    parser.add_argument(
        "files",
        nargs="*",
        type=Path,
        help=".proto files relative to --proto_root (default: every kmono/**/*.proto)",
    )
    args = parser.parse_args(argv)
    files = relative_files(args.proto_root, args.files) or contract_files(args.proto_root)
    if args.third_party_out:
        staged = stage_third_party(args.third_party_out, args.proto_root, files)
        print(f"staged {len(staged)} third-party proto files into {args.third_party_out}", file=sys.stderr)
        return
    compile_protos(args.proto_root, args.out or args.proto_root, files)
    print(
        f"generated Python for {len(files)} proto files into {args.out or args.proto_root}", file=sys.stderr
    )


if __name__ == "__main__":
    main()
