"""Every Python package directory has a BUILD.bazel with the deps its imports need, so `bazel test //...`
cannot silently miss a package or fail on a forgotten dependency.

Checks the source tree itself (not the runfiles, which only hold what a BUILD file already declared): under
Bazel the real tree is found by following this file's runfiles symlink, and the target is tagged `external`
so its result is never cached.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

from tools.bazel.update_build_files import ROOTS, find_packages, owning_package, update

SKIP_DIRS = {"__pycache__"}


def repository_root() -> Path:
    root = Path(os.path.realpath(__file__)).parents[2]
    assert (root / "WORKSPACE.bazel").is_file(), f"not the repository root: {root}"
    return root


def directories_missing_build_files(root: Path) -> list[str]:
    missing = []
    for top in ROOTS:
        for dirpath, dirnames, filenames in os.walk(root / top):
            dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not d.startswith("."))
            if any(f.endswith(".py") for f in filenames) and "BUILD.bazel" not in filenames:
                missing.append(Path(dirpath).relative_to(root).as_posix())
    return missing


def test_every_python_directory_has_a_build_file():
    missing = directories_missing_build_files(repository_root())
    assert not missing, (
        "directories with .py files but no BUILD.bazel (add one calling kmono_py_package from "
        f"//tools/bazel:defs.bzl): {missing}"
    )


def test_build_files_match_the_imports():
    problems = update(repository_root(), check=True)
    assert not problems, (
        "BUILD.bazel deps out of date with the imports; run `.venv/bin/python tools/bazel/update_build_files.py` "
        f"(hand-maintained files: add the deps yourself): {problems}"
    )


def test_services_all_lists_every_service():
    services = repository_root() / "services"
    text = (services / "BUILD.bazel").read_text()
    unlisted = [
        d.name
        for d in sorted(services.iterdir())
        if (d / "BUILD.bazel").exists() and f'"//services/{d.name}"' not in text
    ]
    assert not unlisted, f"add these to py_library :all in services/BUILD.bazel: {unlisted}"


def entry_point_modules(pyproject: dict) -> list[str]:
    project = pyproject.get("project", {})
    groups = [project.get("scripts", {}), *project.get("entry-points", {}).values()]
    return sorted({value.split(":")[0] for group in groups for value in group.values()})


def test_entry_points_target_covers_pyproject():
    root = repository_root()
    packages = find_packages(root)
    declared = (root / "BUILD.bazel").read_text()
    declared = declared[declared.index('name = "entry_points"') :]
    missing = []
    for module in entry_point_modules(tomllib.loads((root / "pyproject.toml").read_text())):
        package = owning_package(module, packages)
        label = packages[package].label if package else module
        if f'"{label}"' not in declared and f'"{label}:' not in declared:
            missing.append(label)
    assert not missing, (
        f"add to py_library :entry_points in BUILD.bazel (pyproject.toml entry points): {missing}"
    )


def test_detects_a_missing_build_file(tmp_path):
    (tmp_path / "libs" / "good").mkdir(parents=True)
    (tmp_path / "libs" / "good" / "a.py").write_text("")
    (tmp_path / "libs" / "good" / "BUILD.bazel").write_text("")
    (tmp_path / "libs" / "good" / "__pycache__").mkdir()
    (tmp_path / "libs" / "good" / "__pycache__" / "a.py").write_text("")
    (tmp_path / "services" / "bad").mkdir(parents=True)
    (tmp_path / "services" / "bad" / "b.py").write_text("")
    (tmp_path / "services" / "empty").mkdir()
    assert directories_missing_build_files(tmp_path) == ["services/bad"]
