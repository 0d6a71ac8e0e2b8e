"""The exported MMBee scorer and the model folder the ranking service loads.

`export_scorer` runs `torch.export.export` on `ExportableMMBee(model)` (flat tensors in `FLAT_INPUT_NAMES` order
-> GTR probability [B]) with the batch dimension dynamic (`Dim("batch", min=1, max=MAX_BATCH)`) and saves the
program with `torch.export.save`. The program carries its weights, so serving needs neither the model's Python
classes nor its config: `load_scorer(path)` gives a callable `score(batch) -> np.ndarray [B]`. Every other
dimension (segment tokens L, history H, neighbours K, content D) is fixed to the example batch's: the featurizer
that builds serving batches uses the same settings, and a batch of another shape is refused with the name of the
field, not a guard failure from inside the program. Batches above MAX_BATCH rows are scored in chunks.

Our choices: the program is exported from a CPU copy of the model in eval mode (the service scores on CPU; the
caller's model is left where it is); an example batch of one row is tiled to two, because torch.export
specialises a dimension whose example size is 0 or 1.

Model folder layout (`save_model_folder` / `load_model_folder`):

    config.json         {"format_version": 1, "config": MMBeeConfig.to_dict(), "inputs": {name: {"shape":
                        [null, ...], "dtype": ...}}, "max_batch": 4096, "sha256": {file: digest}}
                        written last: a folder without it is incomplete
    model.safetensors   the eager model's state dict, Θ buffers included (MMBeeModel(config) + load_state_dict
                        rebuilds it: for evaluation, fine-tuning or a re-export)
    scorer.pt2          the exported program (what the service runs)
    metrics.json        the evaluation metrics the folder was released with (NaN written as null)

Other files (the service's engine.json, the feature snapshot) may live beside these; they are not touched.
`load_model_folder` checks that every file is present, that each matches the digest in config.json (a truncated
or replaced file is named, not half-loaded), that the format version is known and that the weights fit the
config, raising `ModelFolderError` (or `FileNotFoundError` for a missing file) with the folder and the file.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_model, save_model

from recsys.data.batches import GTRBatch
from recsys.mmbee.models.mmbee import (
    FLAT_INPUT_NAMES,
    ExportableMMBee,
    MMBeeConfig,
    MMBeeModel,
    flatten_batch,
)

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
MAX_BATCH = 4096
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
SCORER_FILE = "scorer.pt2"
METRICS_FILE = "metrics.json"
_CHECKED_FILES = (WEIGHTS_FILE, SCORER_FILE, METRICS_FILE)


class ModelFolderError(ValueError):
    """A model folder or scorer file that cannot be used (corrupt, incompatible or inconsistent)."""


class ExportMismatchError(AssertionError):
    """The exported scorer disagrees with the eager model."""


@dataclass(frozen=True)
class InputSpec:
    name: str
    shape: tuple[int | None, ...]
    """None: the batch dimension."""
    dtype: torch.dtype


def input_specs(example_batch: GTRBatch) -> tuple[InputSpec, ...]:
    """The flat inputs' shapes (batch dimension None) and dtypes, as the scorer will require them."""
    return tuple(
        InputSpec(name, (None, *tensor.shape[1:]), tensor.dtype)
        for name, tensor in zip(FLAT_INPUT_NAMES, flatten_batch(example_batch), strict=True)
    )


class Scorer:
    """A loaded `scorer.pt2`: `scorer(batch) -> np.ndarray [B]` of GTR probabilities (float32)."""

    def __init__(
        self, program: torch.export.ExportedProgram, specs: tuple[InputSpec, ...], max_batch: int
    ) -> None:
        self.program = program
        self.specs = specs
        self.max_batch = max_batch
        self._module = program.module()

    @torch.no_grad()
    def __call__(self, batch: GTRBatch) -> np.ndarray:
        flat = flatten_batch(batch.to("cpu"))
        self._check(flat)
        rows = int(flat[0].shape[0])
        scores = [
            self._module(*(tensor[start : start + self.max_batch] for tensor in flat))
            for start in range(0, rows, self.max_batch)
        ]
        if not scores:
            return np.zeros(0, dtype=np.float32)
        return torch.cat(scores).float().numpy()  # [B]

    def _check(self, flat: tuple[torch.Tensor, ...]) -> None:
        rows = int(flat[0].shape[0])
        for spec, tensor in zip(self.specs, flat, strict=True):
            if tensor.dtype != spec.dtype:
                raise ValueError(f"{spec.name} has dtype {tensor.dtype}, the scorer takes {spec.dtype}")
            expected = (rows, *spec.shape[1:])
            if tuple(tensor.shape) != expected:
                raise ValueError(
                    f"{spec.name} has shape {tuple(tensor.shape)}, the scorer takes {expected} "
                    "(every dimension but the batch is fixed at export)"
                )


