"""The storage layer of the facts: row locks in the documented order, lookups, the task
history (keyed events make a fact apply once, even across processes), outbox rows and the
dispatcher's wake-up.

Lock order: a fact locks its run row first (:func:`lock_run`, :func:`lock_runs` in
``run_id`` order, or :func:`run_with_task` ``OF runs, tasks``), then task and outbox rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any, cast

from sqlalchemy import (
    JSON,
    BindParameter,
    ColumnElement,
    Delete,
    Select,
    Table,
    Update,
    bindparam,
    delete,
    exists,
    func,
    insert,
    inspect,
    literal_column,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import InstanceState, LoaderCallableStatus, Session, load_only
from sqlalchemy.orm.exc import StaleDataError

from arco_envelope import DEFAULT_WORKER_QUEUE
from arco_orchestration.facts.keysets import key_match, key_params, pair_match, pair_params
from arco_orchestration.models import (
    DispatchOutbox,
    Run,
    Task,
    TaskDependency,
    TaskEvent,
    key_scope,
)
from arco_orchestration.scope import Scope
from arco_orchestration.states import OutboxStatus

NOTIFY_CHANNEL = "arco_dispatch"


class EventKind(StrEnum):
    DISPATCH_REQUESTED = "dispatch_requested"
    DISPATCH_ENQUEUED = "dispatch_enqueued"
    DISPATCH_DELIVERED = "dispatch_delivered"
    REDISPATCHED = "redispatched"
    STARTED = "started"
    COMPLETED = "completed"
    REAPED = "reaped"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"
    READY = "ready"


def lock_run(session: Session, scope: Scope, run_id: str) -> Run | None:
    """Load and lock a run row of this scope (the per-run serialisation point)."""
    stmt = (
        select(Run)
        .where(Run.run_id == run_id, key_scope(Run, scope.tenant_id, scope.workspace_id))
        .with_for_update()
    )
    return session.scalars(stmt).one_or_none()


def lock_runs(session: Session, scope: Scope, run_ids: Iterable[str]) -> dict[str, Run]:
    """:func:`lock_run` for many runs, in one query and in ``run_id`` order, so that two
    callers locking several runs take them in the same order (no deadlock)."""
    wanted = sorted(set(run_ids))
    if not wanted:
        return {}
    stmt = _LOCK_RUNS[session.get_bind().dialect.name]
    params = {**key_params(wanted), **_scope_params(scope)}
    return {run.run_id: run for run in session.scalars(stmt, params)}


def _scope_params(scope: Scope) -> dict[str, str]:
    return {"tenant_id": scope.tenant_id, "workspace_id": scope.workspace_id}


# Built once per dialect, with a text that does not depend on the number of keys (keysets).
_LOCK_RUNS = {
    dialect: select(Run)
    .where(match, key_scope(Run, bindparam("tenant_id"), bindparam("workspace_id")))
    .order_by(Run.run_id)
    .with_for_update()
    for dialect, match in key_match(Run.run_id).items()
}
_GET_TASKS = {
    dialect: select(Task).where(
        match, key_scope(Task, bindparam("tenant_id"), bindparam("workspace_id"))
    )
    for dialect, match in pair_match(Task.run_id, Task.task_key).items()
}


# What a callback reads of its run and task (its guards, the attempt checks, the counters,
# the history event and the lineage reference); the primary keys are always loaded.
_CALLBACK_RUN_COLUMNS = (
    Run.tenant_id,
    Run.workspace_id,
    Run.state,
    Run.cancel_requested,
    Run.tasks_total,
    Run.tasks_completed,
    Run.tasks_succeeded,
    Run.tasks_failed,
    Run.tasks_skipped,
    Run.tasks_cancelled,
    Run.row_version,
)
_CALLBACK_TASK_COLUMNS = (
    Task.tenant_id,
    Task.workspace_id,
    Task.state,
    Task.attempt,
    Task.attempt_id,
    Task.partition_key,
    Task.max_attempts,
    Task.heartbeat_timeout_sec,
    Task.row_version,
)


class RunLock(StrEnum):
    """How :func:`run_with_task` holds the run row.

    ``EXCLUSIVE`` (``FOR UPDATE``) is what every fact that may change the run or more than
    one task takes. ``SHARED`` (``FOR SHARE`` of the run, ``FOR UPDATE`` of the task) is for
    a fact that changes its own task only and reads the run (``/started``): such facts of
    one run may apply together, while a fact holding or waiting for the exclusive lock (a
    completion, a cancel) still orders against each of them. The task row is always taken
    exclusively, so two reports of the same task still apply one at a time. ``NONE`` reads
    without a lock (heartbeats). SQLite serialises every writer anyway."""

    NONE = "none"
    SHARED = "shared"
    EXCLUSIVE = "exclusive"


def _run_with_task(lock: RunLock) -> Select[Run, Task, bool]:
    tenant: BindParameter[str] = bindparam("tenant_id")
    workspace: BindParameter[str] = bindparam("workspace_id")
    # Whether the task has outgoing edges: a completion then skips its edge query (a
    # round trip under the run lock) for a task nothing depends on, the common case in a
    # wide run. Edges are written with their run's tasks and never added later. On the bound
    # keys, not the outer rows: a prefix of the primary key, so the planner takes it even
    # without statistics (not the downstream index, which would read every edge of the run).
    run_id: BindParameter[str] = bindparam("run_id")
    task_key: BindParameter[str] = bindparam("task_key")
    downstream = exists().where(
        TaskDependency.run_id == run_id, TaskDependency.upstream_key == task_key
    )
    stmt = (
        select(Run, Task, downstream)
        .join(Task, Task.run_id == Run.run_id)
        .where(
            Run.run_id == run_id,
            key_scope(Run, tenant, workspace),
            Task.task_key == task_key,
            key_scope(Task, tenant, workspace),
        )
        # Only the columns the callbacks read: every column costs the driver and the ORM at
        # each load, and most are only ever written here. Any other loads when first read.
        .options(load_only(*_CALLBACK_RUN_COLUMNS), load_only(*_CALLBACK_TASK_COLUMNS))
    )
    if lock is RunLock.EXCLUSIVE:
        return stmt.with_for_update(of=[Run, Task])
    if lock is RunLock.SHARED:
        # Two locking clauses of different strength, which with_for_update cannot say; only
        # PostgreSQL takes them (SQLite has no row locks).
        return stmt.suffix_with("FOR SHARE OF runs FOR UPDATE OF tasks", dialect="postgresql")
    return stmt


# Built once: a statement object keeps its cache key, which SQLAlchemy would otherwise work
# out again at every execution (a good part of a callback's CPU).
_RUN_WITH_TASK = {lock: _run_with_task(lock) for lock in RunLock}


def run_with_task(
    session: Session, scope: Scope, run_id: str, task_key: str, *, lock: RunLock
) -> tuple[Run, Task] | None:
    """A run of this scope and one of its tasks in one round trip, with the run row held as
    ``lock`` says (:class:`RunLock`) and, when locked, the task row too (``OF runs, tasks``:
    the run row is locked first, the order every fact keeps). Both rows are locked, not just
    the run, because a join that waited for the run lock re-reads only the rows it locks:
    the task must be read as the run lock's previous holder left it."""
    params = {
        "run_id": run_id,
        "task_key": task_key,
        "tenant_id": scope.tenant_id,
        "workspace_id": scope.workspace_id,
    }
    row = session.execute(_RUN_WITH_TASK[lock], params).one_or_none()
    if row is None:
        return None
    if not row[2]:
        session.info.setdefault(_WITHOUT_DOWNSTREAM, set()).add((run_id, task_key))
    return row[0], row[1]


