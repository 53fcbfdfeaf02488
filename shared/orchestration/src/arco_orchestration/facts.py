"""One function per fact. Each applies its guards, its state change and every derived effect
(readiness, skip and cancel cascades, run counters, run completion) in the caller's
transaction (arco-orchestration sections 1, 2 and 5, with design decision D7).

Concurrency: every fact that changes a task first locks its run row (``FOR UPDATE`` on
PostgreSQL; SQLite serialises writers with ``BEGIN IMMEDIATE``), so the facts of one run
apply one at a time, and always lock run before task rows (no deadlocks). Facts that must
apply once per attempt also insert a task event with a unique idempotency key, so a repeat
is a no-op enforced by the database even across processes.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

from sqlalchemy import and_, delete, select, text, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from arco_envelope import DEFAULT_WORKER_QUEUE, format_timestamp, parse_timestamp
from arco_envelope import attempt_id as deterministic_attempt_id
from arco_envelope import dispatch_id as make_dispatch_id
from arco_orchestration.models import (
    DispatchOutbox,
    Run,
    RunKey,
    Task,
    TaskDependency,
    TaskEvent,
)
from arco_orchestration.scope import Scope
from arco_orchestration.states import (
    CANCELLABLE_TASK_STATES,
    DeliveryState,
    EdgeResolution,
    OutboxStatus,
    RunState,
    TaskState,
    VisibilityState,
    finished_run_state,
    retry_not_before,
)

NOTIFY_CHANNEL = "arco_dispatch"
ANTI_ENTROPY_WORKER = "anti-entropy"


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


# --- small shared helpers -------------------------------------------------------------------


def lock_run(session: Session, scope: Scope, run_id: str) -> Run | None:
    """Load and lock a run row of this scope (the per-run serialisation point)."""
    stmt = (
        select(Run)
        .where(
            Run.run_id == run_id,
            Run.tenant_id == scope.tenant_id,
            Run.workspace_id == scope.workspace_id,
        )
        .with_for_update()
    )
    return session.scalars(stmt).one_or_none()


def lock_runs(session: Session, scope: Scope, run_ids: Iterable[str]) -> dict[str, Run]:
    """:func:`lock_run` for many runs, in one query and in ``run_id`` order, so that two
    callers locking several runs take them in the same order (no deadlock)."""
    wanted = sorted(set(run_ids))
    if not wanted:
        return {}
    stmt = (
        select(Run)
        .where(
            Run.run_id.in_(wanted),
            Run.tenant_id == scope.tenant_id,
            Run.workspace_id == scope.workspace_id,
        )
        .order_by(Run.run_id)
        .with_for_update()
    )
    return {run.run_id: run for run in session.scalars(stmt)}


def run_with_task(
    session: Session, scope: Scope, run_id: str, task_key: str, *, lock: bool
) -> tuple[Run, Task] | None:
    """A run of this scope and one of its tasks in one round trip; with ``lock``, both rows
    locked as :func:`lock_run` then the task's first write would (``OF runs, tasks``: the
    run row is locked first, the order every fact keeps). Both rows are locked, not just the
    run, because a join that waited for the run lock re-reads only the rows it locks: the
    task must be read as the run lock's previous holder left it."""
    stmt = (
        select(Run, Task)
        .join(Task, Task.run_id == Run.run_id)
        .where(
            Run.run_id == run_id,
            Run.tenant_id == scope.tenant_id,
            Run.workspace_id == scope.workspace_id,
            Task.task_key == task_key,
            Task.tenant_id == scope.tenant_id,
            Task.workspace_id == scope.workspace_id,
        )
    )
    if lock:
        stmt = stmt.with_for_update(of=[Run, Task])
    row = session.execute(stmt).one_or_none()
    return None if row is None else (row[0], row[1])


def get_task(session: Session, scope: Scope, run_id: str, task_key: str) -> Task | None:
    stmt = select(Task).where(
        Task.run_id == run_id,
        Task.task_key == task_key,
        Task.tenant_id == scope.tenant_id,
        Task.workspace_id == scope.workspace_id,
    )
    return session.scalars(stmt).one_or_none()


