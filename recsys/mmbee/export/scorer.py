"""The exported MMBee programs and the model folder the ranking service loads.

MMBee's h_m (MFQ's output, the expensive part: attention over every token of every candidate's segment) depends
on the streamer and its segment only, not on the viewer, so a model with h_m on is exported as two programs
(`torch.export`, batch dimension dynamic `Dim("batch", min=1, max=MAX_BATCH)`, saved with `torch.export.save`):

    fusion.pt2   `ExportableFusion`: authors, visual, speech, comments -> h_m [B, d]
    scorer.pt2   `ExportableMMBee(model, takes_h_m=True)`: the batch without its segment tokens, plus h_m
                 (`H_M_SCORER_INPUT_NAMES`) -> GTR probability [B]

and a server computes h_m once per (streamer, segment) and scores every viewer with the cached rows
(`recsys.mmbee.engine`). A model without h_m (`use_mfq=False` or `use_h_m=False`) has no fusion program and its
scorer takes `flatten_batch(batch)` (`FLAT_INPUT_NAMES`) as before. Every model also gets a third program,

    request.pt2  `ExportableRequestMMBee(model, takes_h_m)`: one viewer's inputs with a single row
                 (`REQUEST_VIEWER_INPUT_NAMES`: id, dense statistics, behaviour sequence, the viewer's metapath
                 lists), then the candidates' (`request_candidate_input_names`) -> GTR probability [B]
    candidate.pt2  (h_m on) `ExportableCandidateRows`: authors, h_m, the streamer's own metapath lists ->
                 candidate rows [B, d + P_c (d + 1)] (h_m first), what the request program takes per candidate

which score a ranking request with the viewer's work done once and the candidate's streamer-and-segment work
cached with h_m (`recsys.mmbee.models.request`; the backbone alone gets the request program too). The programs carry their weights, so serving needs neither the model's Python
classes nor its config: `Scorer` holds the programs, `scorer(batch, h_m=None) -> np.ndarray [B]` (h_m computed
by the fusion program when not given, so `scorer(batch)` is always the whole model; a batch whose rows share
one viewer, `single_viewer`, runs the request program on that viewer's row, any other the scorer program) and
`scorer.h_m(batch, rows)` -> the fusion rows. Every dimension but the batch (segment tokens L, history H,
neighbours K, content D, h_m's d) is fixed to the example batch's: the featurizer that builds serving batches
uses the same settings, and a batch of another shape is refused with the name of the field, not a guard
failure from inside the program. Batches above MAX_BATCH rows are run in chunks (the request program's viewer
passed whole to each).

Our choices: the programs are exported from a CPU copy of the model in eval mode (the service scores on CPU;
the caller's model is left where it is); an example batch of one row is tiled to two, because torch.export
specialises a dimension whose example size is 0 or 1. The fusion program takes every segment field whatever
`modalities` the model fuses, as the scorer takes every metapath: one signature for every ablation.

Model folder layout (`save_model_folder` / `load_model_folder`), format 3:

    config.json         {"format_version": 3, "config": MMBeeConfig.to_dict(),
                         "programs": {"scorer": {"file": "scorer.pt2", "inputs": {name: {"shape": [null, ...],
                         "dtype": ...}}}, "fusion": {"file": "fusion.pt2", "inputs": {...}},  (fusion: h_m on)
                         "request": {"file": "request.pt2", "inputs": {...}},  (viewer inputs: [1, ...])
                         "candidate": {"file": "candidate.pt2", "inputs": {...}}},  (h_m on)
                         "max_batch": 4096, "sha256": {file: digest of every other file}}
                        written last: a folder without it is incomplete
    model.safetensors   the eager model's state dict, Θ buffers included (MMBeeModel(config) + load_state_dict
                        rebuilds it: for evaluation, fine-tuning or a re-export)
    scorer.pt2          the exported scorer (any batch: evaluation, batches of several viewers)
    fusion.pt2          the exported fusion (what the service runs for the (streamer, segment)s it has not seen)
    request.pt2         the exported request scorer (what the service runs for every request)
    candidate.pt2       the exported candidate rows (run with fusion.pt2, on the same cache misses)
    metrics.json        the evaluation metrics the folder was released with (NaN written as null)

Format 2 (no request.pt2 nor candidate.pt2) is still read: every batch is then scored by the scorer program, as before.
Format 1 (one whole-model scorer.pt2) is refused with the format named: re-export the model (`kmono mmbee
train`, or `save_model_folder` from its model.safetensors). Other files (the service's engine.json, the feature
snapshot) may live beside these; they are not touched. `save_model_folder` checks the programs against the eager
model (`verify_export`) before writing config.json. `load_model_folder` checks that every file is present, that
each matches the digest in config.json (a truncated or replaced file is named, not half-loaded), that the
format version is known and that the weights fit the config, raising `ModelFolderError` (or
`FileNotFoundError` for a missing file) with the folder and the file.
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
    FUSION_INPUT_NAMES,
    H_M_SCORER_INPUT_NAMES,
    ExportableFusion,
    ExportableMMBee,
    MMBeeConfig,
    MMBeeModel,
    batch_inputs,
)
from recsys.mmbee.models.request import (
    CANDIDATE_ROW_INPUT_NAMES,
    REQUEST_VIEWER_INPUT_NAMES,
    ExportableCandidateRows,
    ExportableRequestMMBee,
    request_input_names,
    with_viewer_of,
)

logger = logging.getLogger(__name__)

FORMAT_VERSION = 3
READABLE_FORMATS = (2, 3)
VERIFIED_VIEWERS = 4
"""Viewers of a batch whose requests `verify_export` scores with the request program."""
"""Format 2 is format 3 without the request program (its batches are all scored by the scorer program)."""
MAX_BATCH = 4096
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
SCORER_FILE = "scorer.pt2"
FUSION_FILE = "fusion.pt2"
REQUEST_FILE = "request.pt2"
CANDIDATE_FILE = "candidate.pt2"
METRICS_FILE = "metrics.json"


class ModelFolderError(ValueError):
    """A model folder or program file that cannot be used (corrupt, incompatible or inconsistent)."""


class ExportMismatchError(AssertionError):
    """The exported programs disagree with the eager model."""


@dataclass(frozen=True)
class InputSpec:
    name: str
    shape: tuple[int | None, ...]
    """None: the batch dimension."""
    dtype: torch.dtype


def input_specs(names: tuple[str, ...], example: tuple[torch.Tensor, ...]) -> tuple[InputSpec, ...]:
    """The inputs' shapes (batch dimension None) and dtypes, as the program will require them."""
    return tuple(
        InputSpec(name, (None, *tensor.shape[1:]), tensor.dtype)
        for name, tensor in zip(names, example, strict=True)
    )