_WITHOUT_DOWNSTREAM = "arco_tasks_without_downstream"


def known_without_downstream(session: Session, run_id: str, task_key: str) -> bool:
    """Whether this transaction's :func:`run_with_task` found that no edge leaves the task
    (``False`` when it did not read the task: ask the database then)."""
    known: set[tuple[str, str]] = session.info.get(_WITHOUT_DOWNSTREAM, set())
    return (run_id, task_key) in known


def get_task(session: Session, scope: Scope, run_id: str, task_key: str) -> Task | None:
    stmt = select(Task).where(
        Task.run_id == run_id,
        Task.task_key == task_key,
        key_scope(Task, scope.tenant_id, scope.workspace_id),
    )
    return session.scalars(stmt).one_or_none()


def lock_task(session: Session, scope: Scope, run_id: str, task_key: str) -> Task | None:
    """The task row of this scope, locked and re-read: the run lock alone does not hold it
    still, since a heartbeat writes it without one. The caller has locked the run first."""
    return session.scalars(
        select(Task)
        .where(
            Task.run_id == run_id,
            Task.task_key == task_key,
            key_scope(Task, scope.tenant_id, scope.workspace_id),
        )
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one_or_none()


def get_tasks(
    session: Session, scope: Scope, keys: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], Task]:
    """The task rows of these ``(run_id, task_key)`` pairs in this scope, in one query."""
    wanted = sorted(set(keys))
    if not wanted:
        return {}
    dialect = session.get_bind().dialect.name
    params = {**pair_params(dialect, wanted), **_scope_params(scope)}
    return {
        (task.run_id, task.task_key): task for task in session.scalars(_GET_TASKS[dialect], params)
    }