def get_tasks(
    session: Session, scope: Scope, keys: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], Task]:
    """The task rows of these ``(run_id, task_key)`` pairs in this scope, in one query."""
    wanted = sorted(set(keys))
    if not wanted:
        return {}
    stmt = select(Task).where(
        tuple_(Task.run_id, Task.task_key).in_(wanted),
        Task.tenant_id == scope.tenant_id,
        Task.workspace_id == scope.workspace_id,
    )
    return {(task.run_id, task.task_key): task for task in session.scalars(stmt)}


def notify_dispatcher(session: Session, run_id: str) -> None:
    """Wake dispatchers listening on PostgreSQL (delivered at commit; SQLite polls)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            text("SELECT pg_notify(:channel, :run)"), {"channel": NOTIFY_CHANNEL, "run": run_id}
        )


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
    (callbacks, which must answer a repeat, use :func:`insert_keyed_event`)."""
    event = TaskEvent(
        **_event_fields(
            task,
            kind,
            at,
            from_state=from_state,
            to_state=task.state,
            detail=detail,
            idempotency_key=idempotency_key,
        )
    )
    session.add(event)
    return event


def insert_keyed_event(
    session: Session,
    task: Task,
    kind: EventKind,
    at: datetime,
    *,
    from_state: str | None,
    to_state: str,
    detail: dict[str, Any] | None,
    idempotency_key: str,
) -> bool:
    """Append a keyed task event with its final values; ``False`` (and nothing written)
    when that key was already applied. One ``INSERT ... ON CONFLICT DO NOTHING``: a
    callback's cost is its round trips, and a savepoint would add three."""
    dialect = session.get_bind().dialect.name
    make_insert = sqlite.insert if dialect == "sqlite" else postgresql.insert
    fields = _event_fields(
        task,
        kind,
        at,
        from_state=from_state,
        to_state=to_state,
        detail=detail,
        idempotency_key=idempotency_key,
    )
    stmt = (
        make_insert(TaskEvent)
        .values(**fields)
        .on_conflict_do_nothing(
            index_elements=[TaskEvent.tenant_id, TaskEvent.workspace_id, TaskEvent.idempotency_key]
        )
        .returning(TaskEvent.id)
    )
    return session.execute(stmt).first() is not None


def _bump(row: Run | Task) -> None:
    row.row_version += 1


def _count_terminal(run: Run, state: TaskState) -> None:
    run.tasks_completed += 1
    if state is TaskState.SUCCEEDED:
        run.tasks_succeeded += 1
    elif state is TaskState.FAILED:
        run.tasks_failed += 1
    elif state is TaskState.SKIPPED:
        run.tasks_skipped += 1
    elif state is TaskState.CANCELLED:
        run.tasks_cancelled += 1


def _maybe_finish_run(run: Run, now: datetime) -> None:
    if RunState(run.state).is_terminal or run.tasks_completed < run.tasks_total:
        return
    run.state = finished_run_state(cancelled=run.tasks_cancelled, failed=run.tasks_failed).value
    run.completed_at = now
    _bump(run)


def _drop_outbox(session: Session, task: Task, *, through_attempt: int | None = None) -> None:
    """Remove outbox rows of attempts that are consumed (started, finished or superseded);
    every row of the task when ``through_attempt`` is ``None``."""
    stmt = delete(DispatchOutbox).where(
        DispatchOutbox.run_id == task.run_id, DispatchOutbox.task_key == task.task_key
    )
    if through_attempt is not None:
        stmt = stmt.where(DispatchOutbox.attempt <= through_attempt)
    session.execute(stmt)


