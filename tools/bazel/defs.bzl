"""Macros for the kmono monorepo's BUILD.bazel files.

kmono_py_package: one Python package (a directory with .py files) = one py_library with its non-test .py files
  + one py_test per `*_test.py`, run with pytest through //tools/bazel:pytest_runner.py. Imports are repository
  root relative (`from libs.serving import ...`): the repository root of the runfiles tree is on sys.path.
kmono_py_protos: protoc (grpcio-tools, through //tools/protoc) for every .proto of a proto root, one genrule,
  consumed as a py_library whose `imports` make the proto root an import root (`from kmono.common.v1 import
  media_pb2`), exactly as the .pth file `make setup` writes does for the pip install.
"""

_RUNNER = "//tools/bazel:pytest_runner.py"

# Data of every py_test: pytest's settings (pyproject.toml's [tool.pytest.ini_options] as a pytest.ini at the
# runfiles root, the same settings as `make pytest`) and the locks the venv is installed from (see //:BUILD.bazel).
_TEST_DATA = ["//:pytest.ini", "//:requirements/cpu.lock", "//:requirements/torch-cpu.txt"]

# Generated protobuf modules: `make protos` writes git-ignored copies beside the .proto files; Bazel must
# never pick those up as sources (Bazel generates its own in bazel-bin).
_GENERATED = ["*_pb2.py", "*_pb2.pyi", "*_pb2_grpc.py"]

# Default `data`: every other file of the directory and of its subdirectories that are not packages (configs,
# small weights, test data), as the pip editable install sees them.
_NOT_DATA = ["**/*.py", "**/*.pyc", "**/__pycache__/**", "**/*.pyi", "BUILD.bazel", "BUILD", "**/.*"]

def kmono_py_package(
        name = None,
        srcs = None,
        deps = [],
        data = None,
        test_deps = [],
        test_data = [],
        test_size = "medium",
        test_timeout = None,
        test_tags = [],
        test_env = {},
        test_overrides = {},
        visibility = ["//visibility:public"]):
    """py_library of this directory's .py files and one py_test per `*_test.py` file.

    Args:
      name: the py_library's name; default: the directory name, so `//libs/serving` is the library.
      srcs: library sources; default: every .py file here except tests, conftest.py and generated protobuf code.
      deps: what the library imports: other packages' py_library labels, "//proto:protos" for `kmono.*`
        (third-party packages come from the venv interpreter's site-packages and need no label).
      data: runtime files of the library; default: every non-Python file here and in subdirectories that have
        no BUILD.bazel of their own.
      test_deps: extra deps of the tests (the library itself is always one).
      test_data: extra runtime files of the tests (conftest.py of this directory is always included).
      test_size: Bazel size of every py_test (small, medium, large, enormous); the default "medium" gives the
        same 300 s limit as pytest-timeout in pyproject.toml.
      test_timeout: Bazel timeout of every py_test; default: the one implied by test_size.
      test_tags: tags of every py_test (e.g. "manual", "exclusive", "external").
      test_env: environment of every py_test.
      test_overrides: per-test py_test attributes, by test name (the file name without .py), replacing the
        ones above, e.g. {"train_test": {"size": "large"}}.
      visibility: of the library.
    """
    if name == None:
        name = native.package_name().split("/")[-1]
    tests = native.glob(["*_test.py"])
    conftest = native.glob(["conftest.py"])
    if srcs == None:
        srcs = native.glob(["*.py"], exclude = tests + conftest + _GENERATED)

    if data == None:
        data = native.glob(["**"], exclude = _NOT_DATA)

    native.py_library(
        name = name,
        srcs = srcs,
        deps = deps,
        data = data,
        srcs_version = "PY3",
        visibility = visibility,
    )

    test_names = [test[:-len(".py")] for test in tests]
    for unknown in [n for n in test_overrides if n not in test_names]:
        fail("test_overrides: no %s.py in %s" % (unknown, native.package_name()))
    for test, test_name in zip(tests, test_names):
        attrs = dict(
            deps = [":" + name] + test_deps,
            data = _TEST_DATA + test_data,
            env = test_env,
            size = test_size,
            timeout = test_timeout,
            tags = test_tags,
        )
        attrs.update(test_overrides.get(test_name, {}))
        native.py_test(
            name = test_name,
            srcs = [test, _RUNNER] + conftest,
            main = _RUNNER,
            args = ["$(rootpath %s)" % test],
            python_version = "PY3",
            srcs_version = "PY3",
            **attrs
        )

def _proto_outputs(proto):
    base = proto[:-len(".proto")]
    return [base + "_pb2.py", base + "_pb2_grpc.py", base + "_pb2.pyi"]

def kmono_py_protos(name, srcs = None, visibility = ["//visibility:public"]):
    """Python protobuf + gRPC code for the .proto files under this package (the proto root).

    Creates `<name>_gen` (one genrule: every .proto in, `*_pb2.py`, `*_pb2_grpc.py`, `*_pb2.pyi` out, paths
    mirroring the sources) and `<name>` (py_library of the generated modules with `imports = ["."]`).

    Args:
      name: name of the py_library.
      srcs: .proto files relative to this package; default: glob kmono/**/*.proto, so a new contract needs no
        BUILD edit.
      visibility: of the py_library.
    """
    if srcs == None:
        srcs = native.glob(["kmono/**/*.proto"])
    if not srcs:
        fail("kmono_py_protos: no .proto files under %s" % native.package_name())
    outs = []
    for proto in srcs:
        outs += _proto_outputs(proto)
    proto_root = native.package_name() or "."

    native.genrule(
        name = name + "_gen",
        srcs = srcs,
        outs = outs,
        # Paths relative to the proto root, as protoc import paths; outputs land in this package's bin dir.
        cmd = "$(execpath //tools/protoc) --proto_root=%s --out=$(RULEDIR) %s" % (proto_root, " ".join(srcs)),
        tools = ["//tools/protoc"],
        message = "Generating Python protobuf/gRPC code for %d .proto files" % len(srcs),
    )

    native.py_library(
        name = name,
        srcs = [out for out in outs if out.endswith(".py")],
        imports = ["."],
        srcs_version = "PY3",
        visibility = visibility,
    )
