"""Model weights where the services read them: stage a hub id or a local directory into a models directory in
the layout each engine loads, with a sha256 manifest; list and verify what is staged (`kmono models`).

    from libs.modelstore import discover_catalog, plan_pull, pull, verify

    catalog = discover_catalog()                       # every installed `kmono.models` entry point
    pull(plan_pull("sam2", catalog), "/models")        # -> /models/sam2 + kmono-manifest.json
    assert all(status.ok for status in verify("/models"))

Packages contribute catalogue entries (`ModelSpec`) through the `kmono.models` entry-point group (catalog.py);
layout.py says what each engine loads, manifest.py what a manifest holds, store.py how a pull stays atomic
and idempotent, hub.py how hub failures become one line. Torch-free: `kmono --help` imports the CLI.
"""

from libs.modelstore.catalog import ENTRY_POINT_GROUP, Catalog, ModelSpec, Use, discover_catalog
from libs.modelstore.errors import (
    HubUnreachableError,
    LayoutError,
    ManifestError,
    ModelStoreError,
    SourceError,
)
from libs.modelstore.layout import LAYOUTS, check_layout, detect_layout, select_files
from libs.modelstore.manifest import MANIFEST_NAME, FileEntry, Manifest, Problem, read_manifest
from libs.modelstore.store import (
    PlanError,
    PullRequest,
    PullResult,
    Status,
    inspect,
    plan_pull,
    pull,
    staged_names,
    verify,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "LAYOUTS",
    "MANIFEST_NAME",
    "Catalog",
    "FileEntry",
    "HubUnreachableError",
    "LayoutError",
    "Manifest",
    "ManifestError",
    "ModelSpec",
    "ModelStoreError",
    "PlanError",
    "Problem",
    "PullRequest",
    "PullResult",
    "SourceError",
    "Status",
    "Use",
    "check_layout",
    "detect_layout",
    "discover_catalog",
    "inspect",
    "plan_pull",
    "pull",
    "read_manifest",
    "select_files",
    "staged_names",
    "verify",
]
