"""One-transaction fact helpers and reads of committed state.

Every helper applies one fact in its own transaction, as the services do, and returns detached
rows (the session factory does not expire on commit), so tests read committed state.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from arco_orchestration import facts
from arco_orchestration.db import Database
from arco_orchestration.models import DispatchOutbox, Run, Task, TaskDependency, TaskEvent
from arco_orchestration.planning import PlannedTask
from arco_orchestration.scope import Scope
from arco_testkit.clock import T0
from arco_testkit.values import SCOPE, WORKER


def planned(
    key: str,
    *depends_on: str,
    partition_key: str | None = None,
    max_attempts: int = 3,
    heartbeat_timeout_sec: int = 300,
    requires_visible_output: bool = True,
) -> PlannedTask:
    """A planned task whose asset key is its task key (as the API plans them)."""
    return PlannedTask(
        key=key,
        asset_key=key,
        depends_on=tuple(depends_on),
        partition_key=partition_key,
        max_attempts=max_attempts,
        heartbeat_timeout_sec=heartbeat_timeout_sec,
        requires_visible_output=requires_visible_output,
    )


def is_postgres(database: Database) -> bool:
    """Whether ``database`` is PostgreSQL (else SQLite)."""
    return database.engine.dialect.name == "postgresql"


def _task(session: Session, run_id: str, key: str, scope: Scope = SCOPE) -> Task:
    task = facts.get_task(session, scope, run_id, key)
    if task is None:
        raise LookupError(f"no task {run_id}/{key}")
    return task


def _locked(session: Session, run_id: str, key: str) -> tuple[Run, Task]:
    run = facts.lock_run(session, SCOPE, run_id)
    if run is None:
        raise LookupError(f"no run {run_id}")
    return run, _task(session, run_id, key)


# --- facts ----------------------------------------------------------------------------------


def trigger(
    database: Database,
    run_id: str,
    tasks: list[PlannedTask],
    *,
    now: datetime = T0,
    scope: Scope = SCOPE,
    labels: dict[str, str] | None = None,
    rerun_reason: str | None = None,
) -> None:
    """RunTriggered and PlanCreated of ``tasks`` at ``now``."""
    with database.transaction() as session:
        facts.trigger_run(
            session,
            scope,
            run_id=run_id,
            plan_id=f"plan-{run_id}",
            tasks=tasks,
            now=now,
            triggered_by="tester",
            labels=labels,
            rerun_reason=rerun_reason,
        )


def request(
    database: Database, run_id: str, key: str, *, now: datetime, scope: Scope = SCOPE
) -> facts.DispatchRequest | None:
    """DispatchRequested, or ``None`` when it does not apply."""
    with database.transaction() as session:
        return facts.request_dispatch(session, scope, run_id, key, now=now)


def dispatch(database: Database, run_id: str, key: str, *, now: datetime) -> facts.DispatchRequest:
    """DispatchRequested that must apply."""
    requested = request(database, run_id, key, now=now)
    assert requested is not None, f"dispatch of {run_id}/{key} did not apply"
    return requested


def enqueue(
    database: Database,
    dispatch_id: str,
    *,
    now: datetime,
    cloud_task_id: str = "d_first",
    push_delivery: bool = False,
    scope: Scope = SCOPE,
) -> bool:
    with database.transaction() as session:
        return facts.record_enqueued(
            session,
            scope,
            dispatch_id,
            cloud_task_id=cloud_task_id,
            now=now,
            envelope_keys=["attempt", "attemptId", "taskToken"],
            push_delivery=push_delivery,
        )


def start(
    database: Database, run_id: str, key: str, *, now: datetime, worker_id: str = WORKER
) -> bool:
    """TaskStarted for the task's current attempt (what the API's /started applies)."""
    with database.transaction() as session:
        run, task = _locked(session, run_id, key)
        return facts.apply_started(session, run, task, worker_id=worker_id, now=now)


def succeeded(output: dict[str, Any] | None = None) -> facts.Completion:
    return facts.Completion(outcome="SUCCEEDED", worker_id=WORKER, output=output)


def failed(*, retryable: bool = True, message: str = "boom") -> facts.Completion:
    return facts.Completion(
        outcome="FAILED",
        worker_id=WORKER,
        error={"category": "USER_CODE", "message": message, "retryable": retryable},
        error_message=message,
        retryable=retryable,
    )


def cancelled() -> facts.Completion:
    return facts.Completion(outcome="CANCELLED", worker_id=WORKER)


def complete(
    database: Database,
    run_id: str,
    key: str,
    completion: facts.Completion | None = None,
    *,
    now: datetime,
    outcome: str = "SUCCEEDED",
    retryable: bool = True,
) -> bool:
    """A completion of the task's current attempt (what the API's /completed applies):
    ``completion``, or a bare one of ``outcome`` (``boom`` as the error of a non-success)."""
    if completion is None:
        completion = facts.Completion(
            outcome=outcome,
            worker_id=WORKER,
            error_message=None if outcome == "SUCCEEDED" else "boom",
            retryable=retryable,
        )
    with database.transaction() as session:
        run, task = _locked(session, run_id, key)
        return facts.apply_completion(session, run, task, completion, now=now)


def heartbeat(database: Database, run_id: str, key: str, *, now: datetime) -> None:
    """A heartbeat of the task's current attempt at ``now``."""
    with database.transaction() as session:
        facts.apply_heartbeat(
            session, _task(session, run_id, key), now=now, progress_pct=None, message=None
        )