def _end_task(
    session: Session,
    run: Run,
    task: Task,
    state: TaskState,
    kind: EventKind,
    now: datetime,
    *,
    detail: dict[str, Any] | None = None,
) -> None:
    """Move a non-terminal task to a terminal state that no worker reported (cascades,
    cancellation): counted, no ``completed_at``, outbox rows dropped."""
    previous = task.state
    task.state = state.value
    task.retry_not_before = None
    task.heartbeat_deadline = None
    _bump(task)
    _count_terminal(run, state)
    _drop_outbox(session, task)
    add_event(session, task, kind, now, from_state=previous, detail=detail)


def _edges_from(
    session: Session, run: Run, upstream_key: str
) -> list[tuple[TaskDependency, Task | None]]:
    """The outgoing edges of ``upstream_key`` with their downstream tasks, in one query
    (rows already in the session keep their unflushed changes)."""
    if run.tasks_total <= 1:
        # Edges join two tasks of one run: a one-task run has none, so skip the round trip.
        return []
    stmt = (
        select(TaskDependency, Task)
        .outerjoin(
            Task,
            and_(
                Task.run_id == TaskDependency.run_id,
                Task.task_key == TaskDependency.downstream_key,
            ),
        )
        .where(TaskDependency.run_id == run.run_id, TaskDependency.upstream_key == upstream_key)
    )
    return [(edge, task) for edge, task in session.execute(stmt)]


def _downstream(run: Run, edge: TaskDependency, task: Task | None) -> Task:
    if task is None:  # edges and tasks are written together; a gap is corruption
        raise LookupError(f"task {edge.downstream_key!r} of run {run.run_id!r} is missing")
    return task


def _cascade(session: Session, run: Run, origin: Task, state: TaskState, now: datetime) -> None:
    """Skip (after a failure) or cancel every transitive downstream task (T11, T12)."""
    first_hop = EdgeResolution.FAILED if state is TaskState.SKIPPED else EdgeResolution.CANCELLED
    later_hops = EdgeResolution.SKIPPED if state is TaskState.SKIPPED else EdgeResolution.CANCELLED
    kind = EventKind.SKIPPED if state is TaskState.SKIPPED else EventKind.CANCELLED
    queue: deque[tuple[str, EdgeResolution]] = deque([(origin.task_key, first_hop)])
    while queue:
        upstream_key, resolution = queue.popleft()
        for edge, found in _edges_from(session, run, upstream_key):
            if edge.resolution is None:
                edge.satisfied = False
                edge.resolution = resolution.value
                edge.satisfied_at = now
            downstream = _downstream(run, edge, found)
            if TaskState(downstream.state).is_terminal:
                continue
            _end_task(session, run, downstream, state, kind, now, detail={"upstream": upstream_key})
            queue.append((downstream.task_key, later_hops))


def _make_ready(session: Session, run: Run, task: Task, now: datetime) -> bool:
    """Returns whether the task became READY (the caller then notifies the dispatcher)."""
    previous = task.state
    if run.cancel_requested:
        # D7: nothing new starts in a run being cancelled.
        _end_task(session, run, task, TaskState.CANCELLED, EventKind.CANCELLED, now)
        return False
    task.state = TaskState.READY.value
    task.ready_at = now
    _bump(task)
    add_event(session, task, EventKind.READY, now, from_state=previous)
    return True


def _satisfy_downstream(session: Session, run: Run, task: Task, now: datetime) -> None:
    """T2: mark each outgoing edge satisfied once; a downstream whose edges are all
    satisfied becomes READY."""
    ready = False
    for edge, found in _edges_from(session, run, task.task_key):
        if edge.satisfied:
            continue
        edge.satisfied = True
        edge.resolution = EdgeResolution.SUCCESS.value
        edge.satisfying_attempt = task.attempt
        edge.satisfied_at = now
        downstream = _downstream(run, edge, found)
        downstream.deps_satisfied_count += 1
        if (
            downstream.state == TaskState.BLOCKED
            and downstream.deps_satisfied_count >= downstream.deps_total
        ):
            ready = _make_ready(session, run, downstream, now) or ready
    if ready:
        # One NOTIFY per run: PostgreSQL folds identical ones of a transaction anyway.
        notify_dispatcher(session, run.run_id)


