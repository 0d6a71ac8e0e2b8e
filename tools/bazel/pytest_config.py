"""Write pyproject.toml's [tool.pytest.ini_options] as a pytest.ini (the genrule //:pytest_ini).

Every py_test reads its pytest settings from that pytest.ini rather than from pyproject.toml itself, so an edit
elsewhere in pyproject.toml (dependencies, ruff) leaves the generated file byte-identical and Bazel keeps its
cached test results. Settings are the same as under `make pytest`.

    pytest_config.py PYPROJECT_TOML OUTPUT_INI
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path


def ini_text(pyproject: str) -> str:
    """pytest.ini text equivalent to the [tool.pytest.ini_options] table of a pyproject.toml text."""
    options = tomllib.loads(pyproject).get("tool", {}).get("pytest", {}).get("ini_options", {})
    lines = ["[pytest]"]
    for key, value in options.items():
        if isinstance(value, list):  # pytest reads list-valued ini options one item per line
            lines.append(f"{key} =" + "".join(f"\n    {item}" for item in value))
        elif isinstance(value, bool):
            lines.append(f"{key} = {str(value).lower()}")
        else:
            lines.append(f"{key} = {value}")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    source, output = (Path(a) for a in argv)
    output.write_text(ini_text(source.read_text(encoding="utf-8")), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
