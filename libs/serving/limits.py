"""Concurrency cap: how many RPCs a server works on at once.

gRPC's own `maximum_concurrent_rpcs` also rejects past a limit, but it counts health checks (so a busy
server fails its Kubernetes probes and gets restarted for being busy) and it sends no retry hint. This
limiter is applied by the server interceptor instead: health and reflection RPCs never count, and a
rejected RPC gets RESOURCE_EXHAUSTED with ErrorInfo(reason="TOO_MANY_REQUESTS") and a RetryInfo.
"""

from __future__ import annotations

from grpc_health.v1.health import SERVICE_NAME as HEALTH_SERVICE
from grpc_reflection.v1alpha.reflection import SERVICE_NAME as REFLECTION_V1ALPHA_SERVICE

REFLECTION_V1_SERVICE = "grpc.reflection.v1.ServerReflection"
EXEMPT_SERVICES = frozenset({HEALTH_SERVICE, REFLECTION_V1ALPHA_SERVICE, REFLECTION_V1_SERVICE})


def service_of(method: str) -> str:
    """`/kmono.rank.v1.RankingService/Rank` -> `kmono.rank.v1.RankingService`."""
    return method.lstrip("/").partition("/")[0]


def is_exempt(method: str) -> bool:
    """Whether the RPC is a probe (health, reflection) that must work however loaded the server is."""
    return service_of(method) in EXEMPT_SERVICES


class ConcurrencyLimiter:
    """Counts in-flight RPCs against a limit.

    Not thread-safe on purpose: a grpc.aio server runs every handler on one event loop, and
    `try_acquire` has no await inside, so check-and-increment cannot interleave.
    """

    def __init__(self, limit: int):
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        self.limit = limit
        self._in_flight = 0

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def try_acquire(self) -> bool:
        """Take a slot if one is free; the caller must `release()` it when the RPC ends."""
        if self._in_flight >= self.limit:
            return False
        self._in_flight += 1
        return True

    def release(self) -> None:
        if self._in_flight <= 0:
            raise RuntimeError("release() without a matching try_acquire()")
        self._in_flight -= 1