def export_scorer(model: MMBeeModel, example_batch: GTRBatch, path: str | os.PathLike) -> Scorer:
    """Export `ExportableMMBee(model)` with a dynamic batch to `path` (a .pt2 file); returns it loaded."""
    if len(example_batch) < 1:
        raise ValueError("the example batch is empty")
    example = example_batch.to("cpu")
    if len(example) == 1:  # torch.export specialises a dimension whose example size is 1
        example = _tile(example, 2)
    exportable = ExportableMMBee(copy.deepcopy(model).to("cpu")).eval()
    flat = flatten_batch(example)
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    with torch.no_grad():
        program = torch.export.export(exportable, flat, dynamic_shapes=(tuple({0: batch} for _ in flat),))
    path = Path(path)
    _atomic(path, lambda tmp: torch.export.save(program, tmp))
    logger.info("exported the MMBee scorer to %s", path)
    return Scorer(program, input_specs(example), MAX_BATCH)


def load_scorer(path: str | os.PathLike) -> Scorer:
    """Load a `scorer.pt2`; the input shapes it accepts are read from the program's inputs. A model folder's
    scorer is better loaded with `load_model_folder`, which also checks the file against its digest."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no scorer at {path}")
    try:
        program = torch.export.load(path)
    except Exception as error:  # torch raises RuntimeError, ValueError, KeyError... on damaged archives
        raise ModelFolderError(
            f"{path} is not a readable exported program ({type(error).__name__}: {error})"
        ) from error
    return Scorer(program, _specs_from_program(program), MAX_BATCH)


def verify_export(
    model: MMBeeModel, scorer: Scorer, batches: Iterable[GTRBatch], atol: float = 1e-5
) -> float:
    """Compare the scorer with the eager model (eval mode) on `batches`; returns the largest absolute difference
    and raises `ExportMismatchError` naming it when it exceeds `atol`."""
    was_training = model.training
    model.eval()
    worst = 0.0
    try:
        with torch.no_grad():
            for batch in batches:
                device = next(model.parameters()).device
                eager = torch.sigmoid(model(batch.to(device))[:, 0]).float().cpu().numpy()  # [B]
                exported = scorer(batch)
                if exported.shape != eager.shape:
                    raise ExportMismatchError(
                        f"the scorer returned shape {exported.shape}, eager {eager.shape}"
                    )
                if len(eager):
                    difference = float(np.max(np.abs(exported - eager)))
                    if not math.isfinite(difference):
                        raise ExportMismatchError("the scorer or the eager model returned a non-finite score")
                    worst = max(worst, difference)
    finally:
        model.train(was_training)
    if worst > atol:
        raise ExportMismatchError(f"exported scores differ from eager by up to {worst:.3g} (atol {atol:.3g})")
    return worst


def save_model_folder(
    directory: str | os.PathLike, model: MMBeeModel, example_batch: GTRBatch, metrics: dict | None = None
) -> Path:
    """Write config.json, model.safetensors, scorer.pt2 and metrics.json (see the module docstring) after
    checking the export against the eager model on the example batch."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / CONFIG_FILE).unlink(missing_ok=True)  # the folder is incomplete until config.json is back
    cpu_model = copy.deepcopy(model).to("cpu").eval()
    _atomic(
        directory / WEIGHTS_FILE,
        lambda tmp: save_model(cpu_model, str(tmp), metadata={"format": "mmbee"}, force_contiguous=True),
    )
    scorer = export_scorer(cpu_model, example_batch, directory / SCORER_FILE)
    verify_export(cpu_model, scorer, [example_batch])
    metrics_text = json.dumps(_json_safe(metrics or {}), indent=2, sort_keys=True, allow_nan=False)
    _atomic(directory / METRICS_FILE, lambda tmp: tmp.write_text(metrics_text))
    manifest = {
        "format_version": FORMAT_VERSION,
        "config": model.config.to_dict(),
        "inputs": {
            spec.name: {"shape": list(spec.shape), "dtype": str(spec.dtype).removeprefix("torch.")}
            for spec in scorer.specs
        },
        "max_batch": MAX_BATCH,
        "sha256": {name: _sha256(directory / name) for name in _CHECKED_FILES},
    }
    _atomic(directory / CONFIG_FILE, lambda tmp: tmp.write_text(json.dumps(manifest, indent=2)))
    logger.info("saved the MMBee model folder %s", directory)
    return directory