# --- trigger --------------------------------------------------------------------------------


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
        state=RunState.RUNNING.value,
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
    session.add(run)
    session.flush()
    rows: list[Task] = []
    edges: list[TaskDependency] = []
    for planned in tasks:
        ready = not planned.depends_on
        rows.append(
            Task(
                run_id=run_id,
                task_key=planned.key,
                tenant_id=scope.tenant_id,
                workspace_id=scope.workspace_id,
                state=(TaskState.READY if ready else TaskState.BLOCKED).value,
                attempt=0,
                attempt_id=None,
                asset_key=planned.asset_key,
                partition_key=planned.partition_key,
                deps_total=len(planned.depends_on),
                deps_satisfied_count=0,
                max_attempts=planned.max_attempts,
                heartbeat_timeout_sec=planned.heartbeat_timeout_sec,
                requires_visible_output=planned.requires_visible_output,
                ready_at=now if ready else None,
                row_version=1,
            )
        )
        edges.extend(
            TaskDependency(
                run_id=run_id,
                upstream_key=upstream,
                downstream_key=planned.key,
                tenant_id=scope.tenant_id,
                workspace_id=scope.workspace_id,
                satisfied=False,
            )
            for upstream in planned.depends_on
        )
    session.add_all(rows)
    session.add_all(edges)
    session.flush()
    if not tasks:
        _maybe_finish_run(run, now)
    if any(not planned.depends_on for planned in tasks):
        notify_dispatcher(session, run_id)
    return run


# --- dispatch -------------------------------------------------------------------------------


@dataclass(frozen=True)
class DispatchRequest:
    """An outbox row the caller may now hand to the provider."""

    dispatch_id: str
    run_id: str
    task_key: str
    attempt: int
    attempt_id: str
    worker_queue: str


def _consumed(task: Task, attempt: int) -> bool:
    """Upstream 2.4: an attempt is consumed once superseded, started or finished."""
    if task.attempt > attempt:
        return True
    return task.attempt == attempt and task.state in (
        TaskState.RUNNING,
        TaskState.RETRY_WAIT,
        *(s.value for s in TaskState if s.is_terminal),
    )


def request_dispatch(
    session: Session,
    scope: Scope,
    run_id: str,
    task_key: str,
    *,
    now: datetime,
    worker_queue: str = DEFAULT_WORKER_QUEUE,
    attempt: int | None = None,
) -> DispatchRequest | None:
    """DispatchRequested (T3): a READY task (attempt 1) or a RETRY_WAIT task (next attempt)
    becomes DISPATCHED with a PENDING outbox row. Returns ``None`` when nothing applies: the
    task is gone, terminal, already dispatched, or its run is being cancelled (then a
    not-yet-started task is cancelled instead, design D7)."""
    run = lock_run(session, scope, run_id)
    task = get_task(session, scope, run_id, task_key) if run else None
    if run is None or task is None:
        return None
    requested = apply_dispatch_request(
        session,
        run,
        task,
        now=now,
        worker_queue=worker_queue,
        attempt=attempt,
        exists=lambda dispatch: session.get(DispatchOutbox, dispatch) is not None,
    )
    if requested is None:
        return None
    notify_dispatcher(session, run_id)
    return requested[0]


