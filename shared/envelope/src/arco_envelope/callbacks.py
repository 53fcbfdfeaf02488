"""Worker callback bodies and responses (arco-contract sections 4 and 5).

Callback bodies are camelCase only: a snake_case key is an unknown key and is ignored.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, ClassVar

from pydantic import AliasChoices, Field, StrictBool, StrictInt, StrictStr

from arco_envelope.timestamps import Timestamp
from arco_envelope.wire import I64, U32, U64, WireModel


class WorkerOutcome(StrEnum):
    """What the worker reports in ``/completed``."""

    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


class OutputVisibilityState(StrEnum):
    """Whether a task's output is visible to readers yet."""

    PENDING = "PENDING"
    VISIBLE = "VISIBLE"
    FAILED = "FAILED"


class ErrorCategory(StrEnum):
    """Failure category of a ``TaskError``."""

    USER_CODE = "USER_CODE"
    DATA_QUALITY = "DATA_QUALITY"
    INFRASTRUCTURE = "INFRASTRUCTURE"
    CONFIGURATION = "CONFIGURATION"
    TIMEOUT = "TIMEOUT"
    CANCELLED = "CANCELLED"

    @property
    def default_retryable(self) -> bool:
        """Whether a failure of this category is retried when ``retryable`` is absent."""
        return self in _RETRYABLE_BY_DEFAULT


_RETRYABLE_BY_DEFAULT = frozenset(
    {ErrorCategory.USER_CODE, ErrorCategory.INFRASTRUCTURE, ErrorCategory.TIMEOUT}
)


class CallbackErrorCode(StrEnum):
    """The stable ``error`` codes of callback error responses (section 5.4)."""

    INVALID_ARGUMENT = "invalid_argument"
    TASK_ID_AMBIGUOUS = "task_id_ambiguous"
    INVALID_TOKEN = "invalid_token"  # noqa: S105 - an error code, not a secret
    TASK_NOT_FOUND = "task_not_found"
    TASK_ALREADY_TERMINAL = "task_already_terminal"
    ATTEMPT_ALREADY_COMPLETED = "attempt_already_completed"
    ATTEMPT_MISMATCH = "attempt_mismatch"
    ATTEMPT_ID_MISMATCH = "attempt_id_mismatch"
    TASK_EXPIRED = "task_expired"


ATTEMPT_OVER_CODES: frozenset[str] = frozenset(
    {
        CallbackErrorCode.TASK_ALREADY_TERMINAL,
        CallbackErrorCode.ATTEMPT_ALREADY_COMPLETED,
        CallbackErrorCode.ATTEMPT_MISMATCH,
        CallbackErrorCode.ATTEMPT_ID_MISMATCH,
    }
)
"""409 codes on ``/started`` that mean "this attempt is over: run nothing" (section 3.2)."""

# Upstream accepts attempt 0 when parsing (the handler answers 400), but documents minimum 1.
Attempt = Annotated[U32, Field(json_schema_extra={"minimum": 1})]
ProgressPct = Annotated[StrictInt, Field(ge=0, le=100)]


class _CallbackRequest(WireModel):
    attempt: Attempt
    attempt_id: StrictStr
    worker_id: StrictStr
    traceparent: StrictStr | None = None


class TaskStartedRequest(_CallbackRequest):
    """Body of ``POST /api/v1/tasks/{taskId}/started``."""

    started_at: Timestamp | None = None


class TaskStartedResponse(WireModel):
    """200 body of ``/started``."""

    acknowledged: StrictBool = True
    server_time: Timestamp


class HeartbeatRequest(_CallbackRequest):
    """Body of ``POST /api/v1/tasks/{taskId}/heartbeat``."""

    heartbeat_at: Timestamp | None = None
    progress_pct: ProgressPct | None = None
    message: StrictStr | None = None


class HeartbeatResponse(WireModel):
    """200 body of ``/heartbeat``. ``taskToken``/``tokenExpiresAt`` are this stack's token
    refresh (design D8); arco workers ignore them."""

    acknowledged: StrictBool = True
    should_cancel: StrictBool = False
    cancel_reason: StrictStr | None = None
    server_time: Timestamp
    task_token: StrictStr | None = None
    token_expires_at: Timestamp | None = None

    @classmethod
    def from_http_body(cls, body: bytes, *, server_time: datetime) -> HeartbeatResponse:
        """Read a heartbeat 2xx body; an empty body (e.g. 204) means "acknowledged, continue"."""
        if not body.strip():
            return cls(acknowledged=True, should_cancel=False, server_time=server_time)
        return cls.from_json(body)


# The longest value the control plane stores for an output's materialization id and Delta
# table (their columns hold 512 characters): a longer one is a schema error (422) the worker
# can see, rather than a value the database refuses after the model accepted it.
MAX_OUTPUT_KEY_LENGTH = 512
OutputKey = Annotated[StrictStr, Field(max_length=MAX_OUTPUT_KEY_LENGTH)]


class TaskOutput(WireModel):
    """What a task produced. Every field is optional."""

    materialization_id: OutputKey | None = None
    row_count: U64 | None = None
    byte_size: U64 | None = None
    output_path: StrictStr | None = None
    delta_table: OutputKey | None = None
    delta_version: I64 | None = None
    delta_partition: StrictStr | None = None
    output_visibility_state: OutputVisibilityState | None = None
    published_at: Timestamp | None = None
    publish_error: StrictStr | None = None


class TaskError(WireModel):
    """Why a task failed."""

    category: ErrorCategory
    message: StrictStr
    stack_trace: StrictStr | None = None
    retryable: StrictBool | None = None

    @property
    def effective_retryable(self) -> bool:
        """The explicit ``retryable`` value, or else the category default."""
        return self.category.default_retryable if self.retryable is None else self.retryable


class TaskMetrics(WireModel):
    """Resource usage of one attempt."""

    cpu_time_ms: U64 | None = None
    peak_memory_bytes: U64 | None = None
    io_read_bytes: U64 | None = None
    io_write_bytes: U64 | None = None


class TaskCompletedRequest(_CallbackRequest):
    """Body of ``POST /api/v1/tasks/{taskId}/completed``. ``result`` is read as an alias of
    ``output`` (both at once is an error); it is always written as ``output``."""

    _legacy_aliases: ClassVar[dict[str, tuple[str, ...]]] = {"output": ("result",)}

    outcome: WorkerOutcome
    completed_at: Timestamp | None = None
    output: TaskOutput | None = Field(
        default=None,
        validation_alias=AliasChoices("output", "result"),
        serialization_alias="output",
    )
    error: TaskError | None = None
    metrics: TaskMetrics | None = None
    cancelled_during_phase: StrictStr | None = None
    partial_progress: Any = None

    def to_dict(self) -> dict[str, Any]:
        """Canonical camelCase dict; ``partialProgress`` is written verbatim when present."""
        out = self.model_dump(
            mode="json", by_alias=True, exclude_none=True, exclude={"partial_progress"}
        )
        if self.partial_progress is not None:
            out["partialProgress"] = self.partial_progress
        return out


class TaskCompletedResponse(WireModel):
    """200 body of ``/completed``; ``finalState`` echoes the worker's outcome."""

    acknowledged: StrictBool = True
    final_state: WorkerOutcome
    server_time: Timestamp


class CallbackErrorPayload(WireModel):
    """Error body of callback 400/401/404/409/410 responses (section 5.3)."""

    error: StrictStr
    message: StrictStr
    state: StrictStr | None = None
    expected_attempt: U32 | None = None
    received_attempt: U32 | None = None
    expected_attempt_id: StrictStr | None = None
    received_attempt_id: StrictStr | None = None
