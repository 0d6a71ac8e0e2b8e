"""`kmono models list|pull|verify`: put the weights the engines load where the services read them.

Registered through the `kmono.cli` entry-point group (`models = "libs.modelstore.cli:register"`); the catalogue
comes from the `kmono.models` group (see catalog.py), loaded when a command runs, not for `--help`. Mistakes in
the command line exit 2, failures (the hub unreachable, a damaged file) exit 1, each as one line on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from libs.cli.main import UsageError, add_subcommand
from libs.modelstore.catalog import Catalog, ModelSpec, discover_catalog
from libs.modelstore.errors import ModelStoreError
from libs.modelstore.layout import LAYOUTS
from libs.modelstore.manifest import human_size
from libs.modelstore.store import (
    PlanError,
    PullResult,
    Status,
    inspect,
    plan_pull,
    pull,
    staged_names,
    verify,
)

DIR_ENV = "KMONO_MODELS_DIR"
DEFAULT_DIR = "/models"

DESCRIPTION = """\
Stage the models the engines load (published weights, or the embedded defaults) into one directory the
services read, each in the layout its engine loads, with a manifest of sha256 checksums; list and verify them.

The catalogue (`kmono models list`) names every model an installed engine needs, with its default source and
the service flag that points at the staged folder. `pull` takes a catalogue name, a hub id or a local
directory; offline, pull from a local directory (a copy of the hub repository) or the embedded defaults.
"""

EXAMPLES = """\
examples:
  kmono models list --dir /models                           # catalogue, and what is staged with its status
  kmono models pull grounding-dino sam2 --dir /models       # from the hub, as the catalogue names them
  kmono models pull mvideo --dir /models                    # the embedded shapes-world default (no network)
  kmono models pull wan-vace --revision 3f2a... --dir /models   # a pinned hub commit
  kmono models pull sam2 --from /mnt/usb/sam2.1-hiera-tiny --dir /models   # air-gapped: a local copy
  kmono models pull runs/ft/final --name mvideo --dir /models           # your fine-tuned MVideo
  kmono models pull THUDM/CogVideoX-5b --dir /models        # any hub id (folder: cogvideox-5b)
  kmono models verify --dir /models                         # re-hash everything; exit 1 names the bad file
  kmono serve masks --model-sam2 /models/sam2               # then point the service at the folder