def run_task(database: Database, run_id: str, key: str, *, now: datetime) -> None:
    """Dispatch and start the task's next attempt: it is RUNNING afterwards."""
    dispatch(database, run_id, key, now=now)
    assert start(database, run_id, key, now=now)


def finish(
    database: Database, run_id: str, key: str, completion: facts.Completion, *, now: datetime
) -> None:
    """Dispatch, start and complete the task's next attempt."""
    run_task(database, run_id, key, now=now)
    assert complete(database, run_id, key, completion, now=now)


def cancel_run(
    database: Database, run_id: str, *, now: datetime, scope: Scope = SCOPE
) -> facts.CancelDisposition:
    with database.transaction() as session:
        disposition, _run = facts.cancel_run(session, scope, run_id, reason="stop", now=now)
        return disposition


def set_cancel_requested(database: Database, run_id: str) -> None:
    """Flag a run as cancel-requested without cancel_run's T10 sweep: the state of a row that
    escaped it, which the D7 guards must still handle."""
    with database.transaction() as session:
        session.execute(update(Run).where(Run.run_id == run_id).values(cancel_requested=True))


def age(database: Database, run_id: str, key: str, **columns: timedelta) -> None:
    """Move a task's time columns into the past (``ready_at=timedelta(minutes=6)`` means
    READY since six minutes before T0)."""
    with database.transaction() as session:
        task = _task(session, run_id, key)
        for column, delta in columns.items():
            setattr(task, column, T0 - delta)


# --- reads ----------------------------------------------------------------------------------


def load_run(database: Database, run_id: str) -> Run:
    """The run row as stored now."""
    with database.transaction() as session:
        run = session.get(Run, run_id)
        if run is None:
            raise LookupError(f"no run {run_id}")
        return run


def load_task(database: Database, run_id: str, key: str) -> Task:
    """The task row as stored now."""
    with database.transaction() as session:
        task = session.get(Task, (run_id, key))
        if task is None:
            raise LookupError(f"no task {run_id}/{key}")
        return task


def task_states(database: Database, run_id: str) -> dict[str, str]:
    with database.transaction() as session:
        rows = session.scalars(select(Task).where(Task.run_id == run_id))
        return {task.task_key: task.state for task in rows}


def outbox_rows(database: Database, run_id: str) -> list[DispatchOutbox]:
    """The run's outbox rows by task and attempt."""
    with database.transaction() as session:
        stmt = (
            select(DispatchOutbox)
            .where(DispatchOutbox.run_id == run_id)
            .order_by(DispatchOutbox.task_key, DispatchOutbox.attempt)
        )
        return list(session.scalars(stmt))


def outbox_by_dispatch_id(database: Database, run_id: str | None = None) -> list[DispatchOutbox]:
    """Every outbox row (of ``run_id``), by dispatch id."""
    with database.transaction() as session:
        stmt = select(DispatchOutbox).order_by(DispatchOutbox.dispatch_id)
        if run_id is not None:
            stmt = stmt.where(DispatchOutbox.run_id == run_id)
        return list(session.scalars(stmt))


def outbox_row(database: Database, dispatch_id: str) -> DispatchOutbox | None:
    """One outbox row, or ``None`` when it is gone."""
    with database.transaction() as session:
        return session.get(DispatchOutbox, dispatch_id)


def task_events(
    database: Database, run_id: str, key: str, kind: str | None = None
) -> list[TaskEvent]:
    """The task's history (of one ``kind``), oldest first."""
    with database.transaction() as session:
        stmt = select(TaskEvent).where(TaskEvent.run_id == run_id, TaskEvent.task_key == key)
        if kind is not None:
            stmt = stmt.where(TaskEvent.kind == kind)
        return list(session.scalars(stmt.order_by(TaskEvent.id)))


def dependency_edges(database: Database, run_id: str) -> dict[tuple[str, str], TaskDependency]:
    with database.transaction() as session:
        stmt = select(TaskDependency).where(TaskDependency.run_id == run_id)
        return {(edge.upstream_key, edge.downstream_key): edge for edge in session.scalars(stmt)}


def counters(run: Run) -> dict[str, int]:
    return {
        "total": run.tasks_total,
        "completed": run.tasks_completed,
        "succeeded": run.tasks_succeeded,
        "failed": run.tasks_failed,
        "skipped": run.tasks_skipped,
        "cancelled": run.tasks_cancelled,
    }
