"""Prometheus metrics of one server and the HTTP endpoint that exposes them.

Each server owns a `CollectorRegistry` instead of using prometheus_client's global one, so several servers
in one process (tests, the demo) do not clash over metric names, and a service can add its own metrics
(e.g. queue depth, which the Kubernetes HPA scales on) to `KmonoServer.registry`.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from wsgiref.simple_server import WSGIServer

import grpc
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

logger = logging.getLogger(__name__)

# From a cached ranking call (ms) to a synchronous generation call (minutes).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class RpcMetrics:
    """Latency by method and code, in-flight RPCs by method, errors by method and code."""

    def __init__(self, registry: CollectorRegistry):
        self.latency = Histogram(
            "kmono_grpc_server_handling_seconds",
            "Time from the start of an RPC's handler to its status, by method and status code.",
            ["method", "code"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.in_flight = Gauge(
            "kmono_grpc_server_in_flight_rpcs",
            "RPCs currently being handled, by method.",
            ["method"],
            registry=registry,
        )
        self.errors = Counter(
            "kmono_grpc_server_errors",
            "RPCs that ended with a status other than OK, by method and status code.",
            ["method", "code"],
            registry=registry,
        )

    @contextlib.contextmanager
    def track_in_flight(self, method: str) -> Iterator[None]:
        gauge = self.in_flight.labels(method)
        gauge.inc()
        try:
            yield
        finally:
            gauge.dec()

    def observe(self, method: str, code: grpc.StatusCode, seconds: float) -> None:
        self.latency.labels(method, code.name).observe(seconds)
        if code is not grpc.StatusCode.OK:
            self.errors.labels(method, code.name).inc()


class MetricsHttpServer:
    """prometheus_client's HTTP exposition server on a daemon thread, stoppable (tests start many)."""

    def __init__(self, registry: CollectorRegistry, host: str, port: int):
        self._registry = registry
        self._host = host.strip("[]")
        self._port = port
        self._httpd: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound port once started (it stays readable after `stop()`); the requested one before."""
        return self._port

    def start(self) -> int:
        """Bind and serve `/metrics`; returns the real port (the requested one may be 0)."""
        self._httpd, self._thread = start_http_server(self._port, addr=self._host, registry=self._registry)
        self._port = self._httpd.server_port
        logger.info("metrics on http://%s:%d/metrics", self._host, self.port)
        return self.port

    def stop(self) -> None:
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = self._thread = None