_NOTIFY = text("SELECT pg_notify(:channel, :run)")


def notify_dispatcher(session: Session, run_id: str) -> None:
    """Wake dispatchers listening on PostgreSQL (delivered at commit; SQLite polls)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(_NOTIFY, {"channel": NOTIFY_CHANNEL, "run": run_id})


def _event_fields(
    task: Task,
    kind: EventKind,
    at: datetime,
    *,
    from_state: str | None,
    to_state: str,
    detail: dict[str, Any] | None,
    idempotency_key: str | None,
) -> dict[str, Any]:
    return {
        "tenant_id": task.tenant_id,
        "workspace_id": task.workspace_id,
        "run_id": task.run_id,
        "task_key": task.task_key,
        "attempt": task.attempt,
        "attempt_id": task.attempt_id,
        "kind": kind.value,
        "from_state": from_state,
        "to_state": to_state,
        "idempotency_key": idempotency_key,
        "at": at,
        "detail": detail,
    }


def add_event(
    session: Session,
    task: Task,
    kind: EventKind,
    at: datetime,
    *,
    from_state: str | None = None,
    detail: dict[str, Any] | None = None,
    idempotency_key: str | None = None,
) -> TaskEvent:
    """Append a task event in the task's current state. A keyed event is for callers that
    rule a repeat out under the run lock: a repeat fails the transaction on the unique key
    (callbacks, which must answer a repeat, use :func:`insert_keyed` or :func:`write_keyed`)."""
    event = TaskEvent(
        **event_values(
            task, kind, at, from_state=from_state, detail=detail, idempotency_key=idempotency_key
        )
    )
    session.add(event)
    return event


def event_values(
    task: Task,
    kind: EventKind,
    at: datetime,
    *,
    from_state: str | None = None,
    detail: dict[str, Any] | None = None,
    idempotency_key: str | None = None,
) -> dict[str, Any]:
    """The columns of the event :func:`add_event` adds, for :func:`insert_rows`."""
    return _event_fields(
        task,
        kind,
        at,
        from_state=from_state,
        to_state=task.state,
        detail=detail,
        idempotency_key=idempotency_key,
    )


# On the tables (see _KEYED_INSERT), built once.
_INSERT_ROWS = {
    DispatchOutbox: insert(cast(Table, DispatchOutbox.__table__)),
    TaskEvent: insert(cast(Table, TaskEvent.__table__)),
}


def insert_rows(
    session: Session, model: type[DispatchOutbox | TaskEvent], rows: list[dict[str, Any]]
) -> None:
    """Insert ``rows`` (column values, all with the same keys, as :func:`event_values` and
    :func:`outbox_row_values` make them) in one executemany: a statement text that does
    not depend on the number of rows (PostgreSQL prepares it), and none of the ORM's
    per-object work. Events get their ids in list order; objects the session has pending
    are flushed first, so the history keeps the order in which events were made."""
    if not rows:
        return
    if session.new:
        session.flush()
    session.execute(_INSERT_ROWS[model], rows)


def _keyed_insert(make_insert: Any) -> Any:
    table = TaskEvent.__table__
    # inline(): no RETURNING of the new id either (nothing reads it), so no result set; the
    # count of inserted rows (kept for an INSERT only on request) tells a conflict apart.
    return (
        make_insert(table)
        .inline()
        .on_conflict_do_nothing(
            index_elements=[table.c.tenant_id, table.c.workspace_id, table.c.idempotency_key]
        )
        .execution_options(preserve_rowcount=True)
    )


# On the table, not the mapped class: no ORM bulk-insert machinery for one row, and built once
# (see _RUN_WITH_TASK).
_KEYED_INSERT = {
    "sqlite": _keyed_insert(sqlite.insert),
    "postgresql": _keyed_insert(postgresql.insert),
}


def keyed_event_fields(
    task: Task,
    kind: EventKind,
    at: datetime,
    *,
    from_state: str | None,
    to_state: str,
    detail: dict[str, Any] | None,
    idempotency_key: str,
) -> dict[str, Any]:
    """The columns of a keyed task event of ``task`` as it is now, for :func:`write_keyed`
    (made before the fact changes the task: the event names the attempt it applies to)."""
    return _event_fields(
        task,
        kind,
        at,
        from_state=from_state,
        to_state=to_state,
        detail=detail,
        idempotency_key=idempotency_key,
    )


def insert_keyed(session: Session, fields: dict[str, Any]) -> bool:
    """Append the keyed task event ``fields`` (:func:`keyed_event_fields`); ``False`` (and
    nothing written) when its key was already applied. One ``INSERT ... ON CONFLICT DO
    NOTHING``: a callback's cost is its round trips, and a savepoint would add three."""
    if session.new:
        # Events added earlier in this transaction go first, so the history keeps their order.
        session.flush()
    connection = session.connection()
    # On the connection: the session's execute adds its own steps (autoflush included) to
    # each statement, and this one needs none of them after the flush of new rows above.
    stmt = _KEYED_INSERT[connection.dialect.name]
    return bool(getattr(connection.execute(stmt, fields), "rowcount", 0) == 1)


