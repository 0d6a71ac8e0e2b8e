"""Staging models into a models directory (`pull`), and checking what is there (`inspect`, `verify`).

A models directory holds one folder per model, named as in the catalogue, in the layout its engine loads:

    /models/grounding-dino/{config.json, model.safetensors, ..., kmono-manifest.json}
    /models/mvideo/{model_index.json, transformer/, vae/, ..., kmono-manifest.json}

`pull` copies (a local directory) or downloads (a hub id) into a hidden staging folder beside the target, checks
the layout, hashes every file into the manifest, and only then renames the staging folder into place, so a
folder under its own name is always a complete pull; the old folder, if any, is replaced in one rename. One
lock file per models directory serialises pulls; leftovers of a killed pull are removed by the next one.

Pulling again is cheap, so an initContainer can run it on every pod start (our choice of rules):
- a catalogue name alone (`pull sam2`) means "make sure sam2 is staged": a folder staged from any source is kept
  (an operator may have staged a fine-tuned or air-gapped copy on purpose), so this never needs the hub once
  the model is there; `--revision` other than the staged one, or `--force`, pulls again;
- an explicit source (`pull org/name`, `pull ./dir`, `pull NAME --from ...`) is staged unless the folder already
  holds that source: the same hub id at the same revision, or a directory whose files hash the same. The
  embedded defaults are directories, so a new image with a retrained default restages it.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from libs.modelstore import hub
from libs.modelstore.catalog import NAME_PATTERN, Catalog, ModelSpec, is_local_source
from libs.modelstore.errors import (
    HubUnreachableError,
    LayoutError,
    ManifestError,
    ModelStoreError,
    SourceError,
)
from libs.modelstore.layout import (
    LAYOUT_HELP,
    LAYOUTS,
    check_layout,
    detect_layout,
    list_files,
    missing_key_file,
    select_files,
)
from libs.modelstore.manifest import (
    Manifest,
    Problem,
    compare_files,
    copy_and_hash,
    hash_files,
    progress_bar,
    read_manifest,
    write_manifest,
)

logger = logging.getLogger(__name__)

LOCK_NAME = ".kmono-models.lock"
_STAGING_PREFIX = ".kmono-staging-"
_OLD_PREFIX = ".kmono-old-"


class PlanError(ModelStoreError):
    """What to pull is unclear (an unknown name, flags that do not go together): a usage error."""


@dataclass(frozen=True)
class PullRequest:
    """One model to stage: under which name, from where, in which layout."""

    name: str
    source: str
    """A hub id, or the absolute path of a local directory."""
    layout: str | None = None
    """None: told by the files (model_index.json: diffusers; config.json: transformers)."""
    requires: tuple[str, ...] = ()
    revision: str | None = None
    spec: ModelSpec | None = None
    catalogue_default: bool = False
    """A bare catalogue name: stage the entry's own source, keep any folder already staged."""

    @property
    def is_hub(self) -> bool:
        return not is_local_source(self.source)


def plan_pull(
    target: str,
    catalog: Catalog,
    *,
    name: str | None = None,
    source: str | None = None,
    layout: str | None = None,
    revision: str | None = None,
) -> PullRequest:
    """What `kmono models pull TARGET [--name] [--from] [--layout] [--revision]` stages.

    TARGET is a catalogue name, a local directory or a hub id. A directory or hub id that is a copy of a
    catalogue entry (by --name, by hub id, or by a directory named like the entry or its hub repository) takes
    that entry's name, layout and required files."""
    if layout is not None and layout not in LAYOUTS:
        raise PlanError(f"--layout {layout!r}: choose one of {', '.join(LAYOUTS)}")
    if name is not None and not NAME_PATTERN.fullmatch(name):
        raise PlanError(
            f"--name {name!r}: use lower case letters, digits, '.', '_' and '-' (it names a folder)"
        )
    spec = catalog.get(target)
    if spec is not None:
        chosen = source if source is not None else str(spec.source)
        if source is not None and is_local_source(source):
            chosen = _local_dir(source)
        return PullRequest(
            name=name or spec.name,
            source=chosen,
            layout=layout or spec.layout,
            requires=spec.requires,
            revision=revision,
            spec=spec,
            catalogue_default=source is None,
        )
    if source is not None:
        raise PlanError(
            f"--from goes with a catalogue name ({', '.join(catalog) or 'none installed'}); {target!r} is not one"
        )
    if is_local_source(target):
        path = _local_dir(target)
        spec = catalog.get(name) if name else catalog.by_folder_name(Path(path).name)
    elif hub.is_hub_id(target):
        path = target
        spec = catalog.get(name) if name else catalog.by_source(target)
    else:
        raise PlanError(
            f"{target!r} is not a catalogue name ({', '.join(catalog) or 'none installed'}), an existing "
            "directory, or a hub id (org/name); `kmono models list` shows the catalogue"
        )
    folder = name or (spec.name if spec else _folder_name(Path(path).name if is_local_source(path) else path))
    return PullRequest(
        name=folder,
        source=path,
        layout=layout or (spec.layout if spec else None),
        requires=spec.requires if spec else (),
        revision=revision,
        spec=spec,
    )


