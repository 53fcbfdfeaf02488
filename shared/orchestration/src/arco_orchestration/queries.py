"""Read views of runs and tasks (arco-orchestration section 6, plus design D3's task views).

Views return camelCase JSON-ready dicts with optional fields omitted.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, bindparam, func, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import BindParameter

from arco_envelope import callback_task_id, format_timestamp, parse_timestamp
from arco_orchestration.models import (
    DispatchOutbox,
    Run,
    Task,
    TaskDependency,
    TaskEvent,
    key_scope,
)
from arco_orchestration.planning.rules import LABEL_PARENT_RUN_ID, LABEL_RERUN_KIND
from arco_orchestration.scope import Scope
from arco_orchestration.states import (
    EdgeResolution,
    PublicRunState,
    RunState,
    TaskState,
    VisibilityState,
    public_run_state,
    public_task_state,
)

MAX_OFFSET = 2**63 - 1
# Output visibility states that gate a run's public state (``_visibility_flags``).
GATING_VISIBILITY = (VisibilityState.FAILED, VisibilityState.PENDING)


class InvalidCursor(ValueError):  # noqa: N818 - reads as a sentence
    """A list cursor that does not decode."""


def _ts(value: datetime | None) -> str | None:
    return format_timestamp(value) if value is not None else None


def _compact(values: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}


def get_run(session: Session, scope: Scope, run_id: str) -> Run | None:
    stmt = select(Run).where(
        Run.run_id == run_id, key_scope(Run, scope.tenant_id, scope.workspace_id)
    )
    return session.scalars(stmt).one_or_none()


@dataclass(frozen=True)
class VisibilityFlags:
    failed: bool = False
    pending: bool = False


def _visibility_flags(session: Session, run_ids: list[str]) -> dict[str, VisibilityFlags]:
    """Required-output visibility problems per run (they gate the public run state)."""
    if not run_ids:
        return {}
    stmt = (
        select(Task.run_id, Task.output_visibility_state)
        .where(
            Task.run_id.in_(run_ids),
            Task.requires_visible_output.is_(True),
            Task.state == TaskState.SUCCEEDED,
            Task.output_visibility_state.in_(GATING_VISIBILITY),
        )
        .distinct()
    )
    flags: dict[str, VisibilityFlags] = {}
    for run_id, visibility in session.execute(stmt):
        current = flags.get(run_id, VisibilityFlags())
        flags[run_id] = VisibilityFlags(
            failed=current.failed or visibility == VisibilityState.FAILED,
            pending=current.pending or visibility == VisibilityState.PENDING,
        )
    return flags


def run_public_state(run: Run, flags: VisibilityFlags) -> PublicRunState:
    return public_run_state(
        RunState(run.state),
        cancel_requested=run.cancel_requested,
        required_output_failed=flags.failed,
        required_output_pending=flags.pending,
    )


def public_state_of(session: Session, run: Run) -> PublicRunState:
    return run_public_state(
        run, _visibility_flags(session, [run.run_id]).get(run.run_id, VisibilityFlags())
    )


def encode_cursor(run: Run) -> str:
    raw = json.dumps({"triggered_at": format_timestamp(run.triggered_at), "run_id": run.run_id})
    return base64.urlsafe_b64encode(raw.encode()).rstrip(b"=").decode()


def decode_cursor(cursor: str) -> tuple[datetime, str] | int:
    """A cursor is opaque base64 JSON; a purely numeric one is a legacy offset."""
    if cursor.isascii() and cursor.isdigit():
        offset = int(cursor)
        if offset > MAX_OFFSET:
            raise InvalidCursor("invalid cursor")
        return offset
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = json.loads(raw)
        return parse_timestamp(data["triggered_at"]), str(data["run_id"])
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise InvalidCursor("invalid cursor") from None


def _labels_extras(run: Run) -> dict[str, Any]:
    labels = run.labels or {}
    return _compact(
        {"parentRunId": labels.get(LABEL_PARENT_RUN_ID), "rerunKind": labels.get(LABEL_RERUN_KIND)}
    )


def _visibility_problem_runs() -> Select[str]:
    """Runs with a succeeded required output that is not visible: the only runs whose public
    state is not the one their stored state and cancel flag give. Few, and read through the
    partial index of migration 0004; its predicate is rendered with literal values so
    PostgreSQL can prove the index applies (a bound parameter hides the value from a generic
    plan)."""
    gating: list[BindParameter[str]] = [
        bindparam(None, state.value, literal_execute=True) for state in GATING_VISIBILITY
    ]
    return select(Task.run_id).where(
        Task.output_visibility_state.in_(gating),
        Task.requires_visible_output.is_(True),
        Task.state == TaskState.SUCCEEDED.value,
    )


def _may_be_in_state(state: PublicRunState) -> ColumnElement[bool]:
    """Stored runs that may have public state ``state`` (``public_run_state``): a superset,
    narrowed by stored state so the index ``(tenant_id, workspace_id, state, triggered_at,
    run_id)`` serves it; the exact public state is still checked on every row read."""
    unfinished = [RunState.TRIGGERED.value, RunState.RUNNING.value]
    if state is PublicRunState.CANCELLING:
        return and_(Run.state.in_(unfinished), Run.cancel_requested.is_(True))
    if state is PublicRunState.PENDING:
        return Run.state == RunState.TRIGGERED.value
    if state is PublicRunState.RUNNING:
        # A succeeded run whose required output is still pending shows as RUNNING.
        return or_(
            Run.state == RunState.RUNNING.value,
            and_(Run.state == RunState.SUCCEEDED.value, Run.run_id.in_(_visibility_problem_runs())),
        )
    if state is PublicRunState.FAILED:
        # So does any run but a cancelled one whose required output failed to publish.
        return or_(
            Run.state == RunState.FAILED.value,
            and_(Run.state != RunState.CANCELLED.value, Run.run_id.in_(_visibility_problem_runs())),
        )
    return Run.state == state.value


def _after(at: datetime, run_id: str) -> ColumnElement[bool]:
    """Rows after ``(at, run_id)`` in newest-first order. ``triggered_at <= at`` is implied by
    the rest; stated alone it lets the index start its scan there instead of at the newest
    run, so a late page costs what the first does."""
    return and_(
        Run.triggered_at <= at,
        or_(Run.triggered_at < at, and_(Run.triggered_at == at, Run.run_id > run_id)),
    )


def list_runs(
    session: Session,
    scope: Scope,
    *,
    limit: int,
    cursor: str | None = None,
    state: PublicRunState | None = None,
) -> dict[str, Any]:
    """Runs newest first (``triggered_at`` desc, then ``run_id`` asc), with an opaque cursor."""
    stmt = select(Run).where(
        Run.tenant_id == scope.tenant_id, Run.workspace_id == scope.workspace_id
    )
    if state is not None:
        stmt = stmt.where(_may_be_in_state(state))
    stmt = stmt.order_by(Run.triggered_at.desc(), Run.run_id.asc())
    offset = 0
    after: tuple[datetime, str] | None = None
    if cursor:
        position = decode_cursor(cursor)
        if isinstance(position, int):
            offset = position
        else:
            after = position
    items: list[dict[str, Any]] = []
    last: Run | None = None
    more = False
    # The public state depends on visibility flags, so the exact filter runs here, on
    # batches read in order; each batch continues after the last row of the one before.
    batch = max(limit * 2, 50)
    while True:
        page = stmt if after is None else stmt.where(_after(*after))
        runs = list(session.scalars(page.offset(offset).limit(batch)))
        offset = 0
        flags = _visibility_flags(session, [run.run_id for run in runs])
        for run in runs:
            public = run_public_state(run, flags.get(run.run_id, VisibilityFlags()))
            if state is not None and public != state:
                last = run
                continue
            if len(items) == limit:
                more = True
                break
            items.append(_run_list_item(run, public))
            last = run
        if more or len(runs) < batch:
            break
        after = (runs[-1].triggered_at, runs[-1].run_id)
    result: dict[str, Any] = {"runs": items}
    if more and last is not None:
        result["nextCursor"] = encode_cursor(last)
    return result


def _run_list_item(run: Run, public: PublicRunState) -> dict[str, Any]:
    return _compact(
        {
            "runId": run.run_id,
            "state": public.value,
            "createdAt": _ts(run.triggered_at),
            "completedAt": _ts(run.completed_at) if public.is_terminal else None,
            "taskCount": run.tasks_total,
            "tasksSucceeded": run.tasks_succeeded,
            "tasksFailed": run.tasks_failed,
            **_labels_extras(run),
        }
    )


def _skip_attribution(edges: list[TaskDependency], task_key: str) -> dict[str, Any] | None:
    incoming = [
        edge
        for edge in edges
        if edge.downstream_key == task_key
        and edge.resolution is not None
        and edge.resolution != EdgeResolution.SUCCESS
    ]
    if not incoming:
        return None
    first = min(
        incoming,
        key=lambda edge: (
            edge.satisfied_at or datetime.max.replace(tzinfo=UTC),
            edge.upstream_key,
        ),
    )
    return {"upstreamTaskKey": first.upstream_key, "upstreamResolution": first.resolution}


def task_summary(task: Task, edges: list[TaskDependency] | None = None) -> dict[str, Any]:
    """Upstream's TaskSummary of a run detail."""
    state = TaskState(task.state)
    return _compact(
        {
            "taskKey": task.task_key,
            "assetKey": task.asset_key,
            "state": public_task_state(state).value,
            "attempt": task.attempt,
            "startedAt": _ts(task.started_at),
            "completedAt": _ts(task.completed_at),
            "errorMessage": task.error_message,
            "executionLineageRef": task.execution_lineage_ref,
            "deltaTable": task.delta_table,
            "deltaVersion": task.delta_version,
            "deltaPartition": task.delta_partition,
            "retryAttribution": (
                {"retries": task.attempt - 1, "reason": "prior_attempt_failed"}
                if task.attempt > 1
                else None
            ),
            "skipAttribution": (
                _skip_attribution(edges or [], task.task_key)
                if state is TaskState.SKIPPED
                else None
            ),
            "outputVisibilityState": task.output_visibility_state,
            "publishedAt": _ts(task.published_at),
            "publishError": task.publish_error,
        }
    )