def new_outbox_row(
    session: Session,
    task: Task,
    *,
    dispatch_id: str,
    attempt: int,
    attempt_id: str,
    now: datetime,
    worker_queue: str = DEFAULT_WORKER_QUEUE,
) -> DispatchOutbox:
    """The PENDING outbox row of ``attempt`` of ``task`` (:func:`outbox_row_values`),
    added to the session."""
    row = DispatchOutbox(
        **outbox_row_values(
            task,
            dispatch_id=dispatch_id,
            attempt=attempt,
            attempt_id=attempt_id,
            now=now,
            worker_queue=worker_queue,
        )
    )
    session.add(row)
    return row


def outbox_row_values(
    task: Task,
    *,
    dispatch_id: str,
    attempt: int,
    attempt_id: str,
    now: datetime,
    worker_queue: str = DEFAULT_WORKER_QUEUE,
) -> dict[str, Any]:
    """The columns of the PENDING outbox row of ``attempt`` of ``task``: the one place a
    dispatch row is made (a dispatch request, and the repair of a missing row). Also the
    columns an enqueue sets (``None`` here), so that every row of a batch has the same
    keys (:func:`insert_rows`)."""
    return {
        "dispatch_id": dispatch_id,
        "tenant_id": task.tenant_id,
        "workspace_id": task.workspace_id,
        "run_id": task.run_id,
        "task_key": task.task_key,
        "attempt": attempt,
        "attempt_id": attempt_id,
        "worker_queue": worker_queue,
        "status": OutboxStatus.PENDING.value,
        "cloud_task_id": None,
        "created_at": now,
        "enqueued_at": None,
        "redispatch_count": 0,
        "delivery_state": None,
        "delivery_attempts": 0,
        "next_delivery_at": None,
        "row_version": 1,
    }


def _drop_outbox(*, through_attempt: bool) -> Delete:
    # On the table, not the mapped class: no ORM bulk-delete machinery, and no session
    # synchronisation (every caller is done with the task's outbox rows by now).
    table = cast(Table, DispatchOutbox.__table__)
    stmt = delete(table).where(
        table.c.run_id == bindparam("run_id"),
        table.c.task_key == bindparam("task_key"),
    )
    if through_attempt:
        stmt = stmt.where(table.c.attempt <= bindparam("through_attempt"))
    return stmt


_DROP_OUTBOX = {through: _drop_outbox(through_attempt=through) for through in (False, True)}


