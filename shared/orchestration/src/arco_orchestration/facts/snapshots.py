"""Session-free snapshots of an outbox row and its task row: what a dispatcher or sweeper
needs to build an envelope and to decide a repair after its transaction has ended (the
provider is called with no transaction open)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from arco_orchestration.facts.store import get_task, get_tasks
from arco_orchestration.models import DispatchOutbox, Task
from arco_orchestration.scope import Scope


@dataclass(frozen=True)
class TaskSnapshot:
    """The task-row fields that scope a dispatch (arco-contract 2.6)."""

    run_id: str
    task_key: str
    state: str
    attempt: int
    attempt_id: str | None
    partition_key: str | None
    heartbeat_timeout_sec: int

    @classmethod
    def of(cls, task: Task) -> TaskSnapshot:
        return cls(
            run_id=task.run_id,
            task_key=task.task_key,
            state=task.state,
            attempt=task.attempt,
            attempt_id=task.attempt_id,
            partition_key=task.partition_key,
            heartbeat_timeout_sec=task.heartbeat_timeout_sec,
        )


@dataclass(frozen=True)
class DispatchSnapshot:
    """One outbox row, with its task row (``None`` when the task row is missing)."""

    dispatch_id: str
    run_id: str
    task_key: str
    attempt: int
    attempt_id: str
    worker_queue: str
    status: str
    created_at: datetime
    enqueued_at: datetime | None
    redispatch_count: int
    delivery_state: str | None
    delivery_attempts: int
    lease_expires_at: datetime | None
    task: TaskSnapshot | None

    @classmethod
    def of(cls, row: DispatchOutbox, task: Task | None) -> DispatchSnapshot:
        return cls(
            dispatch_id=row.dispatch_id,
            run_id=row.run_id,
            task_key=row.task_key,
            attempt=row.attempt,
            attempt_id=row.attempt_id,
            worker_queue=row.worker_queue,
            status=row.status,
            created_at=row.created_at,
            enqueued_at=row.enqueued_at,
            redispatch_count=row.redispatch_count,
            delivery_state=row.delivery_state,
            delivery_attempts=row.delivery_attempts,
            lease_expires_at=row.lease_expires_at,
            task=TaskSnapshot.of(task) if task is not None else None,
        )

    @classmethod
    def of_values(cls, row: Mapping[str, Any], task: Task | None) -> DispatchSnapshot:
        """:meth:`of` for a row not written yet, given by its column values."""
        return cls(
            dispatch_id=row["dispatch_id"],
            run_id=row["run_id"],
            task_key=row["task_key"],
            attempt=row["attempt"],
            attempt_id=row["attempt_id"],
            worker_queue=row["worker_queue"],
            status=row["status"],
            created_at=row["created_at"],
            enqueued_at=row.get("enqueued_at"),
            redispatch_count=row["redispatch_count"],
            delivery_state=row.get("delivery_state"),
            delivery_attempts=row["delivery_attempts"],
            lease_expires_at=row.get("lease_expires_at"),
            task=TaskSnapshot.of(task) if task is not None else None,
        )

    def leased_at(self, now: datetime) -> bool:
        """Whether a delivery of this row is in flight (its lease has not expired)."""
        return self.lease_expires_at is not None and self.lease_expires_at > now


def load_dispatch(session: Session, scope: Scope, dispatch_id: str) -> DispatchSnapshot | None:
    """The outbox row ``dispatch_id`` of this scope with its task row, or ``None`` when the
    row is gone (the attempt started, finished or was cancelled)."""
    row = session.scalars(
        select(DispatchOutbox).where(
            DispatchOutbox.dispatch_id == dispatch_id,
            DispatchOutbox.tenant_id == scope.tenant_id,
            DispatchOutbox.workspace_id == scope.workspace_id,
        )
    ).one_or_none()
    if row is None:
        return None
    return DispatchSnapshot.of(row, get_task(session, scope, row.run_id, row.task_key))


def load_dispatches(
    session: Session, scope: Scope, dispatch_ids: Sequence[str]
) -> dict[str, DispatchSnapshot]:
    """:func:`load_dispatch` for many rows, in two queries; rows that are gone are absent."""
    if not dispatch_ids:
        return {}
    rows = session.scalars(
        select(DispatchOutbox).where(
            DispatchOutbox.dispatch_id.in_(sorted(set(dispatch_ids))),
            DispatchOutbox.tenant_id == scope.tenant_id,
            DispatchOutbox.workspace_id == scope.workspace_id,
        )
    ).all()
    tasks = get_tasks(session, scope, ((row.run_id, row.task_key) for row in rows))
    return {
        row.dispatch_id: DispatchSnapshot.of(row, tasks.get((row.run_id, row.task_key)))
        for row in rows
    }


def load_task(session: Session, scope: Scope, run_id: str, task_key: str) -> TaskSnapshot | None:
    """The task row as a snapshot, or ``None`` when it does not exist in this scope."""
    task = get_task(session, scope, run_id, task_key)
    return TaskSnapshot.of(task) if task is not None else None
