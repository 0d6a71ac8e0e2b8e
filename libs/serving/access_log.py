"""One structured log line per RPC.

The message is a JSON object so log pipelines can parse it without a custom pattern; the same fields are
attached as `record.rpc` for handlers that format records themselves. Probes (health, reflection) log at
DEBUG so Kubernetes checking every few seconds does not drown the log; server-side failures log at WARNING.
"""

from __future__ import annotations

import json
import logging

import grpc

logger = logging.getLogger(__name__)

_SERVER_FAULTS = frozenset(
    {
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DATA_LOSS,
        grpc.StatusCode.UNIMPLEMENTED,
    }
)


def log_rpc(
    *,
    method: str,
    code: grpc.StatusCode,
    duration_ms: float,
    peer: str,
    request_id: str | None = None,
    error_id: str | None = None,
    probe: bool = False,
) -> None:
    """Log the outcome of one RPC."""
    fields: dict[str, object] = {
        "event": "rpc",
        "method": method,
        "code": code.name,
        "duration_ms": round(duration_ms, 3),
        "peer": peer,
    }
    if request_id:
        fields["request_id"] = request_id
    if error_id:
        fields["error_id"] = error_id
    if probe:
        level = logging.DEBUG
    elif code in _SERVER_FAULTS:
        level = logging.WARNING
    else:
        level = logging.INFO
    logger.log(level, "%s", json.dumps(fields), extra={"rpc": fields})
