"""The gRPC server kit every kmono service is built with.

    from libs.serving import ServerConfig, ServiceRegistration, run
    run(ServerConfig.from_env(), [ServiceRegistration("kmono.rank.v1.RankingService", add)])

See server.py for the lifecycle, interceptor.py for what happens around each RPC and errors.py for how
raised errors reach clients.
"""

from libs.serving.config import ServerConfig
from libs.serving.deadlines import current_deadline, deadline_scope, remaining_seconds
from libs.serving.errors import (
    ERROR_DOMAIN,
    AbortedError,
    AlreadyExistsError,
    DeadlineExceededError,
    FailedPreconditionError,
    InvalidArgumentError,
    KmonoError,
    NotFoundError,
    ResourceExhaustedError,
    UnavailableError,
    UnimplementedError,
    abort_with_exception,
    abort_with_status,
    find_detail,
    status_code,
    status_from_exception,
)
from libs.serving.interceptor import REQUEST_ID_KEY, ServingInterceptor
from libs.serving.runner import configure_logging, run, serve
from libs.serving.server import Hook, KmonoServer, ServiceRegistration, build_server

__all__ = [
    "ERROR_DOMAIN",
    "REQUEST_ID_KEY",
    "AbortedError",
    "AlreadyExistsError",
    "DeadlineExceededError",
    "FailedPreconditionError",
    "Hook",
    "InvalidArgumentError",
    "KmonoError",
    "KmonoServer",
    "NotFoundError",
    "ResourceExhaustedError",
    "ServerConfig",
    "ServiceRegistration",
    "ServingInterceptor",
    "UnavailableError",
    "UnimplementedError",
    "abort_with_exception",
    "abort_with_status",
    "build_server",
    "configure_logging",
    "current_deadline",
    "deadline_scope",
    "find_detail",
    "remaining_seconds",
    "run",
    "serve",
    "status_code",
    "status_from_exception",
]
