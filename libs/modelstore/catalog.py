"""The model catalogue: which models the engines load, in which layout, and which flag points a service at them.

libs/ never imports generation/, recsys/ or services/, so the catalogue is not written here: each package that
owns an engine contributes its entries through the `kmono.models` entry-point group (pyproject.toml), the way
`kmono.cli` commands plug into `kmono` (libs/cli/main.py). An entry is a callable returning `ModelSpec`s:

    [project.entry-points."kmono.models"]
    masks = "generation.masks.catalog:models"

    # generation/masks/catalog.py (torch-free: `kmono models list` imports it)
    def models() -> list[ModelSpec]:
        return [ModelSpec("sam2", SAM2_MODEL, "transformers", "SAM2 video mask propagation",
                          uses=(Use("kmono serve masks", "--model-sam2", "KMONO_MASKS_SAM2_MODEL"),))]

The ids themselves stay where the engine reads its defaults (e.g. generation/masks/defaults.py); a catalogue
module only refers to them. `kmono models pull NAME --dir /models` stages the entry's source into
/models/NAME, and the service flag (or its KMONO_* variable) is then set to that folder.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from importlib.metadata import entry_points
from pathlib import Path

from libs.modelstore.layout import LAYOUTS

ENTRY_POINT_GROUP = "kmono.models"

NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
"""A staged model's folder name: lower case, digits, '.', '_', '-' (a path component on any file system)."""


@dataclass(frozen=True)
class Use:
    """One place that loads a model: a command, its flag and (for services) the KMONO_* variable behind it."""

    command: str
    """e.g. `kmono serve masks`, `kmono mvideo train`."""
    flag: str
    """e.g. `--model-sam2`."""
    env: str | None = None
    """The environment variable the flag defaults from, e.g. KMONO_MASKS_SAM2_MODEL (services only)."""

    @property
    def service(self) -> str | None:
        """The service name when the command is `kmono serve <service>`, else None."""
        prefix = "kmono serve "
        return self.command[len(prefix) :].strip() if self.command.startswith(prefix) else None

    def describe(self) -> str:
        return f"{self.command} {self.flag}" + (f" (env {self.env})" if self.env else "")


@dataclass(frozen=True)
class ModelSpec:
    """A model an engine needs: where it comes from by default and what the engine loads from the folder."""

    name: str
    """Folder name under the models directory, e.g. `sam2` -> /models/sam2."""
    source: str | os.PathLike[str]
    """Default source: a hub id (`org/name`) or a local directory (an embedded default shipped in the image)."""
    layout: str
    """What the engine loads: `diffusers` (pipeline folder) or `transformers` (model folder); see layout.py."""
    description: str
    uses: tuple[Use, ...] = ()
    requires: tuple[str, ...] = ()
    """Files the engine reads beyond the layout's own (e.g. a processor config), relative to the folder."""
    provider: str = field(default="", compare=False)
    """The `kmono.models` entry point that contributed it (set by `discover_catalog`)."""

    def __post_init__(self) -> None:
        if not NAME_PATTERN.fullmatch(self.name):
            raise ValueError(
                f"model name {self.name!r}: use lower case letters, digits, '.', '_' and '-' (it names a folder)"
            )
        if self.layout not in LAYOUTS:
            raise ValueError(f"model {self.name}: layout {self.layout!r} is not one of {', '.join(LAYOUTS)}")

    @property
    def is_local(self) -> bool:
        """The default source is a directory (an embedded default), so pulling it needs no network."""
        return is_local_source(self.source)

    def env_vars(self) -> dict[str, str]:
        """{KMONO_* variable: service} of the services that read this model."""
        return {use.env: use.service or use.command for use in self.uses if use.env}


def is_local_source(source: str | os.PathLike[str]) -> bool:
    """A path (an os.PathLike, absolute, ./ or ~/ relative, or an existing directory) rather than a hub id."""
    if isinstance(source, os.PathLike):
        return True
    text = str(source)
    return text.startswith(("/", "./", "../", "~")) or text in (".", "..") or Path(text).is_dir()


class Catalog(Mapping[str, ModelSpec]):
    """Model specs by name, in the order their providers were discovered (providers sorted by name)."""

    def __init__(self, specs: Iterable[ModelSpec] = ()) -> None:
        self._specs: dict[str, ModelSpec] = {}
        for spec in specs:
            other = self._specs.get(spec.name)
            if other is not None:
                raise ValueError(
                    f"model name {spec.name!r} is contributed twice "
                    f"(by {other.provider or '?'} and {spec.provider or '?'}); names must be unique"
                )
            self._specs[spec.name] = spec

    def __getitem__(self, name: str) -> ModelSpec:
        return self._specs[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._specs)

    def __len__(self) -> int:
        return len(self._specs)

    def by_source(self, source: str) -> ModelSpec | None:
        """The entry whose default source is this hub id (case-insensitive), if any."""
        wanted = source.strip().lower()
        for spec in self._specs.values():
            if not spec.is_local and str(spec.source).lower() == wanted:
                return spec
        return None

    def by_folder_name(self, folder: str) -> ModelSpec | None:
        """The entry a directory is a copy of, judged by its name: the entry's name, or the last part of its hub
        id (a directory made by `git clone` or `hf download --local-dir` of that repository)."""
        wanted = folder.strip().lower()
        for spec in self._specs.values():
            if spec.name == wanted or (
                not spec.is_local and str(spec.source).rsplit("/", 1)[-1].lower() == wanted
            ):
                return spec
        return None


Provider = Callable[[], Iterable[ModelSpec]]


def discover_catalog(providers: Iterable[tuple[str, Provider]] | None = None) -> Catalog:
    """The catalogue of every installed `kmono.models` entry point (or of `providers`, for tests)."""
    if providers is None:
        found = entry_points(group=ENTRY_POINT_GROUP)
        providers = sorted(((ep.name, ep.load()) for ep in found), key=lambda item: item[0])
    specs = []
    for provider_name, provider in providers:
        for spec in provider():
            if not isinstance(spec, ModelSpec):
                raise TypeError(
                    f"kmono.models entry {provider_name!r} returned {type(spec).__name__}, not ModelSpec"
                )
            specs.append(replace(spec, provider=provider_name))
    return Catalog(specs)