def _local_dir(text: str) -> str:
    path = Path(text).expanduser().resolve()
    if not path.is_dir():
        raise SourceError(f"no such directory: {text}")
    return str(path)


def _folder_name(text: str) -> str:
    """A folder name from a directory name or a hub id (`THUDM/CogVideoX-5b` -> `cogvideox-5b`)."""
    base = text.rstrip("/").rsplit("/", 1)[-1].lower()
    cleaned = "".join(c if c.isalnum() or c in "._-" else "-" for c in base).lstrip("._-")
    if not NAME_PATTERN.fullmatch(cleaned):
        raise PlanError(f"cannot make a folder name from {text!r}: give one with --name")
    return cleaned


# ----- pull -----


@dataclass(frozen=True)
class PullResult:
    name: str
    path: Path
    manifest: Manifest
    staged: bool
    """False when the folder was kept (already staged; see the module docstring)."""
    note: str = ""


def pull(
    request: PullRequest, models_dir: str | os.PathLike[str], *, force: bool = False, progress: bool = True
) -> PullResult:
    """Stage one model into `<models_dir>/<name>` (see the module docstring for when it is kept instead)."""
    models_dir = Path(models_dir)
    try:
        models_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModelStoreError(
            f"cannot create the models directory {models_dir}: {exc.strerror or exc}"
        ) from None
    target = models_dir / request.name
    with _locked(models_dir):
        _remove_leftovers(models_dir)
        existing = _existing_manifest(target)
        if existing is not None and not force:
            note = _kept_because(request, existing, progress)
            if note:
                return PullResult(request.name, target, existing, staged=False, note=note)
        staging = Path(tempfile.mkdtemp(prefix=f"{_STAGING_PREFIX}{request.name}-", dir=models_dir))
        try:
            os.chmod(staging, 0o755)  # mkdtemp makes it 0700; the serving user may differ from the puller
            try:
                manifest = (
                    _stage_hub(request, staging, progress)
                    if request.is_hub
                    else _stage_local(request, staging, progress)
                )
            except HubUnreachableError as exc:
                raise HubUnreachableError(f"{exc}; {offline_hint(request, models_dir)}") from None
            write_manifest(staging, manifest)
            _swap(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    logger.info("staged %s at %s from %s", request.name, target, manifest.origin)
    return PullResult(request.name, target, manifest, staged=True)


def offline_hint(request: PullRequest, models_dir: Path) -> str:
    """How to stage this model without the hub (the second half of the unreachable-hub line)."""
    copy = request.source.rsplit("/", 1)[-1] if request.is_hub else "DIR"
    if request.spec is not None:
        command = f"kmono models pull {request.spec.name} --from ./{copy} --dir {models_dir}"
    else:
        command = f"kmono models pull ./{copy} --name {request.name} --dir {models_dir}"
    return (
        f"to stage it without the hub, copy the repository where the hub is reachable "
        f"(`hf download {request.source} --local-dir {copy}`, or from a machine's Hugging Face cache), "
        f"bring that directory here and run `{command}`"
    )


@contextmanager
def _locked(models_dir: Path) -> Iterator[None]:
    try:
        handle = open(models_dir / LOCK_NAME, "a+b")
    except OSError as exc:
        raise ModelStoreError(
            f"cannot write to the models directory {models_dir}: {exc.strerror or exc}"
        ) from None
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _remove_leftovers(models_dir: Path) -> None:
    for entry in models_dir.iterdir():
        if entry.name.startswith((_STAGING_PREFIX, _OLD_PREFIX)):
            logger.info("removing %s (left by an interrupted pull)", entry)
            shutil.rmtree(entry, ignore_errors=True)


def _existing_manifest(target: Path) -> Manifest | None:
    if not target.is_dir():
        return None
    try:
        return read_manifest(target)
    except ManifestError as exc:
        logger.warning("%s; pulling it again", exc)
        return None


def _kept_because(request: PullRequest, existing: Manifest, progress: bool) -> str | None:
    """Why the staged folder stays (a note for the user), or None to stage again."""
    if request.revision is not None and request.revision not in (existing.revision, existing.commit):
        return None
    if request.catalogue_default and existing.source != request.source:
        return (
            f"kept: staged from {existing.origin}, not the catalogue's {request.source} "
            "(--force replaces it with the catalogue's)"
        )
    if existing.source != request.source:
        return None
    if request.is_hub:
        return f"already staged from {existing.origin} (--force pulls again, --revision pulls another one)"
    if _same_files(Path(request.source), existing, progress):
        return f"up to date with {existing.source}"
    return None


def _same_files(source: Path, existing: Manifest, progress: bool) -> bool:
    files = select_files(list_files(source))
    if set(files) != set(existing.files):
        return False
    if any((source / rel).stat().st_size != existing.files[rel].size for rel in files):
        return False
    hashes = hash_files(source, files, f"compare {existing.name}", progress)
    return all(hashes[rel].sha256 == existing.files[rel].sha256 for rel in files)


def _stage_local(request: PullRequest, staging: Path, progress: bool) -> Manifest:
    source = Path(request.source)
    if not source.is_dir():
        raise SourceError(f"no such directory: {source}")
    files = select_files(list_files(source))
    if not files:
        raise SourceError(f"{source}: no model files in it")
    layout = request.layout or _detected(files, str(source))
    check_layout(source, layout, request.requires, files)  # before copying gigabytes
    total = sum((source / rel).stat().st_size for rel in files)
    with progress_bar(total, f"copy {request.name}", progress) as bar:
        entries = {rel: copy_and_hash(source / rel, staging / rel, bar) for rel in files}
    return Manifest(request.name, layout, str(source), "local", None, None, entries, request.requires)


def _stage_hub(request: PullRequest, staging: Path, progress: bool) -> Manifest:
    listing = hub.list_repo(request.source, request.revision, staging)
    files = select_files(listing.files)
    layout = request.layout or _detected(files, f"hub repository {request.source}")
    problems = [missing_key_file(layout, files)] + [
        f"{path}: missing (the engine reads it)" for path in request.requires if path not in files
    ]
    problems = [p for p in problems if p]
    if problems:  # before downloading gigabytes
        raise LayoutError(
            f"hub repository {request.source} is not {LAYOUT_HELP[layout]}: {'; '.join(problems)}"
        )
    logger.info("downloading %d files of %s@%s", len(files), request.source, listing.commit[:10])
    hub.download(request.source, listing.commit, staging, files, progress)
    for entry in staging.iterdir():  # huggingface_hub's bookkeeping (.cache/, .hf-cache/)
        if entry.name.startswith("."):
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    missing = sorted(set(files) - set(list_files(staging)))
    if missing:
        raise SourceError(f"the download of {request.source} is incomplete: {', '.join(missing[:3])} missing")
    check_layout(staging, layout, request.requires, files)
    entries = hash_files(staging, files, f"hash {request.name}", progress)
    return Manifest(
        request.name,
        layout,
        request.source,
        "hub",
        listing.revision,
        listing.commit,
        entries,
        request.requires,
    )


def _detected(files: list[str], what: str) -> str:
    layout = detect_layout(files)
    if layout is None:
        raise LayoutError(
            f"cannot tell what {what} is: neither model_index.json ({LAYOUT_HELP['diffusers']}) nor config.json "
            f"({LAYOUT_HELP['transformers']}) at its top; pass the folder that has one, or --layout"
        )
    return layout


def _swap(staging: Path, target: Path) -> None:
    """Put the staging folder at target; an old folder there is moved aside first, then deleted."""
    old = None
    if target.exists() or target.is_symlink():
        old = target.with_name(f"{_OLD_PREFIX}{target.name}-{uuid.uuid4().hex[:8]}")
        os.rename(target, old)
    os.rename(staging, target)
    if old is not None:
        if old.is_symlink() or not old.is_dir():
            old.unlink()
        else:
            shutil.rmtree(old, ignore_errors=True)


# ----- list and verify -----


@dataclass(frozen=True)
class Status:
    """What is staged under one name."""

    name: str
    path: Path
    state: str
    """`ok`, `not staged`, `incomplete` (no readable manifest) or `damaged` (problems)."""
    manifest: Manifest | None = None
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.state == "ok"


def staged_names(models_dir: str | os.PathLike[str]) -> list[str]:
    """Folders under models_dir (hidden ones, such as a pull's staging folder, are not models)."""
    models_dir = Path(models_dir)
    if not models_dir.is_dir():
        return []
    return sorted(p.name for p in models_dir.iterdir() if p.is_dir() and not p.name.startswith("."))


def inspect(
    models_dir: str | os.PathLike[str], name: str, *, quick: bool = True, progress: bool = False
) -> Status:
    """The state of `<models_dir>/<name>`: its layout and its files against the manifest (`quick`: sizes only,
    else every sha256)."""
    folder = Path(models_dir) / name
    if not folder.is_dir():
        return Status(name, folder, "not staged")
    try:
        manifest = read_manifest(folder)
    except ManifestError as exc:
        return Status(name, folder, "incomplete", problems=[Problem(name, str(exc).split(": ", 1)[-1])])
    problems = []
    try:
        check_layout(folder, manifest.layout, manifest.requires)
    except LayoutError as exc:
        problems += [Problem("layout", problem) for problem in exc.problems]
    problems += compare_files(folder, manifest, list_files(folder), quick=quick, progress=progress)
    return Status(name, folder, "damaged" if problems else "ok", manifest, problems)


def verify(
    models_dir: str | os.PathLike[str],
    names: list[str] | None = None,
    *,
    quick: bool = False,
    progress: bool = True,
) -> list[Status]:
    """Re-hash the named models (default: every folder under models_dir) against their manifests."""
    names = names if names else staged_names(models_dir)
    return [inspect(models_dir, name, quick=quick, progress=progress) for name in names]
