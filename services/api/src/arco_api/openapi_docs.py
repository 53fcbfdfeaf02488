"""The OpenAPI description of what the routes really send and answer.

The routes read raw bodies (to answer 413/415/400 before any parsing) and return plain dicts,
so FastAPI cannot infer their bodies. These models exist only to document them: nothing
validates or serialises through them, which keeps the wire format exactly what the handlers
build. Response models forbid unknown keys so that the bad-input suite, which checks every
answer against this document, notices a field added without being documented.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from arco_envelope import HeartbeatRequest, TaskCompletedRequest, TaskStartedRequest

USER_SECURITY = "userBearer"
TASK_SECURITY = "taskToken"

# --- shared shapes -----------------------------------------------------------------------------


class _Doc(BaseModel):
    """camelCase on the wire, like every body of the API."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class _OpenDoc(BaseModel):
    """A request body: unknown keys are ignored by the parsers, so they are allowed here."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")


class RequestIssue(_Doc):
    loc: list[str]
    msg: str


class ApiErrorBody(_Doc):
    """Error of the user and system routes. Request-schema mismatches (422) add ``error`` and
    ``detail``; conflicts may add ``details``."""

    code: str = Field(description="BAD_REQUEST, UNAUTHORIZED, NOT_FOUND, CONFLICT, ...")
    message: str
    request_id: str | None = None
    error: str | None = None
    detail: list[RequestIssue] | None = None
    details: dict[str, Any] | None = None


class BodyIssue(_Doc):
    loc: list[str]
    msg: str
    type: str


class CallbackErrorBody(_Doc):
    """Error of the worker callbacks (arco-contract 5.3); ``message`` starts with ``error``."""

    error: str = Field(description="invalid_token, task_not_found, attempt_mismatch, ...")
    message: str
    state: str | None = None
    expected_attempt: int | None = None
    received_attempt: int | None = None
    expected_attempt_id: str | None = None
    received_attempt_id: str | None = None
    detail: list[BodyIssue] | None = None


class StorageIdErrorBody(_Doc):
    """A callback whose token (or debug headers) names an invalid tenant or workspace id."""

    code: str
    message: str


# --- system ------------------------------------------------------------------------------------


class Health(_Doc):
    status: str


class Readiness(_Doc):
    ready: bool
    message: str | None = None


class VersionInfo(_Doc):
    service: str
    package_version: str
    code_version: str


# --- manifests ---------------------------------------------------------------------------------


class ManifestAssetKey(_OpenDoc):
    namespace: str
    name: str


class ManifestRequest(_OpenDoc):
    """A manifest as arco's SDK ``deploy`` sends it; the format and its rules: docs/manifest.md."""

    manifest_version: str
    code_version_id: str
    assets: list[dict[str, Any]]
    git: dict[str, Any] | None = None
    schedules: list[dict[str, Any]] | None = None
    metadata: dict[str, Any] | None = None
    deployed_by: str | None = None


class ManifestDeployed(_Doc):
    manifest_id: str
    workspace_id: str
    code_version_id: str
    fingerprint: str
    asset_count: int
    deployed_at: str


class ManifestListItem(_Doc):
    manifest_id: str
    code_version_id: str
    fingerprint: str
    asset_count: int
    git_branch: str | None
    git_commit: str | None
    deployed_at: str
    deployed_by: str | None


class ManifestList(_Doc):
    manifests: list[ManifestListItem]


class StoredManifest(_Doc):
    manifest_id: str
    tenant_id: str
    workspace_id: str
    manifest_version: str | None
    code_version_id: str
    fingerprint: str
    git: dict[str, Any] | None
    assets: list[Any]
    schedules: list[Any] | None
    deployed_at: str
    deployed_by: str | None
    metadata: dict[str, Any] | None


# --- runs --------------------------------------------------------------------------------------


class PartitionDimension(_OpenDoc):
    key: str
    value: str


class TriggerRunRequest(_OpenDoc):
    """``runKey`` falls back to the ``Idempotency-Key`` header."""

    selection: list[str]
    include_upstream: bool | None = None
    include_downstream: bool | None = None
    partitions: list[PartitionDimension] | None = None
    partition_key: str | None = None
    run_key: str | None = None
    labels: dict[str, str] | None = None


class RerunRunRequest(_OpenDoc):
    mode: str = Field(description="fromFailure or subset")
    selection: list[str] | None = None
    include_upstream: bool | None = None
    include_downstream: bool | None = None
    run_key: str | None = None
    labels: dict[str, str] | None = None


class CancelRunRequest(_OpenDoc):
    reason: str | None = None


class RunTriggered(_Doc):
    run_id: str
    plan_id: str
    state: str
    created: bool
    created_at: str


