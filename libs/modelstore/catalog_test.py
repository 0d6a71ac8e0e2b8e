import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from libs.modelstore.catalog import Catalog, ModelSpec, Use, discover_catalog

PACKAGE = Path(__file__).absolute().parent
REPO_ROOT = PACKAGE.parents[1]  # not resolved: under Bazel this is the runfiles tree


def test_spec_checks_its_name_and_layout():
    with pytest.raises(ValueError, match="names a folder"):
        ModelSpec("Bad/Name", "org/x", "transformers", "x")
    with pytest.raises(ValueError, match="layout 'onnx'"):
        ModelSpec("x", "org/x", "onnx", "x")


def test_discovery_records_the_provider_and_refuses_duplicate_names():
    spec = ModelSpec("x", "org/x-base", "transformers", "x", uses=(Use("kmono serve a", "--x", "KMONO_A_X"),))
    catalog = discover_catalog([("pkg", lambda: [spec])])
    assert catalog["x"].provider == "pkg" and list(catalog) == ["x"]
    assert catalog["x"].env_vars() == {"KMONO_A_X": "a"}
    assert catalog.by_source("ORG/x-base") is catalog["x"]
    assert catalog.by_folder_name("x-base") is catalog["x"] and catalog.by_folder_name("x") is catalog["x"]
    assert catalog.by_folder_name("y") is None
    with pytest.raises(ValueError, match="contributed twice"):
        discover_catalog([("a", lambda: [spec]), ("b", lambda: [spec])])
    with pytest.raises(TypeError, match="not ModelSpec"):
        discover_catalog([("bad", lambda: [{"name": "x"}])])


def test_use_names_the_service_of_kmono_serve():
    assert Use("kmono serve masks", "--model-sam2", "KMONO_MASKS_SAM2_MODEL").service == "masks"
    assert Use("kmono mvideo train", "--init-from").service is None


def test_local_sources_are_paths():
    assert ModelSpec("x", Path("/opt/x"), "diffusers", "x").is_local
    assert ModelSpec("x", "./x", "diffusers", "x").is_local
    assert not ModelSpec("x", "org/x", "diffusers", "x").is_local


def test_installed_catalogue_names_the_engines_models():
    """The generation packages' entries (kmono.models): layouts and the service variables behind the flags."""
    catalog = discover_catalog()
    layouts = {name: spec.layout for name, spec in catalog.items()}
    assert (
        layouts
        | {
            "grounding-dino": "transformers",
            "sam2": "transformers",
            "mvideo": "diffusers",
            "cogvideox": "diffusers",
            "wan-vace": "diffusers",
        }
        == layouts
    )
    env = {var: name for name, spec in catalog.items() for var in spec.env_vars()}
    assert env["KMONO_MASKS_GROUNDING_MODEL"] == "grounding-dino" and env["KMONO_MASKS_SAM2_MODEL"] == "sam2"
    assert env["KMONO_VIDEO_ENGINE_PATH"] == "mvideo" and env["KMONO_VIDEO_VACE_PATH"] == "wan-vace"
    assert catalog["mvideo"].is_local and Path(catalog["mvideo"].source, "model_index.json").is_file()
    assert not catalog["sam2"].is_local


_CATALOG_IMPORTS = """
import json, sys
from libs.modelstore.catalog import discover_catalog
names = list(discover_catalog())
print(json.dumps({"names": names, "heavy": [m for m in ("torch", "diffusers", "transformers") if m in sys.modules]}))
"""


def test_catalogue_modules_import_no_torch():
    result = subprocess.run(
        [sys.executable, "-c", _CATALOG_IMPORTS], capture_output=True, text=True, cwd=REPO_ROOT, timeout=120
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert "sam2" in report["names"]
    assert report["heavy"] == [], f"`kmono models list` imported {report['heavy']}"


def test_modelstore_never_imports_generation_recsys_or_services():
    """libs/ is below the engines: the catalogue reaches it through entry points, never imports."""
    forbidden = ("generation", "recsys", "services", "demo")
    for path in sorted(PACKAGE.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in forbidden, f"{path.name} imports {name}"


def test_catalog_is_a_read_only_mapping():
    catalog = Catalog([ModelSpec("x", "org/x", "transformers", "x")])
    assert len(catalog) == 1 and "x" in catalog and catalog.get("y") is None
