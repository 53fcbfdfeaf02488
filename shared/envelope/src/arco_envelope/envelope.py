"""The WorkerDispatchEnvelope: the body the dispatcher sends to a worker (section 2)."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

from pydantic import AliasChoices, Field, StrictStr, WithJsonSchema, model_validator

from arco_envelope.timestamps import Timestamp
from arco_envelope.wire import U32, WireModel, reject_duplicate_spellings

DEFAULT_WORKER_QUEUE = "default-queue"
DEFAULT_HEARTBEAT_TIMEOUT_SECS = 300
MIN_HEARTBEAT_TIMEOUT_SECS = 30

# canonical camelCase name -> legacy snake_case name accepted on read
_LEGACY: dict[str, str] = {
    "tenantId": "tenant_id",
    "workspaceId": "workspace_id",
    "taskId": "task_id",
    "taskKey": "task_key",
    "runId": "run_id",
    "attemptId": "attempt_id",
    "dispatchId": "dispatch_id",
    "executionLocationId": "execution_location_id",
    "partitionKey": "partition_key",
    "heartbeatTimeoutSec": "heartbeat_timeout_sec",
    "workerQueue": "worker_queue",
    "callbackBaseUrl": "callback_base_url",
    "taskToken": "task_token",
    "tokenExpiresAt": "token_expires_at",
}


def _either(camel: str, **kwargs: Any) -> Any:
    return Field(
        validation_alias=AliasChoices(camel, _LEGACY[camel]), serialization_alias=camel, **kwargs
    )


def _schema_accepts_legacy(schema: dict[str, Any]) -> None:
    # The JSON Schema describes what a reader accepts: each field under exactly one spelling.
    props = schema.get("properties")
    required = schema.get("required")
    if not isinstance(props, dict) or not isinstance(required, list):
        return
    one_of_each: list[dict[str, Any]] = []
    for camel, snake in _LEGACY.items():
        if camel in props:
            props[snake] = props[camel]
            if camel in required:
                one_of_each.append({"oneOf": [{"required": [camel]}, {"required": [snake]}]})
            else:
                one_of_each.append({"not": {"required": [camel, snake]}})
    schema["required"] = [name for name in required if name not in _LEGACY]
    schema["allOf"] = one_of_each


class WorkerDispatchEnvelope(WireModel, json_schema_extra=_schema_accepts_legacy):
    """The dispatch body. Written as canonical camelCase with optional fields omitted;
    read from camelCase or the legacy snake_case spelling (both spellings of one field is an
    error). A missing or null ``taskId`` defaults to ``taskKey`` (legacy task-key path)."""

    _legacy_aliases: ClassVar[dict[str, tuple[str, ...]]] = {
        camel: (snake,) for camel, snake in _LEGACY.items()
    }

    tenant_id: StrictStr = _either("tenantId")
    workspace_id: StrictStr = _either("workspaceId")
    # A missing or null taskId is filled from taskKey by the validator below, so the
    # attribute is always a string; the schema says "string or null" as the wire does.
    task_id: Annotated[
        StrictStr, WithJsonSchema({"anyOf": [{"type": "string"}, {"type": "null"}]})
    ] = _either("taskId", default="")
    task_key: StrictStr = _either("taskKey")
    run_id: StrictStr = _either("runId")
    attempt: U32
    attempt_id: StrictStr = _either("attemptId")
    dispatch_id: StrictStr = _either("dispatchId")
    execution_location_id: StrictStr | None = _either("executionLocationId", default=None)
    partition_key: StrictStr | None = _either("partitionKey", default=None)
    heartbeat_timeout_sec: U32 | None = _either("heartbeatTimeoutSec", default=None)
    worker_queue: StrictStr = _either("workerQueue")
    callback_base_url: StrictStr = _either("callbackBaseUrl")
    task_token: StrictStr = _either("taskToken")
    token_expires_at: Timestamp = _either("tokenExpiresAt")
    traceparent: StrictStr | None = None
    payload: Any = None

    @model_validator(mode="before")
    @classmethod
    def _default_task_id_to_task_key(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        reject_duplicate_spellings(data, cls._legacy_aliases)
        if data.get("taskId") is None and data.get("task_id") is None:
            data = {k: v for k, v in data.items() if k not in ("taskId", "task_id")}
            task_key = data.get("taskKey", data.get("task_key"))
            if task_key is not None:
                data["taskId"] = task_key
        return data

    def to_dict(self) -> dict[str, Any]:
        """Canonical camelCase dict; optional fields omitted, ``payload`` always present."""
        out = self.model_dump(mode="json", by_alias=True, exclude_none=True, exclude={"payload"})
        out["payload"] = self.payload
        return out

    def callback_url(self, phase: str) -> str:
        """``{callbackBaseUrl without trailing /}/api/v1/tasks/{taskId}/{phase}``."""
        return f"{self.callback_base_url.rstrip('/')}/api/v1/tasks/{self.task_id}/{phase}"

    def heartbeat_interval_secs(self) -> float:
        """Heartbeat cadence: timeout / 5 clamped to [5, 60] s; 300 s when absent.

        Raises ``ValueError`` when the timeout is below the 30 s floor (section 2.7).
        """
        timeout = self.heartbeat_timeout_sec
        if timeout is None:
            timeout = DEFAULT_HEARTBEAT_TIMEOUT_SECS
        if timeout < MIN_HEARTBEAT_TIMEOUT_SECS:
            raise ValueError(
                f"heartbeatTimeoutSec={timeout} is below the {MIN_HEARTBEAT_TIMEOUT_SECS}s floor"
            )
        return min(60.0, max(5.0, timeout / 5))