class RerunTriggered(RunTriggered):
    parent_run_id: str
    rerun_kind: str
    rerun_reason: str


class RunListItem(_Doc):
    run_id: str
    state: str
    created_at: str
    completed_at: str | None = None
    task_count: int
    tasks_succeeded: int
    tasks_failed: int
    parent_run_id: str | None = None
    rerun_kind: str | None = None


class RunList(_Doc):
    runs: list[RunListItem]
    next_cursor: str | None = None


class RetryAttribution(_Doc):
    retries: int
    reason: str


class SkipAttribution(_Doc):
    upstream_task_key: str
    upstream_resolution: str


class TaskSummary(_Doc):
    task_key: str
    asset_key: str | None = None
    state: str
    attempt: int
    started_at: str | None = None
    completed_at: str | None = None
    error_message: str | None = None
    execution_lineage_ref: str | None = None
    delta_table: str | None = None
    delta_version: int | None = None
    delta_partition: str | None = None
    retry_attribution: RetryAttribution | None = None
    skip_attribution: SkipAttribution | None = None
    output_visibility_state: str | None = None
    published_at: str | None = None
    publish_error: str | None = None


class TaskCounts(_Doc):
    total: int
    pending: int
    queued: int
    running: int
    succeeded: int
    failed: int
    skipped: int
    cancelled: int


class RunDetail(_Doc):
    run_id: str
    workspace_id: str
    plan_id: str
    state: str
    created_at: str
    started_at: str | None = None
    completed_at: str | None = None
    tasks: list[TaskSummary]
    task_counts: TaskCounts
    labels: dict[str, str]
    parent_run_id: str | None = None
    rerun_kind: str | None = None
    rerun_reason: str | None = None


class RunCancelled(_Doc):
    run_id: str
    state: str
    cancelled_at: str


class AttemptStates(_Doc):
    attempt: int
    attempt_id: str | None
    states: list[str]


class TaskEventView(_Doc):
    kind: str
    attempt: int
    attempt_id: str | None = None
    from_state: str | None = None
    to_state: str | None = None
    at: str
    detail: Any = None


class DispatchView(_Doc):
    dispatch_id: str
    attempt: int
    status: str
    cloud_task_id: str | None = None
    delivery_state: str | None = None
    delivery_attempts: int | None = None
    last_delivery_status: int | None = None
    last_delivery_error: str | None = None
    redispatch_count: int | None = None
    created_at: str | None = None
    delivered_at: str | None = None


class TaskDetail(_Doc):
    """Design D3: stored and public state, attempts, history and delivery of one task."""

    run_id: str
    task_key: str
    task_id: str
    asset_key: str | None = None
    partition_key: str | None = None
    state: str
    stored_state: str
    attempt: int
    attempt_id: str | None = None
    max_attempts: int
    heartbeat_timeout_sec: int | None = None
    ready_at: str | None = None
    dispatched_at: str | None = None
    started_at: str | None = None
    last_heartbeat_at: str | None = None
    completed_at: str | None = None
    retry_not_before: str | None = None
    progress_pct: int | None = None
    progress_message: str | None = None
    error_message: str | None = None
    error: dict[str, Any] | None = None
    output: dict[str, Any] | None = None
    metrics: dict[str, Any] | None = None
    output_visibility_state: str | None = None
    attempts: list[AttemptStates]
    history: list[TaskEventView]
    dispatches: list[DispatchView]


class RunTasks(_Doc):
    run_id: str
    tasks: list[TaskDetail]


# --- logs --------------------------------------------------------------------------------------


class LogUploadRequest(_OpenDoc):
    task_key: str
    attempt: int = Field(ge=1)
    stdout: str | None = None
    stderr: str | None = None


class LogUploaded(_Doc):
    path: str
    size_bytes: int


# --- worker callbacks --------------------------------------------------------------------------


class TaskStartedAck(_Doc):
    acknowledged: bool
    server_time: str


class HeartbeatAck(_Doc):
    acknowledged: bool
    should_cancel: bool
    cancel_reason: str | None = None
    server_time: str
    task_token: str | None = Field(default=None, description="a fresh token near expiry (D8)")
    token_expires_at: str | None = None


class TaskCompletedAck(_Doc):
    acknowledged: bool
    final_state: str
    server_time: str