def load_model_folder(directory: str | os.PathLike) -> tuple[MMBeeConfig, MMBeeModel, Scorer]:
    """(config, eager model in eval mode on the CPU, exported scorer) of a folder `save_model_folder` wrote."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory} is not a directory (an MMBee model folder was expected)")
    missing = [name for name in (CONFIG_FILE, *_CHECKED_FILES) if not (directory / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"MMBee model folder {directory} is incomplete: {', '.join(missing)} missing "
            f"(a folder holds {CONFIG_FILE}, {', '.join(_CHECKED_FILES)})"
        )
    try:
        manifest = json.loads((directory / CONFIG_FILE).read_text())
        version = manifest["format_version"]
        digests = manifest["sha256"]
        inputs = manifest["inputs"]
        config = MMBeeConfig.from_dict(manifest["config"])
        specs = tuple(
            InputSpec(name, tuple(inputs[name]["shape"]), getattr(torch, inputs[name]["dtype"]))
            for name in FLAT_INPUT_NAMES
        )
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise ModelFolderError(
            f"{directory / CONFIG_FILE} is damaged ({type(error).__name__}: {error})"
        ) from error
    if version != FORMAT_VERSION:
        raise ModelFolderError(
            f"{directory} has model folder format {version}; this code reads format {FORMAT_VERSION}"
        )
    for name in _CHECKED_FILES:
        if _sha256(directory / name) != digests.get(name):
            raise ModelFolderError(
                f"{directory / name} does not match its digest in {CONFIG_FILE} (corrupt, truncated or replaced)"
            )
    model = MMBeeModel(config)
    try:
        load_model(model, str(directory / WEIGHTS_FILE), strict=True, device="cpu")
    except (SafetensorError, RuntimeError, OSError) as error:
        raise ModelFolderError(f"{directory / WEIGHTS_FILE} does not fit its config: {error}") from error
    model.eval()
    scorer = load_scorer(directory / SCORER_FILE)
    scorer.specs = specs
    scorer.max_batch = int(manifest.get("max_batch", MAX_BATCH))
    return config, model, scorer


def _specs_from_program(program: torch.export.ExportedProgram) -> tuple[InputSpec, ...]:
    """Input shapes from the placeholders' fake tensors: the batch dimension is the symbolic one."""
    placeholders = [
        node.meta["val"]
        for node in program.graph.nodes
        if node.op == "placeholder" and node.name in program.graph_signature.user_inputs
    ]
    if len(placeholders) != len(FLAT_INPUT_NAMES):
        raise ModelFolderError(
            f"the program takes {len(placeholders)} inputs, MMBee's scorer {len(FLAT_INPUT_NAMES)}"
        )
    return tuple(
        InputSpec(name, (None, *(int(size) for size in value.shape[1:])), value.dtype)
        for name, value in zip(FLAT_INPUT_NAMES, placeholders, strict=True)
    )


def _tile(batch: GTRBatch, rows: int) -> GTRBatch:
    index = torch.arange(rows) % len(batch)
    return GTRBatch(
        **{
            name: ({k: v[index] for k, v in value.items()} if isinstance(value, dict) else value[index])
            for name, value in vars(batch).items()
        }
    )


def _atomic(path: Path, write) -> None:
    """Write through a temporary file beside `path` (same suffix) and rename: readers never see half a file."""
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    write(tmp)
    tmp.replace(path)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _json_safe(value):
    """Metrics as strict JSON: NaN and infinities become null, numpy scalars plain numbers."""
    if isinstance(value, dict):
        return {str(key): _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    if isinstance(value, (np.generic,)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
