"""Long-running operations: a durable SQLite job store, `google.longrunning.Operations` over it, the worker
base that runs a service's queued operations (with a per-job deadline), and a bounded queue for creating them."""

from libs.serving.operations.admission import check_queue, create_queued
from libs.serving.operations.convert import error_to_status_proto, pack_any, to_operation_proto, unpack_any
from libs.serving.operations.errors import (
    InvalidOperationArgumentError,
    InvalidTransitionError,
    JobDeadlineExceededError,
    OperationError,
    OperationNotFoundError,
    QueueFullError,
    RequestIdConflictError,
    StaleAttemptError,
)
from libs.serving.operations.servicer import (
    OperationFilter,
    OperationsServicer,
    parse_filter,
    watch_operation,
)
from libs.serving.operations.store import (
    DONE_STATES,
    Change,
    ErrorStatus,
    Operation,
    OperationStore,
    State,
    is_legal_transition,
)
from libs.serving.operations.worker import OperationWorker, ProgressReporter

__all__ = [
    "DONE_STATES",
    "Change",
    "ErrorStatus",
    "InvalidOperationArgumentError",
    "InvalidTransitionError",
    "JobDeadlineExceededError",
    "Operation",
    "OperationError",
    "OperationFilter",
    "OperationNotFoundError",
    "OperationStore",
    "OperationWorker",
    "OperationsServicer",
    "ProgressReporter",
    "QueueFullError",
    "RequestIdConflictError",
    "StaleAttemptError",
    "State",
    "check_queue",
    "create_queued",
    "error_to_status_proto",
    "is_legal_transition",
    "pack_any",
    "parse_filter",
    "to_operation_proto",
    "unpack_any",
    "watch_operation",
]