_DOC_MODELS: tuple[type[BaseModel], ...] = (
    ApiErrorBody,
    CallbackErrorBody,
    StorageIdErrorBody,
    Health,
    Readiness,
    VersionInfo,
    ManifestRequest,
    ManifestDeployed,
    ManifestList,
    StoredManifest,
    TriggerRunRequest,
    RerunRunRequest,
    CancelRunRequest,
    RunTriggered,
    RerunTriggered,
    RunList,
    RunDetail,
    RunCancelled,
    TaskDetail,
    RunTasks,
    LogUploadRequest,
    LogUploaded,
    TaskStartedAck,
    HeartbeatAck,
    TaskCompletedAck,
    # The worker's request bodies are the contract's own models (arco_envelope).
    TaskStartedRequest,
    HeartbeatRequest,
    TaskCompletedRequest,
)

_REF = "#/components/schemas/{model}"
UNAVAILABLE = "Not ready, or the database is unreachable: retry after Retry-After seconds"

# --- route declarations ------------------------------------------------------------------------

_DESCRIPTIONS = {
    200: "OK",
    201: "Created",
    400: "Bad request: malformed JSON, a rule of the request violated, or an invalid id",
    401: "Missing, invalid or expired credentials",
    403: "The credential does not cover this resource (a task token of another attempt)",
    404: "Not found (also a workspace other than the caller's)",
    409: "Conflict with the current state",
    410: "The task is no longer active",
    413: "Request body too large",
    415: "Content-Type is not application/json",
    422: "The request does not match the schema",
    503: UNAVAILABLE,
}


def ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": _REF.format(model=model.__name__)}


def _json(schema: dict[str, Any], status: int, description: str | None = None) -> dict[str, Any]:
    return {
        "description": description or _DESCRIPTIONS[status],
        "content": {"application/json": {"schema": schema}},
    }


def user_responses(
    ok: dict[int, type[BaseModel]], errors: Iterable[int] = (400, 401, 404, 422)
) -> dict[int | str, dict[str, Any]]:
    """Responses of a route behind user authentication: ``ok`` bodies, then error bodies."""
    out: dict[int | str, dict[str, Any]] = {
        status: _json(ref(model), status) for status, model in ok.items()
    }
    out.update({status: _json(ref(ApiErrorBody), status) for status in errors})
    return out


def callback_responses(ack: type[BaseModel]) -> dict[int | str, dict[str, Any]]:
    out: dict[int | str, dict[str, Any]] = {200: _json(ref(ack), 200)}
    for status in (401, 404, 409, 410, 413, 415, 422):
        out[status] = _json(ref(CallbackErrorBody), status)
    out[400] = _json({"anyOf": [ref(CallbackErrorBody), ref(StorageIdErrorBody)]}, 400)
    return out


def text_response(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "description": description,
        "content": {"text/plain": {"schema": {"type": "string"}}},
    }
    if headers:
        out["headers"] = headers
    return out


def json_response(model: type[BaseModel], status: int) -> dict[str, Any]:
    return _json(ref(model), status)


def json_body(model: type[BaseModel], *, user: bool = True) -> dict[str, Any]:
    """``openapi_extra`` of a route that reads a JSON body itself, and its security."""
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": ref(model)}},
        },
        "security": [{USER_SECURITY if user else TASK_SECURITY: []}],
    }


USER_AUTH: dict[str, Any] = {"security": [{USER_SECURITY: []}]}
IDEMPOTENCY_KEY: dict[str, Any] = {
    "in": "header",
    "name": "Idempotency-Key",
    "required": False,
    "schema": {"type": "string"},
}


def install(app: FastAPI) -> None:
    """Complete the generated document: the documentation-only models, security schemes."""

    def build() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = get_openapi(
            title=app.title,
            version=app.version,
            openapi_version=app.openapi_version,
            routes=app.routes,
        )
        # Any route answers 503 (Retry-After) while the database is unreachable.
        for operations in document.get("paths", {}).values():
            for operation in operations.values():
                operation.setdefault("responses", {}).setdefault(
                    "503", _json(ref(ApiErrorBody), 503, UNAVAILABLE)
                )
        components: dict[str, Any] = document.setdefault("components", {})
        schemas: dict[str, Any] = components.setdefault("schemas", {})
        for model in _DOC_MODELS:
            schema = model.model_json_schema(by_alias=True, ref_template=_REF)
            schemas.update(schema.pop("$defs", {}))
            schemas[model.__name__] = schema
        # FastAPI registers its own 422 body for routes with parameters; ours replaces it.
        for unused in ("HTTPValidationError", "ValidationError"):
            schemas.pop(unused, None)
        components["securitySchemes"] = {
            USER_SECURITY: {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
            TASK_SECURITY: {
                "type": "http",
                "scheme": "bearer",
                "bearerFormat": "JWT",
                "description": "the per-attempt task token of the dispatch envelope",
            },
        }
        app.openapi_schema = document
        return document

    openapi: Callable[[], dict[str, Any]] = build
    app.openapi = openapi  # type: ignore[method-assign]
