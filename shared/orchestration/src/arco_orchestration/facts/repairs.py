"""The sweeper's repairs (arco-orchestration 4.1 R2 and R4, with design D7). Each re-checks
its candidate under lock, so a sweep acting on a scan that is a moment old never undoes
fresher work (a heartbeat that just arrived, another sweeper's re-send)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from arco_envelope import dispatch_id as make_dispatch_id
from arco_orchestration.facts.attempts import ANTI_ENTROPY_WORKER, Completion, apply_completion
from arco_orchestration.facts.dispatch import DispatchRequest, Enqueued, acknowledge
from arco_orchestration.facts.store import (
    EventKind,
    add_event,
    get_task,
    lock_outbox_row,
    lock_run,
    lock_task,
    new_outbox_row,
    notify_dispatcher,
)
from arco_orchestration.models import DispatchOutbox
from arco_orchestration.scope import Scope
from arco_orchestration.states import (
    RETRY_BACKOFF_BASE,
    DeliveryState,
    OutboxStatus,
    TaskState,
)


def fail_attempt(
    session: Session,
    scope: Scope,
    run_id: str,
    task_key: str,
    *,
    attempt: int,
    attempt_id: str,
    reason: str,
    now: datetime,
    retry_base: timedelta = RETRY_BACKOFF_BASE,
) -> bool:
    """A synthetic FAILED completion with no error object (so retryable, T13) for an
    attempt that went silent (R4 reaper: ``heartbeat_timeout_anti_entropy``) or could not
    be delivered (``dispatch_timeout``)."""
    run = lock_run(session, scope, run_id)
    task = get_task(session, scope, run_id, task_key) if run else None
    if run is None or task is None or attempt < 1:
        return False
    if task.attempt != attempt or (task.attempt_id or "") != attempt_id:
        return False
    return apply_completion(
        session,
        run,
        task,
        Completion(outcome="FAILED", worker_id=ANTI_ENTROPY_WORKER, error_message=reason),
        now=now,
        retry_base=retry_base,
    )


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
    retry_base: timedelta = RETRY_BACKOFF_BASE,
) -> bool:
    """R4: fail a RUNNING attempt whose heartbeat deadline is still before
    ``deadline_before`` once its run and task rows are locked (a heartbeat takes no run
    lock, so the task row is locked too). Returns whether the attempt failed."""
    if lock_run(session, scope, run_id) is None:
        return False
    task = lock_task(session, scope, run_id, task_key)
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
        retry_base=retry_base,
    )


def recreate_dispatch(
    session: Session, scope: Scope, run_id: str, task_key: str, *, now: datetime
) -> DispatchRequest | None:
    """R2 for a DISPATCHED task whose outbox row is missing: recreate the PENDING row of
    the current attempt (same dispatch id and attempt id)."""
    run = lock_run(session, scope, run_id)
    task = get_task(session, scope, run_id, task_key) if run else None
    if run is None or task is None or task.state != TaskState.DISPATCHED or not task.attempt_id:
        return None
    dispatch = make_dispatch_id(run_id, task_key, task.attempt)
    if session.get(DispatchOutbox, dispatch) is not None:
        return None
    row = new_outbox_row(
        session,
        task,
        dispatch_id=dispatch,
        attempt=task.attempt,
        attempt_id=task.attempt_id,
        now=now,
    )
    notify_dispatcher(session, run_id)
    return DispatchRequest(
        dispatch_id=dispatch,
        run_id=run_id,
        task_key=task_key,
        attempt=row.attempt,
        attempt_id=row.attempt_id,
        worker_queue=row.worker_queue,
    )


def _requeue(row: DispatchOutbox, now: datetime) -> bool:
    """Queue a CREATED row of the push queue for delivery again, unless a delivery of it
    is in flight (its lease has not expired)."""
    if row.lease_owner is not None and row.lease_expires_at and row.lease_expires_at > now:
        return False
    row.delivery_state = DeliveryState.QUEUED.value
    row.next_delivery_at = now
    row.delivery_attempts = 0
    row.lease_owner = None
    row.lease_expires_at = None
    return True


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
    """R2: record a sweeper re-send of a stuck DISPATCHED attempt that the provider
    accepted, the one re-dispatch path. A PENDING row gets its first acknowledgement, a
    CREATED row of the push queue (``push_delivery``) is queued for delivery again, and the
    re-send is counted with its clock restarted, so the next one waits a full backoff.
    Nothing changes (``False``) when another sweeper re-sent it first (the count is no
    longer ``expected_redispatch_count``), the attempt was consumed, or a delivery is in
    flight. Locks the run first, as every fact does (the history insert checks its key)."""
    if lock_run(session, scope, run_id) is None:
        return False
    row = lock_outbox_row(session, scope, dispatch_id)
    if row is None or row.run_id != run_id or row.redispatch_count != expected_redispatch_count:
        return False
    status = OutboxStatus(row.status)
    if push_delivery and status is OutboxStatus.CREATED and not _requeue(row, now):
        return False
    task = get_task(session, scope, row.run_id, row.task_key)
    if status is OutboxStatus.PENDING:
        enqueued = Enqueued(dispatch_id, run_id, cloud_task_id, envelope_keys, deduplicated)
        acknowledge(session, row, task, enqueued, now=now, push_delivery=push_delivery)
    row.redispatch_count += 1
    row.created_at = now
    row.cloud_task_id = cloud_task_id
    row.row_version += 1
    if task is not None:
        add_event(
            session,
            task,
            EventKind.REDISPATCHED,
            now,
            from_state=task.state,
            detail={"dispatchId": dispatch_id, "redispatch": row.redispatch_count},
        )
    # Wake dispatchers: with the push queue they deliver the row again at once.
    notify_dispatcher(session, run_id)
    return True