def apply_dispatch_request(
    session: Session,
    run: Run,
    task: Task,
    *,
    now: datetime,
    exists: Callable[[str], bool],
    worker_queue: str = DEFAULT_WORKER_QUEUE,
    attempt: int | None = None,
) -> tuple[DispatchRequest, DispatchOutbox] | None:
    """The body of :func:`request_dispatch` for a run the caller has locked and its task;
    ``exists`` tells whether an outbox row of a dispatch id is there already. Sends no
    NOTIFY (the caller does, once)."""
    state = TaskState(task.state)
    if state not in (TaskState.READY, TaskState.RETRY_WAIT):
        return None
    if run.cancel_requested:
        _end_task(session, run, task, TaskState.CANCELLED, EventKind.CANCELLED, now)
        _maybe_finish_run(run, now)
        return None
    next_attempt = max(task.attempt, 1) if state is TaskState.READY else task.attempt + 1
    if attempt is not None and attempt != next_attempt:
        return None
    if state is TaskState.RETRY_WAIT and next_attempt > task.max_attempts:
        return None
    dispatch = make_dispatch_id(task.run_id, task.task_key, next_attempt)
    if exists(dispatch):
        return None
    new_attempt_id = deterministic_attempt_id(dispatch)
    row = DispatchOutbox(
        dispatch_id=dispatch,
        tenant_id=task.tenant_id,
        workspace_id=task.workspace_id,
        run_id=task.run_id,
        task_key=task.task_key,
        attempt=next_attempt,
        attempt_id=new_attempt_id,
        worker_queue=worker_queue,
        status=OutboxStatus.PENDING.value,
        created_at=now,
        redispatch_count=0,
        delivery_attempts=0,
        row_version=1,
    )
    session.add(row)
    previous = task.state
    task.state = TaskState.DISPATCHED.value
    task.attempt = next_attempt
    task.attempt_id = new_attempt_id
    task.dispatched_at = now
    task.retry_not_before = None
    task.heartbeat_deadline = None
    _bump(task)
    # ``exists`` ruled a repeat out under the run lock; the key stays as the last guard.
    add_event(
        session,
        task,
        EventKind.DISPATCH_REQUESTED,
        now,
        from_state=previous,
        detail={"dispatchId": dispatch},
        idempotency_key=f"dispatch_req:{dispatch}",
    )
    request = DispatchRequest(
        dispatch_id=dispatch,
        run_id=task.run_id,
        task_key=task.task_key,
        attempt=next_attempt,
        attempt_id=new_attempt_id,
        worker_queue=worker_queue,
    )
    return request, row


def recreate_dispatch(
    session: Session, scope: Scope, run_id: str, task_key: str, *, now: datetime
) -> DispatchRequest | None:
    """Sweeper repair for a DISPATCHED task whose outbox row is missing: recreate the
    PENDING row of the current attempt (same dispatch id and attempt id)."""
    run = lock_run(session, scope, run_id)
    task = get_task(session, scope, run_id, task_key) if run else None
    if run is None or task is None or task.state != TaskState.DISPATCHED or not task.attempt_id:
        return None
    dispatch = make_dispatch_id(run_id, task_key, task.attempt)
    if session.get(DispatchOutbox, dispatch) is not None:
        return None
    session.add(
        DispatchOutbox(
            dispatch_id=dispatch,
            tenant_id=scope.tenant_id,
            workspace_id=scope.workspace_id,
            run_id=run_id,
            task_key=task_key,
            attempt=task.attempt,
            attempt_id=task.attempt_id,
            worker_queue=DEFAULT_WORKER_QUEUE,
            status=OutboxStatus.PENDING.value,
            created_at=now,
            redispatch_count=0,
            delivery_attempts=0,
            row_version=1,
        )
    )
    notify_dispatcher(session, run_id)
    return DispatchRequest(
        dispatch_id=dispatch,
        run_id=run_id,
        task_key=task_key,
        attempt=task.attempt,
        attempt_id=task.attempt_id,
        worker_queue=DEFAULT_WORKER_QUEUE,
    )