class CheckedProgram:
    """A loaded exported program: `program(*inputs) -> Tensor`, inputs checked by name against `specs` and run
    in chunks of `max_batch` rows. An input whose first dimension is fixed (a request program's viewer, 1 row)
    is passed whole to every chunk; the rows are those of the inputs with the batch dimension."""

    def __init__(
        self, program: torch.export.ExportedProgram, specs: tuple[InputSpec, ...], max_batch: int
    ) -> None:
        self.program = program
        self.specs = specs
        self.max_batch = max_batch
        self._module = program.module()

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(spec.name for spec in self.specs)

    @property
    def batched(self) -> tuple[bool, ...]:
        """Per input, whether its first dimension is the (dynamic) batch."""
        return tuple(spec.shape[0] is None for spec in self.specs)

    @torch.no_grad()
    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        self._check(inputs)
        rows = self._rows(inputs)
        if rows == 0:
            raise ValueError("no rows to run (an exported program takes at least one)")
        if rows <= self.max_batch:
            return self._module(*inputs)
        chunks = [
            self._module(
                *(
                    tensor[start : start + self.max_batch] if batched else tensor
                    for tensor, batched in zip(inputs, self.batched, strict=True)
                )
            )
            for start in range(0, rows, self.max_batch)
        ]
        return torch.cat(chunks)

    def _rows(self, inputs: tuple[torch.Tensor, ...]) -> int:
        return int(inputs[self.batched.index(True)].shape[0])

    def _check(self, inputs: tuple[torch.Tensor, ...]) -> None:
        if len(inputs) != len(self.specs):
            raise ValueError(
                f"expected {len(self.specs)} inputs ({', '.join(self.names)}), got {len(inputs)}"
            )
        rows = self._rows(inputs)
        for spec, tensor in zip(self.specs, inputs, strict=True):
            if tensor.dtype != spec.dtype:
                raise ValueError(f"{spec.name} has dtype {tensor.dtype}, the program takes {spec.dtype}")
            expected = (rows if spec.shape[0] is None else spec.shape[0], *spec.shape[1:])
            if tuple(tensor.shape) != expected:
                raise ValueError(
                    f"{spec.name} has shape {tuple(tensor.shape)}, the program takes {expected} "
                    "(every dimension but the batch is fixed at export)"
                )


