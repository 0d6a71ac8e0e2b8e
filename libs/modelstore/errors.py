"""The errors of `libs.modelstore`: each one is a sentence an operator can act on, shown as one line by
`kmono models` (never a traceback)."""

from __future__ import annotations


class ModelStoreError(Exception):
    """Base class: a model could not be staged, listed or verified, for the reason in the message."""


class SourceError(ModelStoreError):
    """The source is not there: no such directory, no such hub repository or revision, no access to it."""


class HubUnreachableError(ModelStoreError):
    """The hub cannot be reached (no network, a firewall, HF_HUB_OFFLINE=1, the hub is down)."""


class LayoutError(ModelStoreError):
    """A folder is not what the engine loads (no model_index.json, a component without weights, ...).

    `problems` lists every finding (relative path: what is wrong), not only the first.
    """

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = list(problems or [])


class ManifestError(ModelStoreError):
    """A staged folder's manifest is missing, unreadable or of an unknown format."""
