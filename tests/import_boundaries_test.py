"""The architecture's one-way imports (DESIGN.md), checked on every module's import statements:

- a service (`services/<a>/`) never imports another service (`services/<b>/`): what two need lives in `libs/`,
  their engines in `generation/` or `recsys/`;
- `libs/` never imports `generation/`, `recsys/`, `services/` or the demo;
- engines (`generation/`, `recsys/`) never import `services/` or the demo.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("libs", "generation", "recsys", "services", "demo")


def imported_modules(path: Path, root: Path) -> set[str]:
    """Every absolute module an import statement of `path` names (relative imports resolved)."""
    tree = ast.parse(path.read_text(), str(path))
    package = ".".join(path.relative_to(root).with_suffix("").parts[:-1])
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def violations(path: Path, root: Path = ROOT) -> list[str]:
    """The modules `path` imports against the rules (its own `from x import y` names count as `x`)."""
    parts = path.relative_to(root).parts
    top = parts[0]
    own_service = parts[1] if top == "services" and len(parts) > 2 else None
    bad = []
    for module in imported_modules(path, root):
        head, _, rest = module.partition(".")
        if top == "libs" and head in ("generation", "recsys", "services", "demo"):
            bad.append(module)
        elif top in ("generation", "recsys") and head in ("services", "demo"):
            bad.append(module)
        elif own_service and head == "services":
            other = rest.partition(".")[0]
            if other and (root / "services" / other).is_dir() and other != own_service:
                bad.append(module)
    return sorted(bad)


def source_files() -> list[Path]:
    return sorted(p for top in PACKAGES if (ROOT / top).is_dir() for p in (ROOT / top).rglob("*.py"))


def test_no_forbidden_import_anywhere():
    found = {str(p.relative_to(ROOT)): v for p in source_files() if (v := violations(p))}
    assert not found, f"imports against DESIGN.md's one-way rule: {found}"


@pytest.mark.parametrize(
    ("where", "source", "expected"),
    [
        ("services/video/x.py", "from services.masks.worker import KIND\n", ["services.masks.worker"]),
        ("services/video/x.py", "import services.masks\n", ["services.masks"]),
        ("services/video/x.py", "from services.video import convert\nfrom libs.serving import run\n", []),
        ("libs/media/x.py", "from generation.masks import edit\n", ["generation.masks"]),
        ("libs/media/x.py", "from services import SERVICE_NAMES\n", ["services"]),
        ("generation/masks/x.py", "from services.video.worker import KIND\n", ["services.video.worker"]),
        ("generation/masks/x.py", "from libs.media import MaskSequence\n", []),
    ],
)
def test_the_check_catches_each_kind_of_violation(tmp_path, where, source, expected):
    for name in ("masks", "video"):
        (tmp_path / "services" / name).mkdir(parents=True, exist_ok=True)
    path = tmp_path / where
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(source)
    found = violations(path, tmp_path)
    assert set(expected) <= set(found) and (found == [] if not expected else True), found