class Scorer:
    """The loaded programs of a model folder: `scorer(batch, h_m=None) -> np.ndarray [B]` of GTR probabilities
    (float32) and, for a model with h_m on, `scorer.h_m(batch, rows=None) -> Tensor [R, d]`.

    A batch whose rows all share one viewer (a ranking request: `single_viewer`) is scored by the request
    program when the folder has one (format 3), any other batch by the scorer program."""

    def __init__(
        self,
        scorer: CheckedProgram,
        fusion: CheckedProgram | None = None,
        request: CheckedProgram | None = None,
        candidate: CheckedProgram | None = None,
    ) -> None:
        expected = H_M_SCORER_INPUT_NAMES if fusion is not None else FLAT_INPUT_NAMES
        if scorer.names != expected:
            raise ModelFolderError(f"the scorer takes {scorer.names}, expected {expected}")
        if fusion is not None and fusion.names != FUSION_INPUT_NAMES:
            raise ModelFolderError(f"the fusion program takes {fusion.names}, expected {FUSION_INPUT_NAMES}")
        if request is not None and request.names != request_input_names(fusion is not None):
            raise ModelFolderError(
                f"the request program takes {request.names}, expected {request_input_names(fusion is not None)}"
            )
        if (request is not None and fusion is not None) != (candidate is not None):
            raise ModelFolderError(
                "a request program of a model with h_m on comes with its candidate program"
            )
        if candidate is not None and candidate.names != CANDIDATE_ROW_INPUT_NAMES:
            raise ModelFolderError(
                f"the candidate program takes {candidate.names}, expected {CANDIDATE_ROW_INPUT_NAMES}"
            )
        self.scorer = scorer
        self.fusion = fusion
        self.request = request
        self.candidate = candidate

    @property
    def program(self) -> torch.export.ExportedProgram:
        """The scorer's exported program (the fusion's is `fusion.program`)."""
        return self.scorer.program

    @property
    def specs(self) -> tuple[InputSpec, ...]:
        """The scorer's inputs."""
        return self.scorer.specs

    @property
    def takes_h_m(self) -> bool:
        """Whether the model has h_m on: the scorer takes h_m rows, which `h_m` computes."""
        return self.fusion is not None

    @property
    def max_batch(self) -> int:
        return self.scorer.max_batch

    @max_batch.setter
    def max_batch(self, rows: int) -> None:
        for program in (self.scorer, self.fusion, self.request, self.candidate):
            if program is not None:
                program.max_batch = rows

    def h_m(self, batch: GTRBatch, rows: np.ndarray | torch.Tensor | None = None) -> torch.Tensor:
        """h_m [R, d] of the batch's `rows` (all when None) from the fusion program."""
        if self.fusion is None:
            raise ValueError("this model has no h_m (it was exported with use_mfq or use_h_m off)")
        inputs = batch_inputs(batch.to("cpu"), FUSION_INPUT_NAMES)
        if rows is not None:
            index = torch.as_tensor(rows, dtype=torch.long)
            inputs = tuple(tensor[index] for tensor in inputs)
        return self.fusion(*inputs)  # [R, d]

    def __call__(self, batch: GTRBatch, h_m: torch.Tensor | None = None) -> np.ndarray:
        """GTR probabilities [B]; `h_m` [B, d]: the fusion rows computed earlier (computed here when None;
        ignored when the model has no h_m)."""
        batch = batch.to("cpu")
        if len(batch) == 0:
            return np.zeros(0, dtype=np.float32)
        if self.takes_h_m and h_m is None:
            h_m = self.h_m(batch)
        h_m = h_m if self.takes_h_m else None
        if self.request is not None and single_viewer(batch):
            return self.score_request(batch, h_m=h_m)
        return self.scorer(*batch_inputs(batch, self.scorer.names, h_m)).float().numpy()  # [B]

    @property
    def h_m_dim(self) -> int:
        """The width d of h_m (the first d columns of a candidate row)."""
        if self.fusion is None:
            raise ValueError("this model has no h_m")
        return self.scorer.specs[self.scorer.names.index("h_m")].shape[1]

    def cache_rows(self, batch: GTRBatch, rows: np.ndarray | torch.Tensor) -> torch.Tensor:
        """What a server caches per (streamer, segment) for the batch's `rows`: the candidate rows [R, w] when
        the folder has a candidate program, else h_m [R, d] (format 2); h_m is the first d columns of both."""
        h_m = self.h_m(batch, rows)  # [R, d]
        if self.candidate is None:
            return h_m
        index = torch.as_tensor(rows, dtype=torch.long)
        names = tuple(name for name in CANDIDATE_ROW_INPUT_NAMES if name != "h_m")
        authors, *lists = (tensor[index] for tensor in batch_inputs(batch.to("cpu"), names))
        return self.candidate(authors, h_m, *lists)  # [R, w]

    def candidate_rows(self, batch: GTRBatch, h_m: torch.Tensor | None = None) -> torch.Tensor:
        """The candidate program's rows [B, w] of every row of `batch` (h_m, then what GIE computes from the
        candidate streamer's own metapaths: `ExportableRequestMMBee.candidate_rows`); `h_m` [B, d] computed by
        the fusion program when not given."""
        if self.candidate is None:
            raise ValueError("this model folder has no candidate program (a model without h_m, or format 2)")
        batch = batch.to("cpu")
        h_m = self.h_m(batch) if h_m is None else h_m
        return self.candidate(*batch_inputs(batch, CANDIDATE_ROW_INPUT_NAMES, h_m))  # [B, w]

    def score_request(
        self, batch: GTRBatch, candidate_rows: torch.Tensor | None = None, h_m: torch.Tensor | None = None
    ) -> np.ndarray:
        """The request program on `batch`, read as row 0's viewer with every row's candidate: the scores of
        `batch` when its rows share their viewer (`single_viewer`), of that viewer's request otherwise. With h_m
        on, `candidate_rows` [B, w] are the candidate program's rows (a cache's), computed when not given (from
        `h_m` when given)."""
        if self.request is None:
            raise ValueError("this model folder has no request program (format 2: re-export it)")
        batch = batch.to("cpu")
        viewer = len(REQUEST_VIEWER_INPUT_NAMES)
        names = self.request.names
        if self.candidate is None:
            inputs = batch_inputs(batch, names)
        else:
            rows = self.candidate_rows(batch, h_m) if candidate_rows is None else candidate_rows
            inputs = (*batch_inputs(batch, names[:-1]), rows)  # the rows are the last input
        return self.request(*(t[:1] for t in inputs[:viewer]), *inputs[viewer:]).float().numpy()  # [B]


