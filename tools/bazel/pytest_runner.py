"""Main of every py_test made by kmono_py_package (tools/bazel/defs.bzl): run one test file with pytest.

Bazel starts it in the runfiles tree with the test file's path as argument (`$(rootpath ...)`); the repository
root of the runfiles tree is on sys.path, so tests import `libs.serving` etc. exactly as under `make pytest`,
and pytest takes its settings from the runfiles-root pytest.ini that //:pytest_ini makes from pyproject.toml.
The exit code is pytest's.

The venv that runs the tests also serves `make pytest`: its editable install of kmono (a meta path finder) and
the .pth file of `make setup` put the source tree and the in-place generated protobuf code on the import path.
Under Bazel those are removed first, so project code comes only from the runfiles tree: a missing BUILD
dependency fails with ImportError instead of silently importing the source file, and `kmono.*` is the code
Bazel generated.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest


def pytest_args(argv: list[str], environ: dict[str, str]) -> list[str]:
    """pytest arguments for the Bazel test environment `environ` and the test files/flags `argv`."""
    args = ["-p", "no:cacheprovider"]  # the runfiles tree is read-only: no .pytest_cache
    if xml := environ.get("XML_OUTPUT_FILE"):  # per-test-case results in Bazel's test.xml
        args.append(f"--junitxml={xml}")
    if tmp := environ.get("TEST_TMPDIR"):  # tmp_path & co. inside the test's private temporary directory
        args.append(f"--basetemp={os.path.join(tmp, 'pytest')}")
    if only := environ.get("TESTBRIDGE_TEST_ONLY"):  # bazel test --test_filter=EXPR
        args += ["-k", only]
    return args + argv


def is_source_entry(entry: str, source_root: Path) -> bool:
    """Whether a sys.path entry imports from the source tree (but not from a venv inside it)."""
    if entry.startswith("__editable__"):  # setuptools' editable-install path hook placeholder
        return True
    path = Path(os.path.realpath(entry or "."))
    return (
        path.is_relative_to(source_root) and not (path / "pyvenv.cfg").exists() and ".venv" not in path.parts
    )


def isolate_from_source_tree(source_root: Path) -> None:
    """Drop every route from the import system into `source_root` but the runfiles tree (see module doc)."""
    sys.path[:] = [e for e in sys.path if not is_source_entry(e, source_root)]
    sys.meta_path[:] = [
        f for f in sys.meta_path if not getattr(f, "__module__", "").startswith("__editable__")
    ]
    sys.path_importer_cache.clear()


def main() -> int:
    if "TEST_SRCDIR" in os.environ:
        # This file's runfiles entry is a symlink into the source tree: <root>/tools/bazel/pytest_runner.py.
        isolate_from_source_tree(Path(os.path.realpath(__file__)).parents[2])
    return int(pytest.main(pytest_args(sys.argv[1:], dict(os.environ))))


if __name__ == "__main__":
    sys.exit(main())
