"""MaskService: extracts, edits, composes and synthesises mask sequences.

Run: `kmono serve masks` or `python -m services.masks`; `--help` lists the flags (`--tiny-models` for tests
and the demo). The extractor's models load once, at start-up, before the port opens; ExtractMasks
operations live in an SQLite store under `--data-dir` and survive restarts (a job interrupted by a crash or
a shutdown runs again when the server comes back)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from functools import partial

from kmono.masks.v1 import masks_pb2, masks_pb2_grpc

from generation.masks.engine import load_mask_engine
from libs.serving import ServiceRegistration
from libs.serving.inputs import SizeLimits
from libs.serving.operations import OperationsServicer, OperationStore
from libs.serving.service import Built, service_main
from services.masks.config import CONFIG_TYPE, MaskServiceConfig
from services.masks.servicer import MaskServicer
from services.masks.worker import Engine, ExtractionWorker

logger = logging.getLogger(__name__)


def engine_loader(config: MaskServiceConfig) -> Callable[[], Engine]:
    """How the worker loads its engine at start-up (in a thread, once)."""
    return partial(
        load_mask_engine,
        tiny=config.tiny_models,
        grounding_model=config.grounding_model,
        sam2_model=config.sam2_model,
        device=config.device,
        dtype=config.dtype,
        torch_threads=config.torch_threads,
        window=config.extract_window,
    )


def build(config: MaskServiceConfig, *, load_engine: Callable[[], Engine] | None = None) -> Built:
    """Registrations (MaskService + google.longrunning.Operations) and the start-up/shutdown hooks.

    `load_engine` replaces the extractor (tests pass a scripted engine)."""
    db = config.operations_db("masks")
    db.parent.mkdir(parents=True, exist_ok=True)
    store = OperationStore(db)
    worker = ExtractionWorker(
        store, load_engine or engine_loader(config), job_timeout=config.job_timeout_seconds
    )
    limits = SizeLimits(config.max_mask_pixels, max_layers=config.max_layers, max_objects=config.max_objects)
    servicer = MaskServicer(store, worker, limits, max_queued_jobs=config.max_queued_jobs, media=config.media)
    logger.info("media references: %s", config.media.describe())
    registrations = [
        ServiceRegistration.from_descriptor(
            masks_pb2.DESCRIPTOR.services_by_name["MaskService"],
            lambda server: masks_pb2_grpc.add_MaskServiceServicer_to_server(servicer, server),
        ),
        OperationsServicer(store).registration(),
    ]
    on_startup, on_shutdown = worker.server_hooks()
    return registrations, on_startup, on_shutdown


def main(argv: Sequence[str] | None = None) -> int:
    return service_main(
        argv, prog="kmono serve masks", description=__doc__, config_type=CONFIG_TYPE, build=build
    )