def _tasks_of(session: Session, run: Run) -> list[Task]:
    stmt = select(Task).where(Task.run_id == run.run_id).order_by(Task.task_key)
    return list(session.scalars(stmt))


def _edges_of(session: Session, run: Run) -> list[TaskDependency]:
    stmt = select(TaskDependency).where(TaskDependency.run_id == run.run_id)
    return list(session.scalars(stmt))


def run_detail(session: Session, scope: Scope, run_id: str) -> dict[str, Any] | None:
    """Upstream's RunResponse, or ``None`` when the run does not exist in this scope."""
    run = get_run(session, scope, run_id)
    if run is None:
        return None
    tasks = _tasks_of(session, run)
    edges = _edges_of(session, run)
    public = public_state_of(session, run)
    publics = [public_task_state(TaskState(task.state)) for task in tasks]
    started = [task.started_at for task in tasks if task.started_at is not None]
    counts = {
        "total": run.tasks_total,
        "pending": sum(1 for p in publics if p.value == "PENDING"),
        "queued": sum(1 for p in publics if p.value == "QUEUED"),
        "running": sum(1 for p in publics if p.value == "RUNNING"),
        "succeeded": run.tasks_succeeded,
        "failed": run.tasks_failed,
        "skipped": run.tasks_skipped,
        "cancelled": run.tasks_cancelled,
    }
    return _compact(
        {
            "runId": run.run_id,
            "workspaceId": run.workspace_id,
            "planId": run.plan_id,
            "state": public.value,
            "createdAt": _ts(run.triggered_at),
            "startedAt": _ts(min(started)) if started else None,
            "completedAt": _ts(run.completed_at) if public.is_terminal else None,
            "tasks": [task_summary(task, edges) for task in tasks],
            "taskCounts": counts,
            "labels": dict(run.labels or {}),
            **_labels_extras(run),
            "rerunReason": run.rerun_reason,
        }
    )


