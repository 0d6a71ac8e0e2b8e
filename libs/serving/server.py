"""Building, starting and stopping a kmono gRPC server.

`build_server(config, registrations)` is the one way a service gets a server: grpc.aio with the serving
interceptor, message-size limits, the standard health service (one status per registered service plus ""
for the whole server) and server reflection (so grpcurl and probes can list services).

Lifecycle (`KmonoServer`):
- `start()`: metrics endpoint -> `on_startup` hooks (load models, start workers) -> bind the port and accept
  RPCs -> every service SERVING. Hooks run before the port opens, so no RPC reaches a half-started service
  and a failed hook leaves no port bound (gRPC frees a bound port only once the server has started). If
  start fails or is cancelled after the hooks began, the `on_shutdown` hooks run so no worker outlives it.
- `stop(grace)`: every service NOT_SERVING first (load balancers and Watch clients see it) -> stop accepting
  and give in-flight RPCs up to `grace` seconds -> `on_shutdown` hooks (reverse order) within what is left of
  the grace, but at least min(grace, 1 s) so draining a long stream cannot skip cleanup -> metrics endpoint
  closed. A hook still running at its deadline is cancelled.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import grpc
from google.protobuf.descriptor import ServiceDescriptor
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import CollectorRegistry

from libs.serving.config import ServerConfig
from libs.serving.interceptor import ServingInterceptor
from libs.serving.metrics import MetricsHttpServer, RpcMetrics

logger = logging.getLogger(__name__)

Hook = Callable[[], Awaitable[None]]
"""An async callable run at startup or shutdown (start/stop workers, load/unload models)."""

_SERVING = health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
_HOOK_FLOOR_SECONDS = 1.0


@dataclass(frozen=True)
class ServiceRegistration:
    """One service to serve: its full proto name (health key and reflection entry) and how to add it."""

    service_name: str
    """Full proto name, e.g. "kmono.rank.v1.RankingService"."""
    add_to_server: Callable[[grpc.aio.Server], None]
    """Adds the servicer, e.g. `lambda s: rank_pb2_grpc.add_RankingServiceServicer_to_server(servicer, s)`."""

    def __post_init__(self) -> None:
        if not self.service_name or "/" in self.service_name or self.service_name.startswith("."):
            raise ValueError(
                f"service_name must be a full proto name like 'pkg.v1.Service', got {self.service_name!r}"
            )

    @classmethod
    def from_descriptor(
        cls, service: ServiceDescriptor, add_to_server: Callable[[grpc.aio.Server], None]
    ) -> ServiceRegistration:
        """Take the name from generated code: `rank_pb2.DESCRIPTOR.services_by_name["RankingService"]`."""
        return cls(service.full_name, add_to_server)


class KmonoServer:
    """A built server; see the module docstring for the start/stop order. Use inside one event loop."""

    def __init__(
        self,
        config: ServerConfig,
        registrations: Sequence[ServiceRegistration],
        *,
        on_startup: Sequence[Hook] = (),
        on_shutdown: Sequence[Hook] = (),
    ):
        names = [registration.service_name for registration in registrations]
        if len(set(names)) != len(names):
            raise ValueError(f"a service is registered twice: {names}")
        self.config = config
        self.service_names: tuple[str, ...] = tuple(names)
        self.registry = CollectorRegistry()
        self.interceptor = ServingInterceptor(
            metrics=RpcMetrics(self.registry),
            max_concurrent_rpcs=config.max_concurrent_rpcs,
            default_deadline_seconds=config.default_deadline_seconds,
        )
        self.health = health.aio.HealthServicer()
        self._on_startup = tuple(on_startup)
        self._on_shutdown = tuple(on_shutdown)
        self._metrics_http = (
            MetricsHttpServer(self.registry, config.host, config.metrics_port)
            if config.metrics_port is not None
            else None
        )
        self._server = grpc.aio.server(
            interceptors=[self.interceptor],
            options=[
                ("grpc.max_send_message_length", config.max_message_bytes),
                ("grpc.max_receive_message_length", config.max_message_bytes),
                # Fail loudly if the port is taken instead of silently sharing it with another process.
                ("grpc.so_reuseport", 0),
            ],
        )
        for registration in registrations:
            registration.add_to_server(self._server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._server)
        reflection.enable_server_reflection(
            (*names, health.SERVICE_NAME, reflection.SERVICE_NAME), self._server
        )
        self._port: int | None = None
        self._stopping: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        """The bound gRPC port (the real one when the config asked for 0)."""
        if self._port is None:
            raise RuntimeError("server is not started")
        return self._port

    @property
    def metrics_port(self) -> int | None:
        """The bound metrics port, or None when the metrics endpoint is off."""
        return None if self._metrics_http is None else self._metrics_http.port

    async def start(self) -> int:
        """Start serving; returns the bound port. Raises (after cleaning up) if a hook or binding fails."""
        if self._port is not None or self._stopping is not None:
            raise RuntimeError("a KmonoServer starts once; build a new one to serve again")
        logger.info("starting server for %s", ", ".join(self.service_names) or "no services")
        hooks_began = False
        try:
            if self._metrics_http is not None:
                await asyncio.to_thread(self._metrics_http.start)
            for hook in self._on_startup:
                hooks_began = True
                logger.info("startup hook %s", _name(hook))
                await hook()
            self._port = self._bind()
            await self._server.start()
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                logger.info("startup cancelled")
            else:
                logger.exception("server failed to start")
            if hooks_began:
                await self._run_shutdown_hooks(time.monotonic() + self.config.grace_seconds)
            await self._stop_metrics()
            raise
        for name in ("", *self.service_names):
            await self.health.set(name, _SERVING)
        logger.info("serving on %s:%d (metrics port %s)", self.config.host, self._port, self.metrics_port)
        return self._port

    def _bind(self) -> int:
        try:
            port = self._server.add_insecure_port(self.config.address)
        except RuntimeError as exc:
            raise OSError(f"cannot listen on {self.config.address}: {exc}") from exc
        if port == 0:  # older gRPC reports a failed bind this way
            raise OSError(f"cannot listen on {self.config.address}")
        return port

    async def set_serving(self, service_name: str, serving: bool) -> None:
        """Report one service (or "" for the server) as SERVING or NOT_SERVING, e.g. when its worker dies."""
        await self.health.set(service_name, _SERVING if serving else _NOT_SERVING)

    async def stop(self, grace: float | None = None) -> None:
        """Graceful shutdown within `grace` seconds (default `config.grace_seconds`); safe to call twice."""
        if self._stopping is None:
            grace = self.config.grace_seconds if grace is None else grace
            self._stopping = asyncio.ensure_future(self._stop(grace))
        await asyncio.shield(self._stopping)

    async def _stop(self, grace: float) -> None:
        ends_at = time.monotonic() + grace
        logger.info("shutting down: health NOT_SERVING, then up to %.1fs for in-flight RPCs", grace)
        await self.health.enter_graceful_shutdown()
        await self._server.stop(grace)
        logger.info("gRPC server stopped")
        await self._run_shutdown_hooks(max(ends_at, time.monotonic() + min(grace, _HOOK_FLOOR_SECONDS)))
        await self._stop_metrics()
        logger.info("shutdown complete")

    async def _run_shutdown_hooks(self, deadline: float) -> None:
        """Run `on_shutdown` in reverse order until `deadline`; a failing or late hook does not stop the rest."""
        for hook in reversed(self._on_shutdown):
            budget = max(0.0, deadline - time.monotonic())
            logger.info("shutdown hook %s (%.1fs left)", _name(hook), budget)
            try:
                async with asyncio.timeout(budget):
                    await hook()
            except TimeoutError:
                logger.error("shutdown hook %s did not finish in time and was cancelled", _name(hook))
            except Exception:
                logger.exception("shutdown hook %s failed", _name(hook))

    async def _stop_metrics(self) -> None:
        if self._metrics_http is not None:
            # prometheus' server polls for shutdown every 0.5 s: wait off the event loop.
            await asyncio.to_thread(self._metrics_http.stop)

    async def wait_for_termination(self) -> None:
        """Return once the gRPC server has stopped."""
        await self._server.wait_for_termination()

    async def __aenter__(self) -> KmonoServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()


def build_server(
    config: ServerConfig,
    registrations: Sequence[ServiceRegistration],
    *,
    on_startup: Sequence[Hook] = (),
    on_shutdown: Sequence[Hook] = (),
) -> KmonoServer:
    """The server for `registrations`, not yet started; call it inside the event loop that will run it."""
    return KmonoServer(config, registrations, on_startup=on_startup, on_shutdown=on_shutdown)


def _name(hook: Hook) -> str:
    return getattr(hook, "__qualname__", None) or repr(hook)
