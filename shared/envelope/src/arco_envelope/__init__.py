"""arco's worker dispatch wire contract: the ``WorkerDispatchEnvelope``, the callback bodies,
the identifiers and the per-attempt task tokens.

Importable alone (pydantic is its only dependency); worker authors build against it.
"""

from arco_envelope.callbacks import (
    ATTEMPT_OVER_CODES,
    CallbackErrorCode,
    CallbackErrorPayload,
    ErrorCategory,
    HeartbeatRequest,
    HeartbeatResponse,
    OutputVisibilityState,
    TaskCompletedRequest,
    TaskCompletedResponse,
    TaskError,
    TaskMetrics,
    TaskOutput,
    TaskStartedRequest,
    TaskStartedResponse,
    WorkerOutcome,
)
from arco_envelope.envelope import (
    DEFAULT_HEARTBEAT_TIMEOUT_SECS,
    DEFAULT_WORKER_QUEUE,
    MIN_HEARTBEAT_TIMEOUT_SECS,
    WorkerDispatchEnvelope,
)
from arco_envelope.ids import (
    InvalidCallbackTaskId,
    attempt_id,
    callback_task_id,
    cloud_task_name,
    dispatch_id,
    parse_callback_task_id,
)
from arco_envelope.timestamps import Timestamp, format_timestamp, parse_timestamp

DISPATCH_SECRET_HEADER = "X-Arco-Dispatch-Secret"  # noqa: S105 - a header name

__all__ = [
    "ATTEMPT_OVER_CODES",
    "DEFAULT_HEARTBEAT_TIMEOUT_SECS",
    "DEFAULT_WORKER_QUEUE",
    "DISPATCH_SECRET_HEADER",
    "MIN_HEARTBEAT_TIMEOUT_SECS",
    "CallbackErrorCode",
    "CallbackErrorPayload",
    "ErrorCategory",
    "HeartbeatRequest",
    "HeartbeatResponse",
    "InvalidCallbackTaskId",
    "OutputVisibilityState",
    "TaskCompletedRequest",
    "TaskCompletedResponse",
    "TaskError",
    "TaskMetrics",
    "TaskOutput",
    "TaskStartedRequest",
    "TaskStartedResponse",
    "Timestamp",
    "WorkerDispatchEnvelope",
    "WorkerOutcome",
    "attempt_id",
    "callback_task_id",
    "cloud_task_name",
    "dispatch_id",
    "format_timestamp",
    "parse_callback_task_id",
    "parse_timestamp",
]