def task_detail(
    task: Task, *, history: list[TaskEvent], outbox: list[DispatchOutbox]
) -> dict[str, Any]:
    """Design D3: stored and public state, attempt, timestamps, error, attempt history and
    delivery status, so ``DISPATCHED -> RUNNING -> terminal`` is visible per task."""
    state = TaskState(task.state)
    attempts: dict[int, dict[str, Any]] = {}
    for event in history:
        if event.attempt == 0:
            continue
        entry = attempts.setdefault(
            event.attempt, {"attempt": event.attempt, "attemptId": event.attempt_id, "states": []}
        )
        if event.to_state and (not entry["states"] or entry["states"][-1] != event.to_state):
            entry["states"].append(event.to_state)
    return _compact(
        {
            "runId": task.run_id,
            "taskKey": task.task_key,
            "taskId": callback_task_id(task.run_id, task.task_key),
            "assetKey": task.asset_key,
            "partitionKey": task.partition_key,
            "state": public_task_state(state).value,
            "storedState": state.value,
            "attempt": task.attempt,
            "attemptId": task.attempt_id,
            "maxAttempts": task.max_attempts,
            "heartbeatTimeoutSec": task.heartbeat_timeout_sec,
            "readyAt": _ts(task.ready_at),
            "dispatchedAt": _ts(task.dispatched_at),
            "startedAt": _ts(task.started_at),
            "lastHeartbeatAt": _ts(task.last_heartbeat_at),
            "completedAt": _ts(task.completed_at),
            "retryNotBefore": _ts(task.retry_not_before),
            "progressPct": task.progress_pct,
            "progressMessage": task.progress_message,
            "errorMessage": task.error_message,
            "error": task.error,
            "output": task.output,
            "metrics": task.metrics,
            "outputVisibilityState": task.output_visibility_state,
            "attempts": list(attempts.values()),
            "history": [
                _compact(
                    {
                        "kind": event.kind,
                        "attempt": event.attempt,
                        "attemptId": event.attempt_id,
                        "fromState": event.from_state,
                        "toState": event.to_state,
                        "at": _ts(event.at),
                        "detail": event.detail,
                    }
                )
                for event in history
            ],
            "dispatches": [
                _compact(
                    {
                        "dispatchId": row.dispatch_id,
                        "attempt": row.attempt,
                        "status": row.status,
                        "cloudTaskId": row.cloud_task_id,
                        "deliveryState": row.delivery_state,
                        "deliveryAttempts": row.delivery_attempts,
                        "lastDeliveryStatus": row.last_delivery_status,
                        "lastDeliveryError": row.last_delivery_error,
                        "redispatchCount": row.redispatch_count,
                        "createdAt": _ts(row.created_at),
                        "deliveredAt": _ts(row.delivered_at),
                    }
                )
                for row in outbox
            ],
        }
    )