def record_enqueued(
    session: Session,
    scope: Scope,
    dispatch_id: str,
    *,
    cloud_task_id: str,
    now: datetime,
    envelope_keys: Sequence[str],
    push_delivery: bool,
    deduplicated: bool = False,
) -> bool:
    """DispatchEnqueued: the first acknowledgement of a PENDING row makes it CREATED.
    With ``push_delivery`` (the built-in http provider) the row is queued for delivery.
    ``envelope_keys`` (the dispatched envelope's shape, never the token) go to the task
    history. Returns whether the row changed."""
    # Lock order is run, then outbox and task rows, as in every other fact: /started and
    # cancel delete outbox rows under the run lock, so taking the row first could deadlock.
    run_id = session.scalar(
        select(DispatchOutbox.run_id).where(DispatchOutbox.dispatch_id == dispatch_id)
    )
    if run_id is None or lock_run(session, scope, run_id) is None:
        return False
    result = session.execute(
        update(DispatchOutbox)
        .where(
            DispatchOutbox.dispatch_id == dispatch_id,
            DispatchOutbox.tenant_id == scope.tenant_id,
            DispatchOutbox.workspace_id == scope.workspace_id,
            DispatchOutbox.status == OutboxStatus.PENDING,
        )
        .values(
            status=OutboxStatus.CREATED.value,
            cloud_task_id=cloud_task_id,
            created_at=now,
            enqueued_at=now,
            delivery_state=DeliveryState.QUEUED.value if push_delivery else None,
            next_delivery_at=now if push_delivery else None,
            row_version=DispatchOutbox.row_version + 1,
        )
        .returning(DispatchOutbox.run_id, DispatchOutbox.task_key, DispatchOutbox.attempt)
    ).one_or_none()
    if result is None:
        return False
    task = get_task(session, scope, result.run_id, result.task_key)
    if task is not None and task.attempt == result.attempt:
        add_event(
            session,
            task,
            EventKind.DISPATCH_ENQUEUED,
            now,
            from_state=task.state,
            detail={
                "dispatchId": dispatch_id,
                "cloudTaskId": cloud_task_id,
                "deduplicated": deduplicated,
                "envelopeKeys": list(envelope_keys),
            },
        )
    return True


# --- callbacks ------------------------------------------------------------------------------


def apply_started(session: Session, run: Run, task: Task, *, worker_id: str, now: datetime) -> bool:
    """TaskStarted (T4) for the task's current attempt; a repeat is a no-op."""
    if TaskState(task.state).is_terminal:
        return False
    if not insert_keyed_event(
        session,
        task,
        EventKind.STARTED,
        now,
        from_state=task.state,
        to_state=TaskState.RUNNING.value,
        detail={"workerId": worker_id},
        idempotency_key=f"started:{task.run_id}:{task.task_key}:{task.attempt}",
    ):
        return False
    task.state = TaskState.RUNNING.value
    task.started_at = now
    task.last_heartbeat_at = None
    task.heartbeat_deadline = _deadline(task, now)
    _bump(task)
    _drop_outbox(session, task, through_attempt=task.attempt)
    return True


def _deadline(task: Task, last_sign_of_life: datetime) -> datetime:
    return last_sign_of_life + timedelta(seconds=task.heartbeat_timeout_sec)


def apply_heartbeat(
    session: Session,
    task: Task,
    *,
    now: datetime,
    progress_pct: int | None,
    message: str | None,
) -> bool:
    """TaskHeartbeat (T5): refresh ``last_heartbeat_at`` of the current attempt. No run
    lock: a conditional update on the task row is enough and keeps heartbeats cheap."""
    values: dict[str, Any] = {"last_heartbeat_at": now}
    if task.state == TaskState.RUNNING:
        values["heartbeat_deadline"] = _deadline(task, now)
    if progress_pct is not None:
        values["progress_pct"] = progress_pct
    if message is not None:
        values["progress_message"] = message
    result = session.execute(
        update(Task)
        .where(
            Task.run_id == task.run_id,
            Task.task_key == task.task_key,
            Task.attempt == task.attempt,
            Task.attempt_id == task.attempt_id,
            Task.state.not_in([s.value for s in TaskState if s.is_terminal]),
        )
        .values(**values)
    )
    return bool(getattr(result, "rowcount", 0))


