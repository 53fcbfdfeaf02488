"""Candidate scans of the dispatcher and the sweeper.

Each scan is one query on an index whose leading column is the state (``ix_tasks_state_*``,
``ix_dispatch_outbox_status_created_at``), bounded by a due time, so its cost follows the
number of candidates and not the size of the tables (design D7). Scans only read keys; the
facts that act on a candidate re-check it under the run lock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, bindparam, or_, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from arco_orchestration.models import DispatchOutbox, Run, Task
from arco_orchestration.scope import Scope
from arco_orchestration.states import OutboxStatus, TaskState


@dataclass(frozen=True)
class TaskRef:
    """One candidate task: its key, the attempt the scan saw, and the value of the scan's
    time column (``ready_at``, ``retry_not_before``, ``dispatched_at`` or
    ``heartbeat_deadline``; the run's ``cancel_requested_at`` for the cancel scan)."""

    run_id: str
    task_key: str
    attempt: int
    attempt_id: str | None
    at: datetime | None


_TaskKeys = Select[str, str, int, str | None, datetime | None]


def _task_refs(session: Session, stmt: _TaskKeys) -> list[TaskRef]:
    return [TaskRef(*row) for row in session.execute(stmt)]


def _task_columns(
    scope: Scope, state: TaskState, at: InstrumentedAttribute[datetime | None]
) -> _TaskKeys:
    return select(Task.run_id, Task.task_key, Task.attempt, Task.attempt_id, at).where(
        Task.state == state.value,
        Task.tenant_id == scope.tenant_id,
        Task.workspace_id == scope.workspace_id,
    )


# The dispatcher's scans run at every cycle: built once, with the scope (and due time) as
# parameters. A statement built per call is compiled from the cache, but its cache key is
# computed anew each time, which costs more CPU than running it.
def _scoped_scan(state: TaskState, at: InstrumentedAttribute[datetime | None]) -> _TaskKeys:
    return select(Task.run_id, Task.task_key, Task.attempt, Task.attempt_id, at).where(
        Task.state == state.value,
        Task.tenant_id == bindparam("tenant"),
        Task.workspace_id == bindparam("workspace"),
    )


_READY = _scoped_scan(TaskState.READY, Task.ready_at).order_by(Task.ready_at)
_DUE_RETRIES = (
    _scoped_scan(TaskState.RETRY_WAIT, Task.retry_not_before)
    .where(or_(Task.retry_not_before <= bindparam("now"), Task.retry_not_before.is_(None)))
    .order_by(Task.retry_not_before)
)
_PENDING = (
    select(DispatchOutbox.dispatch_id)
    .where(
        DispatchOutbox.status == OutboxStatus.PENDING.value,
        DispatchOutbox.tenant_id == bindparam("tenant"),
        DispatchOutbox.workspace_id == bindparam("workspace"),
    )
    .order_by(DispatchOutbox.created_at)
)


def _scope_params(scope: Scope) -> dict[str, Any]:
    return {"tenant": scope.tenant_id, "workspace": scope.workspace_id}


def ready_tasks(
    session: Session, scope: Scope, *, ready_before: datetime | None = None
) -> list[TaskRef]:
    """READY tasks, oldest first; with ``ready_before``, only those READY since before then."""
    if ready_before is None:
        return [TaskRef(*row) for row in session.execute(_READY, _scope_params(scope))]
    stmt = _task_columns(scope, TaskState.READY, Task.ready_at)
    stmt = stmt.where(Task.ready_at < ready_before)
    return _task_refs(session, stmt.order_by(Task.ready_at))


def due_retries(session: Session, scope: Scope, *, now: datetime) -> list[TaskRef]:
    """RETRY_WAIT tasks whose retry is due; no deadline means due now (upstream's legacy
    rows, and a deadline that overflowed)."""
    params = {**_scope_params(scope), "now": now}
    return [TaskRef(*row) for row in session.execute(_DUE_RETRIES, params)]


def dispatched_before(session: Session, scope: Scope, *, before: datetime) -> list[TaskRef]:
    """DISPATCHED tasks whose dispatch was requested before ``before``."""
    stmt = _task_columns(scope, TaskState.DISPATCHED, Task.dispatched_at).where(
        Task.dispatched_at < before
    )
    return _task_refs(session, stmt.order_by(Task.dispatched_at))


def silent_running(session: Session, scope: Scope, *, deadline_before: datetime) -> list[TaskRef]:
    """RUNNING tasks whose heartbeat deadline (last sign of life + timeout) is before
    ``deadline_before``; a task without a deadline is never silent."""
    stmt = _task_columns(scope, TaskState.RUNNING, Task.heartbeat_deadline).where(
        Task.heartbeat_deadline < deadline_before
    )
    return _task_refs(session, stmt.order_by(Task.heartbeat_deadline))


UNSTARTED_STATES = (TaskState.READY, TaskState.DISPATCHED, TaskState.RETRY_WAIT)


def unstarted_of_cancelled_runs(session: Session, scope: Scope) -> list[TaskRef]:
    """READY, DISPATCHED or RETRY_WAIT tasks of runs whose cancel was requested: upstream
    leaves them to be dispatched again and again (arco-orchestration 4.6)."""
    stmt = (
        select(Task.run_id, Task.task_key, Task.attempt, Task.attempt_id, Run.cancel_requested_at)
        .join(Run, Run.run_id == Task.run_id)
        .where(
            Task.state.in_([state.value for state in UNSTARTED_STATES]),
            Task.tenant_id == scope.tenant_id,
            Task.workspace_id == scope.workspace_id,
            Run.cancel_requested.is_(True),
        )
    )
    return _task_refs(session, stmt)


def pending_dispatches(session: Session, scope: Scope) -> list[str]:
    """Dispatch ids of PENDING outbox rows (requested, not yet handed to the provider),
    oldest first."""
    return list(session.scalars(_PENDING, _scope_params(scope)))