def single_viewer(batch: GTRBatch) -> bool:
    """Whether every row of `batch` has the same viewer inputs (what a request's batch is: the featurizer
    broadcasts them, a stride-0 view, which is checked in O(1); other tensors are compared row by row)."""
    for name in REQUEST_VIEWER_INPUT_NAMES:
        tensor = batch_inputs(batch, (name,))[0]
        if (
            len(tensor) > 1
            and tensor.stride(0) != 0
            and not torch.equal(tensor, tensor[:1].expand_as(tensor))
        ):
            return False
    return True


def export_scorer(model: MMBeeModel, example_batch: GTRBatch, directory: str | os.PathLike) -> Scorer:
    """Export the model to `directory`: scorer.pt2, and fusion.pt2 when h_m is on (see the module docstring),
    each with a dynamic batch; returns them loaded."""
    if len(example_batch) < 1:
        raise ValueError("the example batch is empty")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    example = example_batch.to("cpu")
    if len(example) == 1:  # torch.export specialises a dimension whose example size is 1
        example = _tile(example, 2)
    cpu_model = copy.deepcopy(model).to("cpu").eval()
    fusion = None
    h_m = None
    if cpu_model.fusion_arch is not None:
        exportable = ExportableFusion(cpu_model).eval()
        inputs = batch_inputs(example, FUSION_INPUT_NAMES)
        fusion = _export(exportable, FUSION_INPUT_NAMES, inputs, directory / FUSION_FILE, star_args=False)
        with torch.no_grad():
            h_m = exportable(*inputs)  # [B, d]
    exportable = ExportableMMBee(cpu_model, takes_h_m=fusion is not None).eval()
    inputs = batch_inputs(example, exportable.input_names, h_m)
    scorer = _export(exportable, exportable.input_names, inputs, directory / SCORER_FILE, star_args=True)
    request_module = ExportableRequestMMBee(cpu_model, takes_h_m=fusion is not None).eval()
    candidate = None
    names = request_module.input_names
    if fusion is not None:
        rows_module = ExportableCandidateRows(request_module).eval()
        inputs = batch_inputs(example, CANDIDATE_ROW_INPUT_NAMES, h_m)
        candidate = _export(
            rows_module, CANDIDATE_ROW_INPUT_NAMES, inputs, directory / CANDIDATE_FILE, star_args=True
        )
        with torch.no_grad():
            inputs = (*batch_inputs(example, names[:-1]), rows_module(*inputs))  # the rows are the last input
    else:
        inputs = batch_inputs(example, names)
    viewer = len(REQUEST_VIEWER_INPUT_NAMES)  # the viewer's inputs: row 0's, one row (a fixed dimension)
    inputs = (*(tensor[:1] for tensor in inputs[:viewer]), *inputs[viewer:])
    request = _export(
        request_module, request_module.input_names, inputs, directory / REQUEST_FILE, star_args=True,
        fixed=viewer,
    )  # fmt: skip
    logger.info(
        "exported the MMBee %s to %s", "fusion, scorer, request" if fusion else "scorer, request", directory
    )
    return Scorer(scorer, fusion, request, candidate)


