"""The task page: the API's task detail (design D3) arranged for reading: each attempt with
its states and times, the error split into category, message and stack trace, output,
metrics, progress, and the uploaded logs of each attempt."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from arco_envelope import format_timestamp, parse_timestamp
from arco_orchestration import queries
from arco_orchestration.models import TaskLog
from arco_orchestration.scope import Scope
from arco_orchestration.states import PublicTaskState

# Logs are uploaded when an attempt ends; a finished task keeps following them this long.
LOG_GRACE = timedelta(seconds=30)


@dataclass(frozen=True)
class StateChange:
    state: str
    at: str


@dataclass(frozen=True)
class AttemptRow:
    attempt: int
    attempt_id: str | None
    changes: tuple[StateChange, ...]

    @property
    def outcome(self) -> str:
        return self.changes[-1].state if self.changes else "PENDING"


@dataclass(frozen=True)
class ErrorView:
    category: str | None
    message: str
    stack_trace: str | None
    retryable: bool | None


@dataclass(frozen=True)
class AttemptLog:
    attempt: int
    uploaded_at: str
    stdout: str
    stderr: str


@dataclass(frozen=True)
class TaskView:
    task: dict[str, Any]
    attempts: tuple[AttemptRow, ...]
    error: ErrorView | None
    logs: tuple[AttemptLog, ...] = field(default=())
    following: bool = True

    @property
    def state(self) -> str:
        return str(self.task["state"])

    @property
    def is_running(self) -> bool:
        return self.state == PublicTaskState.RUNNING.value


def _attempts(history: list[dict[str, Any]]) -> tuple[AttemptRow, ...]:
    rows: dict[int, AttemptRow] = {}
    for event in history:
        attempt = int(event["attempt"])
        if attempt < 1 or "toState" not in event:
            continue
        row = rows.get(attempt) or AttemptRow(attempt, event.get("attemptId"), ())
        change = StateChange(str(event["toState"]), str(event["at"]))
        if not row.changes or row.changes[-1].state != change.state:
            row = AttemptRow(
                row.attempt, row.attempt_id or event.get("attemptId"), (*row.changes, change)
            )
        rows[attempt] = row
    return tuple(rows[key] for key in sorted(rows))


def _error(task: dict[str, Any]) -> ErrorView | None:
    error = task.get("error")
    if isinstance(error, dict):
        trace = error.get("stackTrace", error.get("stack_trace"))
        retryable = error.get("retryable")
        return ErrorView(
            category=str(error["category"]) if error.get("category") else None,
            message=str(error.get("message") or task.get("errorMessage") or ""),
            stack_trace=str(trace) if trace else None,
            retryable=retryable if isinstance(retryable, bool) else None,
        )
    if task.get("errorMessage"):
        return ErrorView(None, str(task["errorMessage"]), None, None)
    return None


def _following(task: dict[str, Any], logs: tuple[AttemptLog, ...], now: datetime) -> bool:
    """Whether the page keeps refreshing: until the task ended and its last attempt's logs
    arrived, or a while after it ended (an attempt that uploads no logs)."""
    if "completedAt" not in task or task["state"] not in {
        PublicTaskState.SUCCEEDED.value,
        PublicTaskState.FAILED.value,
        PublicTaskState.SKIPPED.value,
        PublicTaskState.CANCELLED.value,
    }:
        return True
    if any(log.attempt == task["attempt"] for log in logs):
        return False
    return now - parse_timestamp(task["completedAt"]) < LOG_GRACE


def load_task_view(
    session: Session, scope: Scope, run_id: str, task_key: str, now: datetime
) -> TaskView | None:
    task = queries.get_task_detail(session, scope, run_id, task_key)
    if task is None:
        return None
    rows = session.scalars(
        select(TaskLog)
        .where(
            TaskLog.run_id == run_id,
            TaskLog.task_key == task_key,
            TaskLog.tenant_id == scope.tenant_id,
            TaskLog.workspace_id == scope.workspace_id,
        )
        .order_by(TaskLog.attempt)
    )
    logs = tuple(
        AttemptLog(row.attempt, format_timestamp(row.created_at), row.stdout, row.stderr)
        for row in rows
    )
    return TaskView(
        task=task,
        attempts=_attempts(task["history"]),
        error=_error(task),
        logs=logs,
        following=_following(task, logs, now),
    )