--dir defaults to $KMONO_MODELS_DIR, else /models. HF_TOKEN (gated repositories) and HF_ENDPOINT (a mirror)
are read from the environment; HF_HUB_OFFLINE=1 forbids the hub.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `kmono models` and its subcommands."""
    parser = subparsers.add_parser(
        "models",
        help="stage, list and verify model weights for the services",
        description=DESCRIPTION,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="models_command", metavar="SUBCOMMAND", required=True)

    list_parser = _subparser(
        commands,
        "list",
        "the catalogue and what is staged under --dir",
        "  kmono models list --dir /models\n  kmono models list --json | jq '.[] | select(.state != \"ok\")'\n",
    )
    _add_dir(list_parser)
    list_parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    list_parser.set_defaults(func=_list)

    pull_parser = _subparser(
        commands,
        "pull",
        "stage models into <dir>/<name> in the layout their engine loads, with a sha256 manifest",
        "  kmono models pull grounding-dino sam2 --dir /models\n"
        "  kmono models pull grounding-dino --from ./grounding-dino-tiny --dir /models   # offline\n"
        "  kmono models pull ./my-pipeline --name mvideo --layout diffusers --dir /models\n"
        "  kmono models pull Wan-AI/Wan2.1-VACE-1.3B-diffusers --revision main --force --dir /models\n\n"
        "A catalogue name alone keeps a folder that is already staged (from any source), so running it on\n"
        "every start needs no network once the model is there; an explicit source restages unless the folder\n"
        "already holds it. The old folder is replaced only once the new one is complete.\n",
    )
    pull_parser.add_argument(
        "targets",
        nargs="+",
        metavar="NAME|HUB_ID|DIR",
        help="catalogue name (kmono models list), hub id (org/name) or local directory",
    )
    _add_dir(pull_parser)
    pull_parser.add_argument(
        "--name", help="folder name under --dir (default: the catalogue name, else the source's)"
    )
    pull_parser.add_argument(
        "--from",
        dest="source",
        metavar="DIR|HUB_ID",
        help="stage a catalogue name from here instead of its default source (a local copy, a mirror)",
    )
    pull_parser.add_argument(
        "--layout",
        choices=LAYOUTS,
        help="what the engine loads (default: the catalogue's, else told by the files)",
    )
    pull_parser.add_argument("--revision", help="hub branch, tag or commit (default: main)")
    pull_parser.add_argument("--force", action="store_true", help="stage again even if already staged")
    _add_progress(pull_parser)
    pull_parser.set_defaults(func=_pull)

    verify_parser = _subparser(
        commands,
        "verify",
        "re-hash staged models against their manifests; exit 1 naming each missing or changed file",
        "  kmono models verify --dir /models\n  kmono models verify --dir /models grounding-dino sam2\n",
    )
    verify_parser.add_argument(
        "names", nargs="*", metavar="NAME", help="models to verify (default: every folder under --dir)"
    )
    _add_dir(verify_parser)
    verify_parser.add_argument(
        "--quick",
        action="store_true",
        help="compare sizes only, without hashing (seconds instead of minutes)",
    )
    _add_progress(verify_parser)
    verify_parser.set_defaults(func=_verify)


def _subparser(
    commands: argparse._SubParsersAction, name: str, summary: str, example: str
) -> argparse.ArgumentParser:
    return add_subcommand(commands, name, summary, example)


def _add_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dir",
        default=os.environ.get(DIR_ENV) or DEFAULT_DIR,
        help=f"models directory (env {DIR_ENV}; default: %(default)s)",
    )


def _add_progress(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")


def _catalog() -> Catalog:
    try:
        return discover_catalog()
    except (ValueError, TypeError) as exc:
        raise UsageError(f"the model catalogue is broken: {exc}") from None


def _fail(message: str) -> None:
    print(f"kmono models: error: {message}", file=sys.stderr)


# ----- list -----


def _list(args: argparse.Namespace) -> int:
    catalog = _catalog()
    extra = [name for name in staged_names(args.dir) if name not in catalog]
    rows = [(catalog.get(name), inspect(args.dir, name)) for name in [*catalog, *extra]]
    if args.json:
        print(json.dumps([_row_json(spec, status) for spec, status in rows], indent=2))
        return 0
    print(f"models directory: {args.dir}" + ("" if os.path.isdir(args.dir) else " (does not exist yet)"))
    for spec, status in rows:
        print()
        layout = spec.layout if spec else (status.manifest.layout if status.manifest else "?")
        print(f"{status.name}  [{layout}]  {_status_line(status)}")
        if spec is None:
            print("    not in the catalogue (staged by hand or for an engine that is not installed)")
            continue
        print(f"    {spec.description}")
        print(
            f"    default source: {spec.source}"
            + ("  (embedded; no network needed)" if spec.is_local else "")
        )
        for use in spec.uses:
            print(f"    used by: {use.describe()}")
        for problem in status.problems[:3]:
            print(f"    ! {problem}")
    print("\nstatus compares file sizes with the manifest; `kmono models verify` re-hashes every file.")
    return 0


def _status_line(status: Status) -> str:
    manifest = status.manifest
    if manifest is None:
        return status.state
    summary = f"{len(manifest.files)} files, {human_size(manifest.total_size)} from {manifest.origin}"
    return (
        f"{status.state}: {summary}"
        if status.ok
        else f"{status.state} ({len(status.problems)} problems): {summary}"
    )


def _row_json(spec: ModelSpec | None, status: Status) -> dict[str, Any]:
    manifest = status.manifest
    return {
        "name": status.name,
        "path": str(status.path),
        "state": status.state,
        "layout": spec.layout if spec else (manifest.layout if manifest else None),
        "catalogue": spec is not None,
        "default_source": str(spec.source) if spec else None,
        "uses": [
            {"command": use.command, "flag": use.flag, "env": use.env} for use in (spec.uses if spec else ())
        ],
        "staged": manifest.to_dict() | {"files": len(manifest.files)} if manifest else None,
        "problems": [str(problem) for problem in status.problems],
    }


# ----- pull -----


def _pull(args: argparse.Namespace) -> int:
    if len(args.targets) > 1 and (args.name or args.source):
        raise UsageError("--name and --from go with one model at a time")
    catalog = _catalog()
    try:
        requests = [
            plan_pull(
                target,
                catalog,
                name=args.name,
                source=args.source,
                layout=args.layout,
                revision=args.revision,
            )
            for target in args.targets
        ]
    except PlanError as exc:
        raise UsageError(str(exc)) from None
    except ModelStoreError as exc:
        _fail(str(exc))
        return 1
    failed = 0
    for request in requests:
        try:
            result = pull(request, args.dir, force=args.force, progress=args.progress)
        except ModelStoreError as exc:
            _fail(f"{request.name}: {exc}")
            failed += 1
            continue
        _report_pull(result, request.spec)
    return 1 if failed else 0


def _report_pull(result: PullResult, spec: ModelSpec | None) -> None:
    manifest = result.manifest
    if result.staged:
        print(
            f"staged {result.name} -> {result.path} ({manifest.layout}, {len(manifest.files)} files, "
            f"{human_size(manifest.total_size)}, from {manifest.origin})"
        )
    else:
        print(f"{result.name}: {result.note}")
    for use in spec.uses if spec else ():
        hint = f" (or {use.env}={result.path})" if use.env else ""
        print(f"    {use.command} {use.flag} {result.path}{hint}")


# ----- verify -----


def _verify(args: argparse.Namespace) -> int:
    names = args.names or staged_names(args.dir)
    if not names:
        _fail(f"nothing staged under {args.dir} (run `kmono models pull NAME --dir {args.dir}` first)")
        return 1
    statuses = verify(args.dir, names, quick=args.quick, progress=args.progress)
    check = "sizes" if args.quick else "sha256"
    bad = 0
    for status in statuses:
        if status.ok:
            manifest = status.manifest
            print(
                f"ok {status.name}: {len(manifest.files)} files, {human_size(manifest.total_size)} ({check})"
            )
            continue
        bad += 1
        if not status.problems:
            _fail(f"{status.name}: {status.state} ({status.path})")
        for problem in status.problems:
            _fail(f"{status.name}: {problem}")
    if bad:
        _fail(f"{bad} of {len(statuses)} models failed verification; pull them again with --force")
        return 1
    return 0
