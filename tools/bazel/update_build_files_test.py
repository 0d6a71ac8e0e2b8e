from pathlib import Path

from tools.bazel.update_build_files import MARKER, main, update


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


def build(root: Path, package: str) -> str:
    return (root / package / "BUILD.bazel").read_text()


def test_deps_follow_imports_ancestors_and_protos(tmp_path):
    write(
        tmp_path,
        {
            "libs/__init__.py": "",
            "libs/serving/__init__.py": "from libs.serving.errors import Error\n",
            "libs/serving/errors.py": "import grpc\nfrom kmono.common.v1 import media_pb2\n",
            "libs/serving/operations/__init__.py": "",
            "libs/serving/operations/store.py": "from ..errors import Error\n",
            "libs/serving/operations/store_test.py": "from libs.serving.operations import store\n",
            "services/video/server.py": "from libs.serving.operations.store import Store\n",
            "services/video/server_test.py": "import pytest\nfrom services.video import server\n",
        },
    )
    assert update(tmp_path, check=True) == [
        "libs/BUILD.bazel is missing",
        "libs/serving/BUILD.bazel is missing",
        "libs/serving/operations/BUILD.bazel is missing",
        "services/video/BUILD.bazel is missing",
    ]
    assert update(tmp_path, check=False) == []
    assert build(tmp_path, "libs").startswith(MARKER)
    assert build(tmp_path, "libs").endswith("kmono_py_package()\n")
    assert '"//libs",\n        "//proto:protos",\n' in build(tmp_path, "libs/serving")
    assert '"//libs/serving",\n    ],\n)' in build(tmp_path, "libs/serving/operations")
    assert 'deps = [\n        "//libs/serving/operations",\n    ],\n)' in build(tmp_path, "services/video")
    assert update(tmp_path, check=True) == []


def test_parent_importing_its_child_is_not_a_cycle(tmp_path):
    write(
        tmp_path,
        {
            "libs/__init__.py": "",
            "libs/serving/__init__.py": "from libs.serving.testing.echo import Echo\n",
            "libs/serving/testing/__init__.py": "",
            "libs/serving/testing/echo.py": "",
            "libs/serving/testing/echo_test.py": "from libs.serving.testing import echo\n",
        },
    )
    update(tmp_path, check=False)
    child = build(tmp_path, "libs/serving/testing")
    assert 'deps = [\n        "//libs",\n    ],\n    test_deps = [\n        "//libs/serving",\n' in child


def test_hand_maintained_files_are_checked_not_written(tmp_path, capsys):
    hand = 'load("//tools/bazel:defs.bzl", "kmono_py_package")\n\nkmono_py_package(name = "lib", test_size = "large")\n'
    write(
        tmp_path,
        {
            "tools/a/a.py": "from kmono.video.v1 import video_pb2\n",
            "tools/a/BUILD.bazel": hand,
            "tools/b/b.py": "from tools.a import a\n",
        },
    )
    assert main(["--root", str(tmp_path)]) == 1
    assert "tools/a/BUILD.bazel (hand-maintained) lacks deps ['//proto:protos']" in capsys.readouterr().err
    assert build(tmp_path, "tools/a") == hand
    assert '"//tools/a:lib"' in build(tmp_path, "tools/b")


def test_entries_marked_keep_survive_regeneration(tmp_path):
    write(tmp_path, {"tests/a_test.py": "import importlib\n", "services/x/x.py": "", "libs/y/y.py": ""})
    update(tmp_path, check=False)
    kept = build(tmp_path, "tests").replace(
        "kmono_py_package()",
        'kmono_py_package(\n    test_deps = [\n        "//services/x",  # keep\n    ],\n)',
    )
    (tmp_path / "tests" / "BUILD.bazel").write_text(kept)
    assert update(tmp_path, check=True) == []
    (tmp_path / "tests" / "b_test.py").write_text("from libs.y import y\n")
    assert update(tmp_path, check=True) == ["tests/BUILD.bazel is stale"]
    update(tmp_path, check=False)
    assert 'test_deps = [\n        "//libs/y",\n        "//services/x",  # keep\n    ],' in build(
        tmp_path, "tests"
    )
