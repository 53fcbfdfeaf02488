"""RunTriggered + PlanCreated (T1), and the run-key reservation that makes a trigger
idempotent."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, cast

from sqlalchemy import Table, insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from arco_orchestration.facts.graph import finish_run_if_done
from arco_orchestration.facts.store import notify_dispatcher
from arco_orchestration.facts.transitions import (
    TASK_TRANSITIONS,
    RunTransition,
    TaskTransition,
    transition,
)
from arco_orchestration.models import Run, RunKey, Task, TaskDependency
from arco_orchestration.scope import Scope


class PlannedTaskLike(Protocol):
    """What planning hands to :func:`trigger_run` for each task."""

    @property
    def key(self) -> str: ...
    @property
    def asset_key(self) -> str | None: ...
    @property
    def depends_on(self) -> Sequence[str]: ...
    @property
    def partition_key(self) -> str | None: ...
    @property
    def max_attempts(self) -> int: ...
    @property
    def heartbeat_timeout_sec(self) -> int: ...
    @property
    def requires_visible_output(self) -> bool: ...


@dataclass(frozen=True)
class RunKeyReservation:
    run_key: str
    run_id: str
    plan_id: str
    fingerprint: str
    created_at: datetime
    created: bool


def reserve_run_key(
    session: Session,
    scope: Scope,
    *,
    run_key: str,
    run_id: str,
    plan_id: str,
    fingerprint: str,
    now: datetime,
) -> RunKeyReservation:
    """Reserve ``run_key`` for a new run, or return the existing reservation
    (``created=False``). The primary key makes concurrent reservations collapse to one."""
    row = RunKey(
        tenant_id=scope.tenant_id,
        workspace_id=scope.workspace_id,
        run_key=run_key,
        run_id=run_id,
        plan_id=plan_id,
        fingerprint=fingerprint,
        created_at=now,
    )
    session.flush()
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
        created = True
    except IntegrityError:
        existing = session.get(RunKey, (scope.tenant_id, scope.workspace_id, run_key))
        if existing is None:  # pragma: no cover - the conflicting row was just seen
            raise
        row, created = existing, False
    return RunKeyReservation(
        run_key=row.run_key,
        run_id=row.run_id,
        plan_id=row.plan_id,
        fingerprint=row.fingerprint,
        created_at=row.created_at,
        created=created,
    )


INSERT_CHUNK = 1000


# On the tables, not the mapped classes: plain executemany, without the ORM's bulk-insert
# machinery (which cost more than the INSERT for the common one-task run).
_TASKS = insert(cast(Table, Task.__table__))
_EDGES = insert(cast(Table, TaskDependency.__table__))


def _chunks(items: Sequence[PlannedTaskLike], size: int) -> Iterator[Sequence[PlannedTaskLike]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _task_row(
    scope: Scope, run_id: str, planned: PlannedTaskLike, now: datetime
) -> dict[str, object]:
    """A new task's row: READY without dependencies, else BLOCKED (T1), version 1."""
    change = TaskTransition.PLAN_BLOCKED if planned.depends_on else TaskTransition.PLAN_READY
    return {
        "run_id": run_id,
        "task_key": planned.key,
        "tenant_id": scope.tenant_id,
        "workspace_id": scope.workspace_id,
        "state": TASK_TRANSITIONS[change].target,
        "attempt": 0,
        "attempt_id": None,
        "asset_key": planned.asset_key,
        "partition_key": planned.partition_key,
        "deps_total": len(planned.depends_on),
        "deps_satisfied_count": 0,
        "max_attempts": planned.max_attempts,
        "heartbeat_timeout_sec": planned.heartbeat_timeout_sec,
        "requires_visible_output": planned.requires_visible_output,
        "ready_at": None if planned.depends_on else now,
        "row_version": 1,
    }


def trigger_run(
    session: Session,
    scope: Scope,
    *,
    run_id: str,
    plan_id: str,
    tasks: Sequence[PlannedTaskLike],
    now: datetime,
    triggered_by: str,
    run_key: str | None = None,
    labels: dict[str, str] | None = None,
    code_version: str | None = None,
    manifest_id: str | None = None,
    parent_run_id: str | None = None,
    rerun_kind: str | None = None,
    rerun_reason: str | None = None,
) -> Run:
    """RunTriggered + PlanCreated in one step: the run is RUNNING, tasks without
    dependencies are READY and the others BLOCKED (T1)."""
    run = Run(
        run_id=run_id,
        tenant_id=scope.tenant_id,
        workspace_id=scope.workspace_id,
        plan_id=plan_id,
        run_key=run_key,
        labels=dict(labels or {}),
        code_version=code_version,
        manifest_id=manifest_id,
        triggered_by=triggered_by,
        cancel_requested=False,
        tasks_total=len(tasks),
        tasks_completed=0,
        tasks_succeeded=0,
        tasks_failed=0,
        tasks_skipped=0,
        tasks_cancelled=0,
        triggered_at=now,
        parent_run_id=parent_run_id,
        rerun_kind=rerun_kind,
        rerun_reason=rerun_reason,
        row_version=1,
    )
    transition(run, RunTransition.START)
    session.add(run)
    session.flush()
    # The rows go in as plain parameter sets, a chunk at a time, not as ORM objects: a run
    # of 10,000 tasks held every task and edge object (and their session state) until the
    # flush, about 60 MB at the API's peak, and the session never reads them back here.
    for chunk in _chunks(tasks, INSERT_CHUNK):
        session.execute(_TASKS, [_task_row(scope, run_id, planned, now) for planned in chunk])
        edges = [
            {
                "run_id": run_id,
                "upstream_key": upstream,
                "downstream_key": planned.key,
                "tenant_id": scope.tenant_id,
                "workspace_id": scope.workspace_id,
                "satisfied": False,
            }
            for planned in chunk
            for upstream in planned.depends_on
        ]
        if edges:
            session.execute(_EDGES, edges)
    if not tasks:
        finish_run_if_done(run, now)
    if any(not planned.depends_on for planned in tasks):
        notify_dispatcher(session, run_id)
    return run