def _history(session: Session, task: Task) -> list[TaskEvent]:
    stmt = (
        select(TaskEvent)
        .where(TaskEvent.run_id == task.run_id, TaskEvent.task_key == task.task_key)
        .order_by(TaskEvent.id)
    )
    return list(session.scalars(stmt))


def _outbox(session: Session, task: Task) -> list[DispatchOutbox]:
    stmt = (
        select(DispatchOutbox)
        .where(DispatchOutbox.run_id == task.run_id, DispatchOutbox.task_key == task.task_key)
        .order_by(DispatchOutbox.attempt)
    )
    return list(session.scalars(stmt))


def list_task_details(session: Session, scope: Scope, run_id: str) -> list[dict[str, Any]] | None:
    run = get_run(session, scope, run_id)
    if run is None:
        return None
    # Two queries for the whole run, not two per task: a run of 500 tasks was 1,000 round
    # trips (bench.scale).
    history: dict[str, list[TaskEvent]] = {}
    events = select(TaskEvent).where(TaskEvent.run_id == run.run_id).order_by(TaskEvent.id)
    for event in session.scalars(events):
        history.setdefault(event.task_key, []).append(event)
    outbox: dict[str, list[DispatchOutbox]] = {}
    rows = (
        select(DispatchOutbox)
        .where(DispatchOutbox.run_id == run.run_id)
        .order_by(DispatchOutbox.task_key, DispatchOutbox.attempt)
    )
    for row in session.scalars(rows):
        outbox.setdefault(row.task_key, []).append(row)
    return [
        task_detail(
            task,
            history=history.get(task.task_key, []),
            outbox=outbox.get(task.task_key, []),
        )
        for task in _tasks_of(session, run)
    ]


def get_task_detail(
    session: Session, scope: Scope, run_id: str, task_key: str
) -> dict[str, Any] | None:
    if get_run(session, scope, run_id) is None:
        return None
    task = session.get(Task, (run_id, task_key))
    if task is None:
        return None
    return task_detail(task, history=_history(session, task), outbox=_outbox(session, task))


def count_tasks_by_state(session: Session) -> dict[str, int]:
    """Tasks per stored state, for the metrics gauge."""
    stmt = select(Task.state, func.count()).group_by(Task.state)
    return {state: int(count) for state, count in session.execute(stmt)}


def public_states(session: Session, runs: list[Run]) -> dict[str, PublicRunState]:
    """The public state of each run, with one visibility query for all of them."""
    flags = _visibility_flags(session, [run.run_id for run in runs])
    return {
        run.run_id: run_public_state(run, flags.get(run.run_id, VisibilityFlags())) for run in runs
    }
