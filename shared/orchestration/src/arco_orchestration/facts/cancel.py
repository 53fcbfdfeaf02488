"""RunCancelRequested (T10), and the D7 repair that cancels what a cancel left behind."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session

from arco_orchestration.facts.graph import cancel_task, finish_run_if_done
from arco_orchestration.facts.store import get_task, lock_run
from arco_orchestration.facts.transitions import TaskTransition, allows
from arco_orchestration.models import Run, Task
from arco_orchestration.scope import Scope
from arco_orchestration.states import CANCELLABLE_TASK_STATES, RunState


class CancelDisposition(StrEnum):
    CANCELLED = "cancelled"
    ALREADY_REQUESTED = "already_requested"
    ALREADY_TERMINAL = "already_terminal"
    NOT_FOUND = "not_found"


def cancel_run(
    session: Session,
    scope: Scope,
    run_id: str,
    *,
    reason: str | None,
    now: datetime,
) -> tuple[CancelDisposition, Run | None]:
    """RunCancelRequested (T10): every task that has not started is CANCELLED at once;
    RUNNING tasks learn of it through the heartbeat's ``shouldCancel``."""
    run = lock_run(session, scope, run_id)
    if run is None:
        return CancelDisposition.NOT_FOUND, None
    if run.cancel_requested:
        return CancelDisposition.ALREADY_REQUESTED, run
    if RunState(run.state).is_terminal:
        return CancelDisposition.ALREADY_TERMINAL, run
    run.cancel_requested = True
    run.cancel_reason = reason
    run.cancel_requested_at = now
    run.row_version += 1
    stmt = select(Task).where(
        Task.run_id == run_id,
        Task.state.in_([s.value for s in CANCELLABLE_TASK_STATES]),
    )
    for task in session.scalars(stmt):
        cancel_task(session, run, task, now)
    finish_run_if_done(run, now)
    return CancelDisposition.CANCELLED, run


def cancel_unstarted_task(
    session: Session, scope: Scope, run_id: str, task_key: str, *, now: datetime
) -> bool:
    """D7 repair: a READY, DISPATCHED or RETRY_WAIT task of a cancel-requested run is
    CANCELLED (upstream leaves it to be re-dispatched forever)."""
    run = lock_run(session, scope, run_id)
    task = get_task(session, scope, run_id, task_key) if run else None
    if run is None or task is None or not run.cancel_requested:
        return False
    if not allows(task, TaskTransition.CANCEL):
        return False
    cancel_task(session, run, task, now)
    finish_run_if_done(run, now)
    return True
