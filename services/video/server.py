"""VideoGenerationService: mask-conditioned text-to-video as long-running operations (MVideo).

Run: `kmono serve video` or `python -m services.video`; `--help` lists the flags (`--engine-path` for a pipeline
folder, the shapes-world default by default; `--tiny-engine` for tests). The engine loads once, at start-up,
before the port opens, and stays warm; CreateVideo operations live in an SQLite store under `--data-dir` and
survive restarts (a job interrupted by a crash or a shutdown runs again when the server comes back); artifacts
go to `--artifact-url` (a directory, or any fsspec URL)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from functools import partial

from kmono.video.v1 import video_pb2, video_pb2_grpc

from generation.masks.engine import load_mask_engine
from generation.mvideo.engine import load_mvideo_engine, load_vace_engine
from libs.serving import ServiceRegistration
from libs.serving.operations import OperationsServicer, OperationStore
from libs.serving.service import Built, service_main
from services.video.artifacts import ArtifactStore
from services.video.config import CONFIG_TYPE, VideoServiceConfig
from services.video.convert import RequestLimits
from services.video.servicer import VideoGenerationServicer
from services.video.worker import Engine, VideoWorker

logger = logging.getLogger(__name__)


def engines_loader(config: VideoServiceConfig) -> Callable[[], dict[str, Engine]]:
    """How the worker loads its engines at start-up (in a thread, once)."""

    def load() -> dict[str, Engine]:
        masks = partial(
            load_mask_engine,
            tiny=config.tiny_masks,
            grounding_model=config.grounding_model,
            sam2_model=config.sam2_model,
            device=config.device,
            dtype=config.dtype,
            torch_threads=config.torch_threads,
        )
        engines: dict[str, Engine] = {
            "mvideo": load_mvideo_engine(
                path=config.engine_path,
                tiny=config.tiny_engine,
                device=config.device,
                dtype=config.dtype,
                torch_threads=config.torch_threads,
                attention=config.attention,
                load_mask_engine=masks,
            )
        }
        if config.vace_path:
            engines["vace"] = load_vace_engine(
                config.vace_path, device=config.device, dtype=config.dtype, attention=config.attention
            )
        return engines

    return load


def build(
    config: VideoServiceConfig,
    *,
    load_engines: Callable[[], dict[str, Engine]] | None = None,
    artifacts: ArtifactStore | None = None,
) -> Built:
    """Registrations (VideoGenerationService + google.longrunning.Operations) and the start-up/shutdown hooks.

    `load_engines` replaces the pipelines (tests pass scripted engines)."""
    db = config.operations_db("video")
    db.parent.mkdir(parents=True, exist_ok=True)
    artifacts = artifacts or ArtifactStore(config.resolved_artifact_url())
    store = OperationStore(db, on_delete=artifacts.delete_operation)  # artifacts go with their operation
    limits = RequestLimits(
        max_frames=config.max_frames,
        max_pixels=config.max_pixels,
        max_inline_mask_bytes=config.max_inline_mask_bytes,
        max_steps=config.max_steps,
        media=config.media,
    )
    logger.info("media references: %s", config.media.describe())
    worker = VideoWorker(
        store, artifacts, load_engines or engines_loader(config), job_timeout=config.job_timeout_seconds
    )
    servicer = VideoGenerationServicer(
        store, worker, artifacts, limits, max_queued_jobs=config.max_queued_jobs
    )
    registrations = [
        ServiceRegistration.from_descriptor(
            video_pb2.DESCRIPTOR.services_by_name["VideoGenerationService"],
            lambda server: video_pb2_grpc.add_VideoGenerationServiceServicer_to_server(servicer, server),
        ),
        OperationsServicer(store).registration(),
    ]
    on_startup, on_shutdown = worker.server_hooks()
    return registrations, on_startup, on_shutdown


def main(argv: Sequence[str] | None = None) -> int:
    return service_main(
        argv, prog="kmono serve video", description=__doc__, config_type=CONFIG_TYPE, build=build
    )