def drop_outbox(session: Session, task: Task, *, through_attempt: int | None = None) -> None:
    """Remove outbox rows of attempts that are consumed (started, finished or superseded);
    every row of the task when ``through_attempt`` is ``None``."""
    params: dict[str, Any] = {"run_id": task.run_id, "task_key": task.task_key}
    if through_attempt is not None:
        params["through_attempt"] = through_attempt
    if session.autoflush:
        # What the session's execute would do first: a pending outbox row, or a change to
        # one, reaches the database before the DELETE (nothing to send after write_row).
        session.flush()
    session.connection().execute(_DROP_OUTBOX[through_attempt is not None], params)


def lock_outbox_row(session: Session, scope: Scope, dispatch_id: str) -> DispatchOutbox | None:
    """The outbox row ``dispatch_id`` of this scope, locked and re-read (the caller has
    locked its run first)."""
    return session.scalars(
        select(DispatchOutbox)
        .where(
            DispatchOutbox.dispatch_id == dispatch_id,
            DispatchOutbox.tenant_id == scope.tenant_id,
            DispatchOutbox.workspace_id == scope.workspace_id,
        )
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one_or_none()


# One UPDATE per table and set of changed columns, built at its first use: a fact changes the
# same columns of a row every time it applies, so there are a handful of them.
_WRITES: dict[tuple[str, frozenset[str], str], Update] = {}


def _write_param(column: ColumnElement[Any], name: str | None = None) -> BindParameter[Any]:
    if isinstance(column.type, JSON):
        # ``None`` as SQL NULL, as a row created without that value holds it (the column
        # may not have been loaded, so an unchanged ``None`` cannot be told apart).
        return bindparam(name or column.key, type_=JSON(none_as_null=True))
    return bindparam(name or column.key)


def _write_statement(table: Table, columns: frozenset[str], prefix: str = "") -> Update:
    """The UPDATE of ``columns`` of a ``table`` row; each parameter is named after its column,
    with ``prefix`` (and ``pk_`` for the key)."""
    key = (table.name, columns, prefix)
    stmt = _WRITES.get(key)
    if stmt is None:
        stmt = (
            update(table)
            .where(
                *(column == bindparam(f"{prefix}pk_{column.key}") for column in table.primary_key)
            )
            .values(
                {name: _write_param(table.c[name], f"{prefix}{name}") for name in sorted(columns)}
            )
        )
        _WRITES[key] = stmt
    return stmt


_Pending = tuple["InstanceState[Run | Task]", dict[str, Any], frozenset[str]]


def _pending_write(session: Session, row: Run | Task) -> _Pending | None:
    """The row's state, the parameters of its UPDATE (changed columns and ``pk_`` keys) and
    the changed columns; ``None`` when there is nothing to write (nothing changed: the row
    is marked clean, or a new row, which the flush inserts)."""
    state = cast("InstanceState[Run | Task]", inspect(row))
    if not state.committed_state or not state.persistent:
        return None
    values = state.dict
    # As the flush does, a column set to the value it had is left out: a JSON column's
    # ``None`` would otherwise turn SQL NULL into JSON null.
    params = {
        name: values[name]
        for name, old in state.committed_state.items()
        if old is LoaderCallableStatus.NO_VALUE or old != values[name]
    }
    changed = frozenset(params)
    if not changed:
        # What the flush does to a written row: no pending changes, not dirty.
        state._commit_all(values, session.identity_map)
        return None
    for column in cast(Table, type(row).__table__).primary_key:
        params[f"pk_{column.key}"] = values[column.key]
    return state, params, changed


def _check_written(result: Any, table: Table, state: InstanceState[Run | Task]) -> None:
    if getattr(result, "rowcount", 1) != 1:
        raise StaleDataError(f"{table.name} row {state.identity} is gone")


def write_row(session: Session, row: Run | Task) -> None:
    """Write the columns changed on a loaded ``row`` with one Core ``UPDATE`` now, and mark
    the row clean: what the session's flush would send for it, without the unit of work
    (ordering the session's objects, collecting each one's history), which costs a callback
    more CPU than the statement. The row must be locked by this transaction."""
    pending = _pending_write(session, row)
    if pending is None:
        return
    state, params, changed = pending
    table = cast(Table, type(row).__table__)
    # On the connection: the session's execute would autoflush, the flush this avoids.
    result = session.connection().execute(_write_statement(table, changed), params)
    _check_written(result, table, state)
    state._commit_all(state.dict, session.identity_map)


def write_many(session: Session, rows: Sequence[Run | Task]) -> None:
    """:func:`write_row` for many rows: one executemany per table and set of changed
    columns (a batch of dispatch requests changes the same columns of every task)."""
    groups: dict[tuple[Table, frozenset[str]], list[tuple[Any, dict[str, Any]]]] = {}
    for row in rows:
        pending = _pending_write(session, row)
        if pending is not None:
            state, params, changed = pending
            groups.setdefault((cast(Table, type(row).__table__), changed), []).append(
                (state, params)
            )
    connection = session.connection()
    for (table, changed), written in groups.items():
        result = connection.execute(_write_statement(table, changed), [p for _, p in written])
        if getattr(result, "rowcount", len(written)) != len(written):
            raise StaleDataError(f"{table.name}: {len(written)} rows to write, some are gone")
        for state, _ in written:
            state._commit_all(state.dict, session.identity_map)


# The PostgreSQL statements that send a callback's last writes at once (see write_rows and
# write_keyed): a writable CTE runs with the UPDATE it is attached to, one
# round trip and one statement execution instead of two. Built at first use, like _WRITES.
# Their parameters are prefixed: SQLAlchemy takes an execution parameter named like a column
# of a CTE's UPDATE for that column, and runs and tasks share column names (state, ...).
_JOINT_WRITES: dict[tuple[frozenset[str], frozenset[str]], Update] = {}
_RUN, _TASK, _OUTBOX = "run_", "task_", "outbox_"


def _prefixed(prefix: str, params: dict[str, Any]) -> dict[str, Any]:
    return {f"{prefix}{name}": value for name, value in params.items()}


def _joint_write(run_columns: frozenset[str], task_columns: frozenset[str]) -> Update:
    key = (run_columns, task_columns)
    stmt = _JOINT_WRITES.get(key)
    if stmt is None:
        runs = cast(Table, Run.__table__)
        run_write = (
            _write_statement(runs, run_columns, _RUN).returning(runs.c.run_id).cte("run_write")
        )
        # The task row is written only if the run row was: one count of 1 checks both.
        written = select(func.count()).select_from(run_write).scalar_subquery()
        task_write = _write_statement(cast(Table, Task.__table__), task_columns, _TASK)
        stmt = task_write.where(written == literal_column("1"))
        _JOINT_WRITES[key] = stmt
    return stmt


def write_rows(session: Session, run: Run, task: Task) -> None:
    """``write_row(run)`` then ``write_row(task)``; on PostgreSQL one statement when both
    changed (a callback's completion writes both while it holds the run lock, so each
    round trip saved there is one less for every other callback of the run to wait)."""
    if session.get_bind().dialect.name != "postgresql":
        write_row(session, run)
        write_row(session, task)
        return
    run_pending = _pending_write(session, run)
    if run_pending is None:
        write_row(session, task)
        return
    task_pending = _pending_write(session, task)
    if task_pending is None:
        write_row(session, run)
        return
    (run_state, run_params, run_changed) = run_pending
    (task_state, task_params, task_changed) = task_pending
    stmt = _joint_write(run_changed, task_changed)
    params = {**_prefixed(_RUN, run_params), **_prefixed(_TASK, task_params)}
    result = session.connection().execute(stmt, params)
    _check_written(result, cast(Table, Task.__table__), task_state)
    run_state._commit_all(run_state.dict, session.identity_map)
    task_state._commit_all(task_state.dict, session.identity_map)


# The PostgreSQL statements of write_keyed, built at first use: the keyed event's INSERT and
# the writes it guards in one statement. Each write runs only if the INSERT returned its row
# (a new key), so a repeat writes nothing and the task UPDATE's count tells which it was.
_KEYED_WRITES: dict[tuple[frozenset[str] | None, frozenset[str], bool], Update] = {}
_EVENT = "event_"


def _keyed_write(
    run_columns: frozenset[str] | None, task_columns: frozenset[str], drop: bool
) -> Update:
    key = (run_columns, task_columns, drop)
    stmt = _KEYED_WRITES.get(key)
    if stmt is None:
        events = cast(Table, TaskEvent.__table__)
        names = [column.key for column in events.columns if column.key != "id"]
        inserted = (
            postgresql.insert(events)
            .values(
                {name: bindparam(f"{_EVENT}{name}", type_=events.c[name].type) for name in names}
            )
            .on_conflict_do_nothing(
                index_elements=[events.c.tenant_id, events.c.workspace_id, events.c.idempotency_key]
            )
            .returning(events.c.id)
            .cte("keyed_event")
        )
        new_key = exists(select(inserted.c.id))
        task_write = _write_statement(cast(Table, Task.__table__), task_columns, _TASK).where(
            new_key
        )
        if run_columns is not None:
            runs = cast(Table, Run.__table__)
            run_write = (
                _write_statement(runs, run_columns, _RUN)
                .where(new_key)
                .returning(runs.c.run_id)
                .cte("run_write")
            )
            written = select(func.count()).select_from(run_write).scalar_subquery()
            task_write = task_write.where(written == literal_column("1"))
        if drop:
            outbox = cast(Table, DispatchOutbox.__table__)
            dropped = (
                delete(outbox)
                .where(
                    outbox.c.run_id == bindparam(f"{_OUTBOX}run_id"),
                    outbox.c.task_key == bindparam(f"{_OUTBOX}task_key"),
                    outbox.c.attempt <= bindparam(f"{_OUTBOX}through_attempt"),
                    new_key,
                )
                .cte("outbox_drop")
            )
            task_write = task_write.add_cte(dropped)
        stmt = task_write.add_cte(inserted)
        _KEYED_WRITES[key] = stmt
    return stmt


def _discard(session: Session, *rows: Run | Task | None) -> None:
    """Forget the unwritten changes of ``rows`` (a fact that found its key applied): the
    flush at commit must not write them. Only the changed attributes are expired, so the
    keys stay readable once the session is closed."""
    for row in rows:
        if row is None:
            continue
        changed = list(cast("InstanceState[Run | Task]", inspect(row)).committed_state)
        if changed:
            session.expire(row, changed)


def flush_earlier_changes(session: Session) -> None:
    """Send what the session holds from before a fact that ends in :func:`write_keyed`, so
    that it holds only the fact's own changes then (a no-op in a callback's transaction)."""
    if session.new or session.dirty or session.deleted:
        session.flush()


def write_keyed(
    session: Session,
    event: dict[str, Any],
    task: Task,
    *,
    run: Run | None = None,
    drop_outbox_through: int | None = None,
) -> bool:
    """A fact's keyed event (:func:`keyed_event_fields`), then its writes: ``run``'s and
    ``task``'s changed columns and, with ``drop_outbox_through``, the task's outbox rows of
    attempts up to that one dropped. ``False``, and nothing written, when the key was
    already applied (the rows' changes are then discarded).

    For a fact whose only statements are these: on PostgreSQL they are one statement, one
    round trip under the run lock instead of two or three; elsewhere the event goes first.
    The session must hold no other change (:func:`flush_earlier_changes`): a flush would
    write it before the event."""
    if session.new or any(row is not task and row is not run for row in session.dirty):
        raise RuntimeError("write_keyed: the session holds changes other than run and task")
    run_pending = _pending_write(session, run) if run is not None else None
    task_pending = _pending_write(session, task)
    if session.get_bind().dialect.name != "postgresql" or task_pending is None:
        if not insert_keyed(session, event):
            _discard(session, run, task)
            return False
        if run is not None:
            write_rows(session, run, task)
        else:
            write_row(session, task)
        if drop_outbox_through is not None:
            drop_outbox(session, task, through_attempt=drop_outbox_through)
        return True
    task_state, task_params, task_changed = task_pending
    params = {**_prefixed(_EVENT, event), **_prefixed(_TASK, task_params)}
    run_changed = None
    if run_pending is not None:
        params.update(_prefixed(_RUN, run_pending[1]))
        run_changed = run_pending[2]
    if drop_outbox_through is not None:
        params.update(
            _prefixed(
                _OUTBOX,
                {
                    "run_id": task.run_id,
                    "task_key": task.task_key,
                    "through_attempt": drop_outbox_through,
                },
            )
        )
    stmt = _keyed_write(run_changed, task_changed, drop_outbox_through is not None)
    result = session.connection().execute(stmt, params)
    if getattr(result, "rowcount", 0) != 1:
        # The task row is locked by this transaction, so no count of 1 means a known key.
        _discard(session, run, task)
        return False
    if run_pending is not None:
        run_pending[0]._commit_all(run_pending[0].dict, session.identity_map)
    task_state._commit_all(task_state.dict, session.identity_map)
    return True
