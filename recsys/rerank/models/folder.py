"""The rerank model folder: the AR teacher, the NAR student and the page evaluator of one training run.

    config.json            {"format_version", "config": RerankModelConfig, "version", "meta"}
    teacher.safetensors    ARTeacher state dict
    student.safetensors    NARStudent state dict
    evaluator.safetensors  PageEvaluator state dict

`version` names the run (the service reports it); `meta` is free JSON (training recipe, metrics). Weights are
safetensors (no pickle: loading a folder runs no code). `kmono rerank train --out DIR` writes one.

Seeding rule: every random thing of a run draws from its own seed, derived from the run's seed and its own name
(`seed_for(seed, "teacher")`), never from what an earlier draw left in a shared RNG. So `new_models` initialises
the teacher, the student and the evaluator each under its own seed, and changing one model's size (a lighter
student) leaves the other two's initial weights exactly as they were; the pipeline's stages follow the same rule.
"""

from __future__ import annotations

import json
import logging
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_model, save_model
from torch import nn

from recsys.rerank.models.config import RerankModelConfig
from recsys.rerank.models.evaluator import PageEvaluator
from recsys.rerank.models.student import NARStudent
from recsys.rerank.models.teacher import ARTeacher

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHT_FILES = {
    "teacher": "teacher.safetensors",
    "student": "student.safetensors",
    "evaluator": "evaluator.safetensors",
}
HOW_TO_MAKE = "make one with `kmono rerank train --out DIR`"


@dataclass
class RerankModels:
    """The three models of a folder, built from one config."""

    config: RerankModelConfig
    teacher: ARTeacher
    student: NARStudent
    evaluator: PageEvaluator
    version: str
    meta: dict[str, Any] = field(default_factory=dict)

    def modules(self) -> dict[str, nn.Module]:
        return {"teacher": self.teacher, "student": self.student, "evaluator": self.evaluator}

    def eval(self) -> RerankModels:
        for module in self.modules().values():
            module.eval()
        return self


def seed_for(seed: int, *labels: str | int) -> int:
    """A seed for one named consumer of a run's randomness (a model's init, a stage's draws), from the run's seed
    and its labels: stable across processes and Python versions (crc32, not `hash`); different labels give
    independent streams; below 2**32, so a stage's per-epoch `seed * 1000 + epoch` stays a valid torch seed."""
    entropy = [seed, *(zlib.crc32(str(label).encode()) for label in labels)]
    return int(np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint32)[0])


def new_models(config: RerankModelConfig, seed: int) -> RerankModels:
    """Freshly initialised models, the same for the same (config, seed); the global RNG is left as it was.

    Each model is built under its own `seed_for(seed, name)` (module docstring), so a different `student_layers`
    gives the same teacher and evaluator."""
    built = {}
    for name, build in (("teacher", ARTeacher), ("student", NARStudent), ("evaluator", PageEvaluator)):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed_for(seed, name))
            built[name] = build(config)
    return RerankModels(
        config, built["teacher"], built["student"], built["evaluator"],
        version=f"untrained-seed{seed}", meta={"seed": seed},
    )  # fmt: skip


def save_model_folder(path: str | os.PathLike, models: RerankModels) -> Path:
    """Write the folder (see the module docstring); config.json last, so a folder with it is complete."""
    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / CONFIG_FILE).unlink(missing_ok=True)
    for name, module in models.modules().items():
        save_model(
            module, str(directory / WEIGHT_FILES[name]), metadata={"format": "kmono-rerank", "model": name}
        )
    manifest = {
        "format_version": FORMAT_VERSION,
        "config": models.config.to_dict(),
        "version": models.version,
        "meta": models.meta,
    }
    (directory / CONFIG_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=True))
    logger.info("saved the rerank models %s to %s", models.version, directory)
    return directory


def load_model_folder(path: str | os.PathLike) -> RerankModels:
    """The models of a folder `save_model_folder` wrote, in eval mode on the CPU.

    FileNotFoundError when the folder or one of its files is missing, ValueError when config.json is damaged,
    of another format, or a weight file does not fit the config; each message names the file."""
    directory = Path(path)
    if not directory.is_dir():
        raise FileNotFoundError(
            f"{directory} is not a rerank model folder (no such directory); {HOW_TO_MAKE}"
        )
    missing = [name for name in (CONFIG_FILE, *WEIGHT_FILES.values()) if not (directory / name).is_file()]
    if missing:
        raise FileNotFoundError(f"rerank model folder {directory} lacks {', '.join(missing)}; {HOW_TO_MAKE}")
    try:
        manifest = json.loads((directory / CONFIG_FILE).read_text())
        version = manifest["format_version"]
        if version != FORMAT_VERSION:
            raise ValueError(f"format_version {version}, this code reads {FORMAT_VERSION}")
        config = RerankModelConfig.from_dict(manifest["config"])
        models = RerankModels(
            config,
            ARTeacher(config),
            NARStudent(config),
            PageEvaluator(config),
            str(manifest["version"]),
            dict(manifest.get("meta") or {}),
        )
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(
            f"{directory / CONFIG_FILE} is damaged ({type(error).__name__}: {error}); {HOW_TO_MAKE}"
        ) from error
    for name, module in models.modules().items():
        file = directory / WEIGHT_FILES[name]
        try:
            load_model(module, str(file), strict=True, device="cpu")
        except (SafetensorError, RuntimeError) as error:
            raise ValueError(
                f"{file} does not fit the config in {CONFIG_FILE} ({error}); {HOW_TO_MAKE}"
            ) from error
    return models.eval()
