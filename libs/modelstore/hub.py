"""A hub repository's file list and download (huggingface_hub.snapshot_download), with failures as one line.

Two calls, both through `snapshot_download`: a dry run lists the files and resolves the revision to a commit,
then the files that `layout.select_files` keeps are downloaded at that commit, so what is staged is exactly what
was listed even if the branch moves in between. Both write only under the staging folder they are given
(`local_dir`, and `cache_dir` inside it), never into the user's Hugging Face cache.

Failures are sorted into two kinds (`translate_error`): the hub cannot be reached (no network, a proxy or
firewall, HF_HUB_OFFLINE=1, the hub answering 5xx) is `HubUnreachableError`, which `kmono models pull` completes
with how to stage from a local directory instead; a repository, revision or permission that is not there is
`SourceError`. HF_TOKEN (gated or private repositories) and HF_ENDPOINT (a mirror) are read by huggingface_hub.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from libs.modelstore.errors import HubUnreachableError, ModelStoreError, SourceError

OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
_HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9._-]+")
_NETWORK_MODULES = ("httpx", "httpx2", "httpcore", "requests", "urllib3", "socket", "ssl")


def is_hub_id(text: str) -> bool:
    """`org/name` as the hub spells repository ids (a path like ./x or /x is not one)."""
    return bool(_HUB_ID.fullmatch(text)) and ".." not in text


def offline_variable() -> str | None:
    """The variable that switches the hub off (HF_HUB_OFFLINE=1 or TRANSFORMERS_OFFLINE=1), if one is set."""
    for name in OFFLINE_VARIABLES:
        if os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on"):
            return name
    return None


def endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


@dataclass(frozen=True)
class Listing:
    """A repository's files at one commit."""

    repo_id: str
    revision: str
    commit: str
    files: dict[str, int | None]
    """{path in the repository: size in bytes, when the hub says}."""


def list_repo(repo_id: str, revision: str | None, scratch: str | os.PathLike[str]) -> Listing:
    """The files of `repo_id` at `revision` (default: main) and the commit it resolves to."""
    _refuse_when_offline(repo_id)
    import huggingface_hub

    scratch = Path(scratch)
    try:
        infos = huggingface_hub.snapshot_download(
            repo_id,
            revision=revision,
            local_dir=scratch,
            cache_dir=scratch / ".hf-cache",
            dry_run=True,
        )
    except Exception as exc:
        raise translate_error(exc, repo_id, revision) from exc
    if not infos:
        raise SourceError(f"hub repository {repo_id} has no files at revision {revision or 'main'}")
    return Listing(
        repo_id=repo_id,
        revision=revision or "main",
        commit=infos[0].commit_hash,
        files={info.filename: info.file_size for info in infos},
    )


def download(
    repo_id: str, commit: str, dest: str | os.PathLike[str], files: Iterable[str], progress: bool = True
) -> None:
    """Download these files of the repository at `commit` into dest (huggingface_hub's own progress bars)."""
    _refuse_when_offline(repo_id)
    import huggingface_hub
    from huggingface_hub.utils import disable_progress_bars, enable_progress_bars

    dest = Path(dest)
    if not progress:
        disable_progress_bars()
    try:
        huggingface_hub.snapshot_download(
            repo_id,
            revision=commit,
            local_dir=dest,
            cache_dir=dest / ".hf-cache",
            allow_patterns=[glob.escape(path) for path in files],  # exact names, even with [ or * in them
        )
    except Exception as exc:
        raise translate_error(exc, repo_id, commit) from exc
    finally:
        if not progress:
            enable_progress_bars()


def _refuse_when_offline(repo_id: str) -> None:
    variable = offline_variable()
    if variable:
        raise HubUnreachableError(f"cannot reach the Hugging Face hub for {repo_id}: {variable}=1 is set")


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    detail = text[0] if text else ""
    if len(detail) > 200:
        detail = detail[:197] + "..."
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__


def translate_error(exc: BaseException, repo_id: str, revision: str | None) -> BaseException:
    """The ModelStoreError an exception of huggingface_hub (or of its HTTP client) stands for; `exc` itself when
    it is none of the known kinds (a bug is better shown as one)."""
    from huggingface_hub import errors as hf

    if isinstance(exc, ModelStoreError):
        return exc
    chain = _chain(exc)
    for error in chain:
        if isinstance(error, hf.RevisionNotFoundError):
            return SourceError(f"hub repository {repo_id} has no revision {revision!r}")
        if isinstance(error, hf.GatedRepoError):
            return SourceError(
                f"hub repository {repo_id} is gated: accept its terms on the hub, then set HF_TOKEN to a token of "
                "that account"
            )
        if isinstance(error, hf.RepositoryNotFoundError):
            return SourceError(
                f"no model {repo_id} on the hub (or it is private: set HF_TOKEN), and no local directory "
                "by that name"
            )
        if isinstance(error, hf.HfHubHTTPError):
            response = getattr(error, "response", None)
            status = getattr(response, "status_code", None)
            if status in (401, 403):
                return SourceError(
                    f"the hub refused {repo_id} (HTTP {status}): set HF_TOKEN to a token that may read it"
                )
            if status is not None and status < 500:
                return SourceError(f"the hub answered HTTP {status} for {repo_id}: {_first_line(error)}")
    for error in chain:
        if isinstance(error, hf.OfflineModeIsEnabled):
            return HubUnreachableError(
                f"cannot reach the Hugging Face hub for {repo_id}: HF_HUB_OFFLINE=1 is set"
            )
    for error in chain:
        network = type(error).__module__.split(".")[0] in _NETWORK_MODULES
        if network or isinstance(
            error,
            ConnectionError | TimeoutError | hf.LocalEntryNotFoundError | hf.DryRunError | hf.HfHubHTTPError,
        ):
            innermost = next(
                (e for e in reversed(chain) if type(e).__module__.split(".")[0] in _NETWORK_MODULES), error
            )
            return HubUnreachableError(
                f"cannot reach the Hugging Face hub ({endpoint()}) for {repo_id}: {_first_line(innermost)}"
            )
    return exc