def _export(module, names, inputs, path: Path, *, star_args: bool, fixed: int = 0) -> CheckedProgram:
    """`fixed`: how many leading inputs have a static first dimension (a request program's viewer)."""
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    dynamic = tuple(None if i < fixed else {0: batch} for i in range(len(inputs)))
    with torch.no_grad():
        program = torch.export.export(module, inputs, dynamic_shapes=(dynamic,) if star_args else dynamic)
    _atomic(path, lambda tmp: torch.export.save(program, tmp))
    specs = input_specs(names, inputs)
    specs = tuple(
        InputSpec(s.name, (1, *s.shape[1:]), s.dtype) if i < fixed else s for i, s in enumerate(specs)
    )
    return CheckedProgram(program, specs, MAX_BATCH)


def load_scorer(directory: str | os.PathLike) -> Scorer:
    """Load the scorer.pt2 (and fusion.pt2 when the scorer takes h_m) of `directory`; the input shapes are read
    from the programs. A model folder is better loaded with `load_model_folder`, which also checks the files
    against their digests."""
    directory = Path(directory)
    scorer = _load_program(directory / SCORER_FILE)
    fusion = None
    if len(scorer.specs) == len(H_M_SCORER_INPUT_NAMES):
        fusion = _load_program(directory / FUSION_FILE, FUSION_INPUT_NAMES)
        scorer.specs = _renamed(scorer.specs, H_M_SCORER_INPUT_NAMES)
    elif len(scorer.specs) == len(FLAT_INPUT_NAMES):
        scorer.specs = _renamed(scorer.specs, FLAT_INPUT_NAMES)
    else:
        raise ModelFolderError(
            f"{directory / SCORER_FILE} takes {len(scorer.specs)} inputs; an MMBee scorer takes "
            f"{len(FLAT_INPUT_NAMES)} (the whole model) or {len(H_M_SCORER_INPUT_NAMES)} (with h_m)"
        )
    request = candidate = None
    if (directory / REQUEST_FILE).is_file():
        request = _load_program(directory / REQUEST_FILE, request_input_names(fusion is not None))
        if fusion is not None:
            candidate = _load_program(directory / CANDIDATE_FILE, CANDIDATE_ROW_INPUT_NAMES)
    return Scorer(scorer, fusion, request, candidate)


