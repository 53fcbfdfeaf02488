"""The bodies of the API, as pydantic models: one source for the OpenAPI document and the wire.

Response models are what the run and manifest routes serialise through (``response_model``),
so a field is on the wire exactly when it is documented; they forbid unknown keys, so a body
built with an undocumented field fails loudly. Routes serialise with ``exclude_unset``: a key
the use case left out stays out, a ``null`` it set stays ``null``.

Request models only document: the routes read raw bodies (to answer 413/415/400 before any
parsing) and the parsers of ``arco_orchestration`` give upstream's error messages. The worker
callbacks answer with bodies built by ``arco_orchestration.callbacks`` (their hot path stays
free of a validation pass); their acknowledgement models document those.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

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
    metadata: Any = Field(description="the request's metadata, object keys sorted")


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
