"""Container health check of a kmono server: exit 0 when grpc.health.v1 says SERVING, else 1.

For runtimes without native gRPC probes (Docker's HEALTHCHECK, compose); Kubernetes uses its own `grpc:` probes.
Imports only grpc and grpc_health (no torch), so a check every few seconds stays cheap:

    python /app/deploy/healthcheck.py                                    # the whole server (service "")
    python /app/deploy/healthcheck.py --service kmono.rank.v1.RankingService

The address defaults to 127.0.0.1 on $KMONO_PORT (50051), the port the server in the same container listens on.
A server that is draining after SIGTERM reports NOT_SERVING, so it fails this check as intended.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

SERVING = health_pb2.HealthCheckResponse.SERVING


def check(address: str, service: str = "", timeout: float = 3.0) -> tuple[bool, str]:
    """(serving, what was seen) for `service` at `address`; never raises for an unreachable server."""
    try:
        with grpc.insecure_channel(address) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout
            )
    except grpc.RpcError as exc:
        return False, f"{exc.code().name}: {exc.details()}"
    return reply.status == SERVING, health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--address",
        default=f"127.0.0.1:{os.environ.get('KMONO_PORT', '50051').strip()}",
        help="host:port of the gRPC server (default: 127.0.0.1:$KMONO_PORT)",
    )
    parser.add_argument(
        "--service",
        default="",
        help='full proto service name, e.g. kmono.video.v1.VideoGenerationService; "" is the whole server',
    )
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds to wait for the answer")
    args = parser.parse_args(argv)
    serving, seen = check(args.address, args.service, args.timeout)
    sys.stderr.write(f"health {args.service or '(server)'} at {args.address}: {seen}\n")
    return 0 if serving else 1


if __name__ == "__main__":
    sys.exit(main())