@dataclass(frozen=True)
class Completion:
    """What a worker (or the reaper) reports for one attempt."""

    outcome: str  # SUCCEEDED | FAILED | CANCELLED
    worker_id: str
    error: dict[str, Any] | None = None  # wire TaskError with retryable normalised
    error_message: str | None = None
    output: dict[str, Any] | None = None  # wire TaskOutput
    metrics: dict[str, Any] | None = None
    cancelled_during_phase: str | None = None
    partial_progress: Any = None
    retryable: bool = True


def _lineage_ref(task: Task, output: dict[str, Any] | None) -> str:
    ref: dict[str, Any] = {"runId": task.run_id, "taskKey": task.task_key, "attempt": task.attempt}
    output = output or {}
    for key in ("materializationId", "deltaTable", "deltaVersion"):
        if output.get(key) is not None:
            ref[key] = output[key]
    partition = output.get("deltaPartition") or task.partition_key
    if partition is not None:
        ref["deltaPartition"] = partition
    return json.dumps(ref, separators=(",", ":"))


def _record_output(task: Task, output: dict[str, Any] | None, now: datetime) -> None:
    output = output or {}
    task.output = output or None
    task.materialization_id = output.get("materializationId")
    task.delta_table = output.get("deltaTable")
    task.delta_version = output.get("deltaVersion")
    task.delta_partition = output.get("deltaPartition")
    task.execution_lineage_ref = _lineage_ref(task, output)
    visibility = output.get("outputVisibilityState")
    if visibility is None:
        return
    task.output_visibility_state = visibility
    if visibility == VisibilityState.VISIBLE:
        published = output.get("publishedAt")
        task.published_at = _parse_wire_time(published) if published else now
    elif visibility == VisibilityState.FAILED:
        task.publish_error = output.get("publishError")


def _parse_wire_time(value: str) -> datetime:
    return parse_timestamp(value)


def _completion_outcome(
    run: Run, task: Task, completion: Completion, now: datetime
) -> tuple[TaskState, datetime | None]:
    """The state a completion moves the task to, and the retry's earliest time if it waits
    for one; decided before anything is written, so the keyed event carries it."""
    if completion.outcome == "SUCCEEDED":
        return TaskState.SUCCEEDED, None
    if completion.outcome == "CANCELLED":
        return TaskState.CANCELLED, None
    retry = completion.retryable and task.attempt < task.max_attempts
    if retry and not run.cancel_requested:
        return TaskState.RETRY_WAIT, retry_not_before(now, task.attempt)
    # D7: a retryable failure in a run being cancelled ends the task as CANCELLED instead
    # of waiting for a retry nobody will run.
    return (TaskState.CANCELLED if retry else TaskState.FAILED), None


def apply_completion(
    session: Session, run: Run, task: Task, completion: Completion, *, now: datetime
) -> bool:
    """TaskCompletionRecorded (T6-T9) for the task's current attempt, with every derived
    effect. The first applied completion of an attempt wins; later ones are no-ops."""
    if TaskState(task.state).is_terminal:
        return False
    previous = task.state
    kind = EventKind.REAPED if completion.worker_id == ANTI_ENTROPY_WORKER else EventKind.COMPLETED
    detail: dict[str, Any] = {"outcome": completion.outcome, "workerId": completion.worker_id}
    if completion.error_message:
        detail["errorMessage"] = completion.error_message
    if completion.error is not None:
        detail["error"] = completion.error
    if completion.metrics is not None:
        detail["metrics"] = completion.metrics
    if completion.cancelled_during_phase is not None:
        detail["cancelledDuringPhase"] = completion.cancelled_during_phase
    if completion.partial_progress is not None:
        detail["partialProgress"] = json.dumps(completion.partial_progress)
    state, retry_at = _completion_outcome(run, task, completion, now)
    if retry_at is not None:
        detail["retryNotBefore"] = format_timestamp(retry_at)
    # The keyed event goes first so a repeat stops here, before any row has changed.
    if not insert_keyed_event(
        session,
        task,
        kind,
        now,
        from_state=previous,
        to_state=state.value,
        detail=detail,
        idempotency_key=f"finished:{task.run_id}:{task.task_key}:{task.attempt}",
    ):
        return False
    # No autoflush until every change is made: the flush then writes the task and the run
    # row once each instead of once per statement that happens to run in between.
    with session.no_autoflush:
        task.state = state.value
        task.metrics = completion.metrics
        task.heartbeat_deadline = None
        task.retry_not_before = retry_at
        _bump(task)
        if previous != TaskState.RUNNING:
            # A RUNNING attempt has no outbox rows: /started dropped them under this run
            # lock, and rows are only created for READY, RETRY_WAIT or DISPATCHED tasks.
            _drop_outbox(session, task, through_attempt=task.attempt)
        if state is TaskState.SUCCEEDED:
            task.error_message = None
            task.error = None
            _record_output(task, completion.output, now)
        elif completion.outcome != "CANCELLED":
            task.error_message = completion.error_message
            task.error = completion.error
            if completion.output:
                task.output = completion.output
        if state is TaskState.RETRY_WAIT:
            notify_dispatcher(session, run.run_id)
        else:
            task.completed_at = now
            _count_terminal(run, state)
            if state is TaskState.SUCCEEDED:
                _satisfy_downstream(session, run, task, now)
            else:
                cascade = TaskState.SKIPPED if state is TaskState.FAILED else TaskState.CANCELLED
                _cascade(session, run, task, cascade, now)
        _maybe_finish_run(run, now)
    return True