def _load_program(path: Path, names: tuple[str, ...] | None = None) -> CheckedProgram:
    if not path.is_file():
        raise FileNotFoundError(f"no exported program at {path}")
    try:
        program = torch.export.load(path)
    except Exception as error:  # torch raises RuntimeError, ValueError, KeyError... on damaged archives
        raise ModelFolderError(
            f"{path} is not a readable exported program ({type(error).__name__}: {error})"
        ) from error
    specs = _specs_from_program(program)
    if names is not None:
        if len(specs) != len(names):
            raise ModelFolderError(f"{path} takes {len(specs)} inputs, expected {len(names)} ({names})")
        specs = _renamed(specs, names)
    return CheckedProgram(program, specs, MAX_BATCH)


def verify_export(
    model: MMBeeModel, scorer: Scorer, batches: Iterable[GTRBatch], atol: float = 1e-5
) -> float:
    """Compare the programs with the eager model (eval mode) on `batches`: `scorer(batch)` (fusion then scorer
    program) against `sigmoid(model(batch))` and, with h_m on, the fusion program's h_m against
    `model.fusion(batch)` and the scorer program fed the eager h_m against the eager scores; with a request
    program, the requests of the first `VERIFIED_VIEWERS` rows' viewers (that viewer with every row's candidate)
    against the eager model on the same rows. Returns the largest absolute difference and raises
    `ExportMismatchError` naming what differs when it exceeds `atol`."""
    was_training = model.training
    model.eval()
    worst: dict[str, float] = {}

    def compare(what: str, exported: np.ndarray, eager: np.ndarray) -> None:
        if exported.shape != eager.shape:
            raise ExportMismatchError(
                f"{what}: the export returned shape {exported.shape}, eager {eager.shape}"
            )
        if eager.size:
            difference = float(np.max(np.abs(exported - eager)))
            if not math.isfinite(difference):
                raise ExportMismatchError(
                    f"{what}: the export or the eager model returned a non-finite value"
                )
            worst[what] = max(worst.get(what, 0.0), difference)

    try:
        with torch.no_grad():
            for batch in batches:
                device = next(model.parameters()).device
                on_device = batch.to(device)
                eager = torch.sigmoid(model(on_device)[:, 0]).float().cpu().numpy()  # [B]
                compare("scores", scorer(batch), eager)
                if scorer.takes_h_m and len(batch):
                    eager_h_m = model.fusion(on_device).float().cpu()  # [B, d]
                    compare("h_m", scorer.h_m(batch).numpy(), eager_h_m.numpy())
                    compare("scores from the eager h_m", scorer(batch, eager_h_m), eager)
                if scorer.request is not None:
                    for row in range(min(VERIFIED_VIEWERS, len(batch))):
                        request = with_viewer_of(batch, row)
                        compare(
                            "request scores",
                            scorer.score_request(request),
                            torch.sigmoid(model(request.to(device))[:, 0]).float().cpu().numpy(),
                        )
    finally:
        model.train(was_training)
    over = {what: value for what, value in worst.items() if value > atol}
    if over:
        raise ExportMismatchError(
            "exported programs differ from eager: "
            + "; ".join(f"{what} differ from eager by up to {value:.3g}" for what, value in over.items())
            + f" (atol {atol:.3g})"
        )
    return max(worst.values(), default=0.0)


