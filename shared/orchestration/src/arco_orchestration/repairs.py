"""Sweeper repairs that need a guard of their own around the facts of ``facts.py``: the
candidate is re-checked under lock, so a sweep acting on a scan that is a moment old never
undoes fresher work (a heartbeat that just arrived, another sweeper's re-send)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from arco_orchestration.delivery import mark_redispatch
from arco_orchestration.facts import (
    fail_attempt,
    lock_run,
    note_redispatch,
    notify_dispatcher,
    record_enqueued,
)
from arco_orchestration.models import Task
from arco_orchestration.scope import Scope
from arco_orchestration.states import OutboxStatus, TaskState


def reap_silent_task(
    session: Session,
    scope: Scope,
    run_id: str,
    task_key: str,
    *,
    attempt: int,
    attempt_id: str,
    deadline_before: datetime,
    reason: str,
    now: datetime,
) -> bool:
    """R4: fail a RUNNING attempt whose heartbeat deadline is still before
    ``deadline_before`` once its run and task rows are locked (a heartbeat takes no run
    lock, so the task row is locked too). Returns whether the attempt failed."""
    if lock_run(session, scope, run_id) is None:
        return False
    task = session.scalars(
        select(Task)
        .where(
            Task.run_id == run_id,
            Task.task_key == task_key,
            Task.tenant_id == scope.tenant_id,
            Task.workspace_id == scope.workspace_id,
        )
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one_or_none()
    if (
        task is None
        or task.state != TaskState.RUNNING
        or task.attempt != attempt
        or task.heartbeat_deadline is None
        or task.heartbeat_deadline >= deadline_before
    ):
        return False
    return fail_attempt(
        session,
        scope,
        run_id,
        task_key,
        attempt=attempt,
        attempt_id=attempt_id,
        reason=reason,
        now=now,
    )


def record_redispatch(
    session: Session,
    scope: Scope,
    run_id: str,
    dispatch_id: str,
    *,
    expected_redispatch_count: int,
    cloud_task_id: str,
    envelope_keys: Sequence[str],
    push_delivery: bool,
    deduplicated: bool,
    now: datetime,
) -> bool:
    """Record a sweeper re-send the provider accepted: a PENDING row gets its first
    acknowledgement, a CREATED row of the push queue is queued for delivery again, and the
    re-send is counted with its clock restarted. Nothing changes (``False``) when another
    sweeper re-sent it first, the attempt was consumed, or a delivery is in flight.
    Locks the run first, as every fact does (the history insert checks the run's key)."""
    if lock_run(session, scope, run_id) is None:
        return False
    status = mark_redispatch(
        session,
        scope,
        dispatch_id,
        expected_redispatch_count=expected_redispatch_count,
        now=now,
        requeue=push_delivery,
    )
    if status is None:
        return False
    if status is OutboxStatus.PENDING:
        record_enqueued(
            session,
            scope,
            dispatch_id,
            cloud_task_id=cloud_task_id,
            now=now,
            envelope_keys=envelope_keys,
            push_delivery=push_delivery,
            deduplicated=deduplicated,
        )
    row = note_redispatch(session, scope, dispatch_id, now=now, cloud_task_id=cloud_task_id)
    if row is None:  # pragma: no cover - the row was locked above
        return False
    # Wake dispatchers: with the push queue they deliver the row again at once.
    notify_dispatcher(session, run_id)
    return True
