"""RunTriggered + PlanCreated (T1), and the run-key reservation that makes a trigger
idempotent."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, cast

from sqlalchemy import Table, TextClause, bindparam, insert, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from arco_orchestration.facts.graph import finish_run_if_done
from arco_orchestration.facts.store import NOTIFY_CHANNEL, notify_dispatcher
from arco_orchestration.facts.transitions import (
    RUN_TRANSITIONS,
    TASK_TRANSITIONS,
    RunTransition,
    TaskTransition,
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
_RUNS = cast(Table, Run.__table__)
_RUN = insert(_RUNS)
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


# What the one statement takes of each _task_row: the row without the columns it sets from
# parameters (run and scope), and ready_at as a flag (bound once as ``:now``, typed).
_JSON_TASK_KEYS = (
    "task_key",
    "state",
    "attempt",
    "asset_key",
    "partition_key",
    "deps_total",
    "deps_satisfied_count",
    "max_attempts",
    "heartbeat_timeout_sec",
    "requires_visible_output",
    "row_version",
)


def _json_task_rows(
    scope: Scope, run_id: str, tasks: Sequence[PlannedTaskLike], now: datetime
) -> list[dict[str, object]]:
    rows = []
    for planned in tasks:
        row = _task_row(scope, run_id, planned, now)
        rows.append(
            {key: row[key] for key in _JSON_TASK_KEYS} | {"ready": row["ready_at"] is not None}
        )
    return rows


def _edge_rows(
    scope: Scope, run_id: str, tasks: Sequence[PlannedTaskLike]
) -> list[dict[str, object]]:
    return [
        {
            "run_id": run_id,
            "upstream_key": upstream,
            "downstream_key": planned.key,
            "tenant_id": scope.tenant_id,
            "workspace_id": scope.workspace_id,
            "satisfied": False,
        }
        for planned in tasks
        for upstream in planned.depends_on
    ]


def _insert_separately(
    session: Session,
    scope: Scope,
    run_row: dict[str, object],
    tasks: Sequence[PlannedTaskLike],
    now: datetime,
) -> None:
    """The run, then its tasks and edges, as plain parameter sets a chunk at a time (SQLite,
    which has no INSERT inside WITH, and runs larger than a chunk)."""
    run_id = str(run_row["run_id"])
    session.execute(_RUN, run_row)
    # Not as ORM objects: a run of 10,000 tasks held every task and edge object (and their
    # session state) until the flush, about 60 MB at the API's peak, and the session never
    # reads them back here.
    for chunk in _chunks(tasks, INSERT_CHUNK):
        session.execute(_TASKS, [_task_row(scope, run_id, planned, now) for planned in chunk])
        edges = _edge_rows(scope, run_id, chunk)
        if edges:
            session.execute(_EDGES, edges)


def _one_statement(*, edges: bool, notify: bool) -> TextClause:
    """The PostgreSQL form: run, tasks, edges and the dispatcher's NOTIFY in one statement
    (INSERTs in WITH), so a trigger is one round trip instead of three or four and its
    transaction is not left idle between them. Tasks and edges come as one JSON parameter
    each: one string to bind, where per-column arrays cost more to adapt than the INSERT."""
    parts = [
        # The columns of the run row of trigger_run.
        "new_run AS (INSERT INTO runs (run_id, tenant_id, workspace_id, plan_id, state,"
        " run_key, labels, code_version, manifest_id, triggered_by, cancel_requested,"
        " tasks_total, tasks_completed, tasks_succeeded, tasks_failed, tasks_skipped,"
        " tasks_cancelled, triggered_at, completed_at, parent_run_id, rerun_kind, rerun_reason,"
        " row_version)"
        " VALUES (:run_id, :tenant_id, :workspace_id, :plan_id, :state, :run_key, :labels,"
        " :code_version, :manifest_id, :triggered_by, :cancel_requested, :tasks_total,"
        " :tasks_completed, :tasks_succeeded, :tasks_failed, :tasks_skipped, :tasks_cancelled,"
        " :triggered_at, :completed_at, :parent_run_id, :rerun_kind, :rerun_reason,"
        " :row_version))",
        # The rows of _task_row (_json_task_rows); ``ready`` says ready_at is ``:now``.
        "new_tasks AS (INSERT INTO tasks (run_id, task_key, tenant_id, workspace_id, state,"
        " attempt, attempt_id, asset_key, partition_key, deps_total, deps_satisfied_count,"
        " max_attempts, heartbeat_timeout_sec, requires_visible_output, ready_at, row_version)"
        " SELECT :run_id, t.task_key, :tenant_id, :workspace_id, t.state,"
        " t.attempt, NULL, t.asset_key, t.partition_key, t.deps_total,"
        " t.deps_satisfied_count, t.max_attempts, t.heartbeat_timeout_sec,"
        " t.requires_visible_output, CASE WHEN t.ready THEN :now END, t.row_version"
        " FROM json_to_recordset(CAST(:tasks AS json)) AS t(task_key text, state text,"
        " attempt integer, asset_key text, partition_key text, deps_total integer,"
        " deps_satisfied_count integer, max_attempts integer, heartbeat_timeout_sec integer,"
        " requires_visible_output boolean, ready boolean, row_version integer))",
    ]
    if edges:
        parts.append(
            "new_edges AS (INSERT INTO task_dependencies (run_id, upstream_key, downstream_key,"
            " tenant_id, workspace_id, satisfied)"
            " SELECT :run_id, e.upstream_key, e.downstream_key, :tenant_id, :workspace_id, false"
            " FROM json_to_recordset(CAST(:edges AS json))"
            " AS e(upstream_key text, downstream_key text))"
        )
    tail = "SELECT pg_notify(:channel, :run_id)" if notify else "SELECT 1"
    statement = text("WITH " + ", ".join(parts) + " " + tail)
    # Typed like the mapped columns, so values bind exactly as the ORM binds them.
    return statement.bindparams(
        bindparam("labels", type_=_RUNS.c.labels.type),
        bindparam("triggered_at", type_=_RUNS.c.triggered_at.type),
        bindparam("completed_at", type_=_RUNS.c.completed_at.type),
        bindparam("now", type_=_RUNS.c.triggered_at.type),
    )


_ONE_STATEMENT = {
    (edges, notify): _one_statement(edges=edges, notify=notify)
    for edges in (False, True)
    for notify in (False, True)
}


def _insert_at_once(
    session: Session,
    scope: Scope,
    run_row: dict[str, object],
    tasks: Sequence[PlannedTaskLike],
    now: datetime,
    *,
    notify: bool,
) -> None:
    task_rows = _json_task_rows(scope, str(run_row["run_id"]), tasks, now)
    edges = [
        {"upstream_key": upstream, "downstream_key": planned.key}
        for planned in tasks
        for upstream in planned.depends_on
    ]
    params: dict[str, object] = {
        **run_row,
        "now": now,
        "tasks": json.dumps(task_rows, separators=(",", ":")),
        "channel": NOTIFY_CHANNEL,
    }
    if edges:
        params["edges"] = json.dumps(edges, separators=(",", ":"))
    session.execute(_ONE_STATEMENT[bool(edges), notify], params)


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
) -> None:
    """RunTriggered + PlanCreated in one step: the run is RUNNING, tasks without
    dependencies are READY and the others BLOCKED (T1), and the dispatcher is woken at
    commit when a task is READY.

    The rows go in as plain parameters, not ORM objects (nothing here reads them back, and
    the unit of work cost more than the INSERTs for the common one-task run)."""
    run_row: dict[str, object] = {
        "run_id": run_id,
        "tenant_id": scope.tenant_id,
        "workspace_id": scope.workspace_id,
        "plan_id": plan_id,
        "state": RUN_TRANSITIONS[RunTransition.START].target,
        "run_key": run_key,
        "labels": dict(labels or {}),
        "code_version": code_version,
        "manifest_id": manifest_id,
        "triggered_by": triggered_by,
        "cancel_requested": False,
        "tasks_total": len(tasks),
        "tasks_completed": 0,
        "tasks_succeeded": 0,
        "tasks_failed": 0,
        "tasks_skipped": 0,
        "tasks_cancelled": 0,
        "triggered_at": now,
        "completed_at": None,
        "parent_run_id": parent_run_id,
        "rerun_kind": rerun_kind,
        "rerun_reason": rerun_reason,
        "row_version": 1,
    }
    if not tasks:
        # A run without tasks ends as it starts; the transition table decides how.
        run = Run(**run_row)
        finish_run_if_done(run, now)
        run_row.update(state=run.state, completed_at=run.completed_at, row_version=run.row_version)
        session.execute(_RUN, run_row)
        return
    notify = any(not planned.depends_on for planned in tasks)
    # A run of more tasks than a chunk goes in chunk by chunk, as on SQLite: its rows never
    # all sit in the API's memory at once.
    if session.get_bind().dialect.name == "postgresql" and len(tasks) <= INSERT_CHUNK:
        _insert_at_once(session, scope, run_row, tasks, now, notify=notify)
        return
    _insert_separately(session, scope, run_row, tasks, now)
    if notify:
        notify_dispatcher(session, run_id)