def save_model_folder(
    directory: str | os.PathLike, model: MMBeeModel, example_batch: GTRBatch, metrics: dict | None = None
) -> Path:
    """Write config.json, model.safetensors, scorer.pt2 (+ fusion.pt2 with h_m on) and metrics.json (see the
    module docstring) after checking the export against the eager model on the example batch."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / CONFIG_FILE).unlink(missing_ok=True)  # the folder is incomplete until config.json is back
    (directory / FUSION_FILE).unlink(missing_ok=True)  # a previous export's, if this model has no h_m
    (directory / REQUEST_FILE).unlink(missing_ok=True)
    (directory / CANDIDATE_FILE).unlink(missing_ok=True)
    cpu_model = copy.deepcopy(model).to("cpu").eval()
    _atomic(
        directory / WEIGHTS_FILE,
        lambda tmp: save_model(cpu_model, str(tmp), metadata={"format": "mmbee"}, force_contiguous=True),
    )
    scorer = export_scorer(cpu_model, example_batch, directory)
    verify_export(cpu_model, scorer, [example_batch])
    metrics_text = json.dumps(_json_safe(metrics or {}), indent=2, sort_keys=True, allow_nan=False)
    _atomic(directory / METRICS_FILE, lambda tmp: tmp.write_text(metrics_text))
    programs = {"scorer": (SCORER_FILE, scorer.scorer)}
    if scorer.fusion is not None:
        programs["fusion"] = (FUSION_FILE, scorer.fusion)
    programs["request"] = (REQUEST_FILE, scorer.request)
    if scorer.candidate is not None:
        programs["candidate"] = (CANDIDATE_FILE, scorer.candidate)
    files = (WEIGHTS_FILE, *(file for file, _ in programs.values()), METRICS_FILE)
    manifest = {
        "format_version": FORMAT_VERSION,
        "config": model.config.to_dict(),
        "programs": {
            name: {
                "file": file,
                "inputs": {
                    spec.name: {"shape": list(spec.shape), "dtype": str(spec.dtype).removeprefix("torch.")}
                    for spec in program.specs
                },
            }
            for name, (file, program) in programs.items()
        },
        "max_batch": MAX_BATCH,
        "sha256": {name: _sha256(directory / name) for name in files},
    }
    _atomic(directory / CONFIG_FILE, lambda tmp: tmp.write_text(json.dumps(manifest, indent=2)))
    logger.info("saved the MMBee model folder %s", directory)
    return directory


def load_model_folder(directory: str | os.PathLike) -> tuple[MMBeeConfig, MMBeeModel, Scorer]:
    """(config, eager model in eval mode on the CPU, exported programs) of a folder `save_model_folder`
    wrote."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory} is not a directory (an MMBee model folder was expected)")
    if not (directory / CONFIG_FILE).is_file():
        raise FileNotFoundError(
            f"MMBee model folder {directory} is incomplete: {CONFIG_FILE} missing (a folder holds "
            f"{CONFIG_FILE}, {WEIGHTS_FILE}, {SCORER_FILE}, {FUSION_FILE} when h_m is on, {METRICS_FILE})"
        )
    try:
        manifest = json.loads((directory / CONFIG_FILE).read_text())
        version = manifest["format_version"]
    except (ValueError, KeyError, TypeError) as error:
        raise ModelFolderError(
            f"{directory / CONFIG_FILE} is damaged ({type(error).__name__}: {error})"
        ) from error
    if version not in READABLE_FORMATS:
        raise ModelFolderError(
            f"{directory} has model folder format {version}; this code reads formats "
            f"{' and '.join(map(str, READABLE_FORMATS))} "
            "(re-export the model: `kmono mmbee train`, or save_model_folder from its model.safetensors)"
        )
    try:
        digests = manifest["sha256"]
        config = MMBeeConfig.from_dict(manifest["config"])
        programs = {
            name: (entry["file"], _manifest_specs(entry["inputs"]))
            for name, entry in manifest["programs"].items()
        }
        expected = {"scorer", "fusion"} if config.h_m_enabled else {"scorer"}
        if version >= 3:
            expected |= {"request", "candidate"} if config.h_m_enabled else {"request"}
        if set(programs) != expected:
            raise ValueError(
                f"programs {sorted(programs)} do not fit the config (h_m {config.h_m_enabled}) "
                f"and format {version}"
            )
        files = (WEIGHTS_FILE, *(file for file, _ in programs.values()), METRICS_FILE)
        if not set(files) <= set(digests):
            raise ValueError(f"no digest for {sorted(set(files) - set(digests))}")
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise ModelFolderError(
            f"{directory / CONFIG_FILE} is damaged ({type(error).__name__}: {error})"
        ) from error
    missing = [name for name in files if not (directory / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"MMBee model folder {directory} is incomplete: {', '.join(missing)} missing "
            f"(its {CONFIG_FILE} lists {', '.join(files)})"
        )
    for name in files:
        if _sha256(directory / name) != digests[name]:
            raise ModelFolderError(
                f"{directory / name} does not match its digest in {CONFIG_FILE} (corrupt, truncated or replaced)"
            )
    model = MMBeeModel(config)
    try:
        load_model(model, str(directory / WEIGHTS_FILE), strict=True, device="cpu")
    except (SafetensorError, RuntimeError, OSError) as error:
        raise ModelFolderError(f"{directory / WEIGHTS_FILE} does not fit its config: {error}") from error
    model.eval()
    max_batch = int(manifest.get("max_batch", MAX_BATCH))
    loaded = {}
    for name, (file, specs) in programs.items():
        program = _load_program(directory / file)
        if [(s.shape, s.dtype) for s in program.specs] != [(s.shape, s.dtype) for s in specs]:
            raise ModelFolderError(f"{directory / file} does not take the inputs {CONFIG_FILE} lists")
        program.specs, program.max_batch = specs, max_batch
        loaded[name] = program
    try:
        return (
            config,
            model,
            Scorer(loaded["scorer"], loaded.get("fusion"), loaded.get("request"), loaded.get("candidate")),
        )
    except ModelFolderError as error:
        raise ModelFolderError(f"{directory}: {error}") from error


def _manifest_specs(inputs: dict) -> tuple[InputSpec, ...]:
    dtypes = {}
    for name, entry in inputs.items():
        dtype = getattr(torch, entry["dtype"])
        if not isinstance(dtype, torch.dtype):
            raise ValueError(f"{entry['dtype']!r} is not a dtype")
        dtypes[name] = dtype
    return tuple(InputSpec(name, tuple(entry["shape"]), dtypes[name]) for name, entry in inputs.items())


def _renamed(specs: tuple[InputSpec, ...], names: tuple[str, ...]) -> tuple[InputSpec, ...]:
    return tuple(InputSpec(name, spec.shape, spec.dtype) for name, spec in zip(names, specs, strict=True))


def _specs_from_program(program: torch.export.ExportedProgram) -> tuple[InputSpec, ...]:
    """Input shapes from the placeholders' fake tensors (the batch dimension is the symbolic one), named by
    position until the caller knows which program this is."""
    placeholders = [
        node.meta["val"]
        for node in program.graph.nodes
        if node.op == "placeholder" and node.name in program.graph_signature.user_inputs
    ]
    return tuple(
        InputSpec(
            f"input_{i}",
            (
                None if isinstance(value.shape[0], torch.SymInt) else int(value.shape[0]),
                *(int(size) for size in value.shape[1:]),
            ),
            value.dtype,
        )  # fmt: skip
        for i, value in enumerate(placeholders)
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