# --- cancel ---------------------------------------------------------------------------------


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
    _bump(run)
    stmt = select(Task).where(
        Task.run_id == run_id,
        Task.state.in_([s.value for s in CANCELLABLE_TASK_STATES]),
    )
    for task in session.scalars(stmt):
        _end_task(session, run, task, TaskState.CANCELLED, EventKind.CANCELLED, now)
    _maybe_finish_run(run, now)
    return CancelDisposition.CANCELLED, run


# --- sweeper repairs ------------------------------------------------------------------------


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
) -> bool:
    """A synthetic FAILED completion with no error object (so retryable) for an attempt
    that went silent (R4 reaper: ``heartbeat_timeout_anti_entropy``) or could not be
    delivered (``dispatch_timeout``)."""
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
    )


def cancel_unstarted_task(
    session: Session, scope: Scope, run_id: str, task_key: str, *, now: datetime
) -> bool:
    """D7 repair: a READY, DISPATCHED or RETRY_WAIT task of a cancel-requested run is
    CANCELLED (upstream leaves it to be re-dispatched forever)."""
    run = lock_run(session, scope, run_id)
    task = get_task(session, scope, run_id, task_key) if run else None
    if run is None or task is None or not run.cancel_requested:
        return False
    if task.state not in CANCELLABLE_TASK_STATES:
        return False
    _end_task(session, run, task, TaskState.CANCELLED, EventKind.CANCELLED, now)
    _maybe_finish_run(run, now)
    return True


def note_redispatch(
    session: Session, scope: Scope, dispatch_id: str, *, now: datetime, cloud_task_id: str
) -> DispatchOutbox | None:
    """Record a sweeper re-send of a stuck DISPATCHED attempt: counted, and its clock restarted
    so the next re-send waits a full backoff."""
    run_id = session.scalar(
        select(DispatchOutbox.run_id).where(DispatchOutbox.dispatch_id == dispatch_id)
    )
    if run_id is None or lock_run(session, scope, run_id) is None:
        return None
    row = session.get(DispatchOutbox, dispatch_id, with_for_update=True)
    if row is None or row.tenant_id != scope.tenant_id or row.workspace_id != scope.workspace_id:
        return None
    row.redispatch_count += 1
    row.created_at = now
    row.cloud_task_id = cloud_task_id
    row.row_version += 1
    task = get_task(session, scope, row.run_id, row.task_key)
    if task is not None:
        add_event(
            session,
            task,
            EventKind.REDISPATCHED,
            now,
            from_state=task.state,
            detail={"dispatchId": dispatch_id, "redispatch": row.redispatch_count},
        )
    return row
