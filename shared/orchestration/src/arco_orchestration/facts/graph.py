"""Derived effects along a run's dependency graph: readiness (T2), the skip and cancel
cascades (T11, T12), run counters and run completion. Called by the facts with the run
locked, in their transaction.
"""

from __future__ import annotations

from collections import deque
from datetime import datetime
from typing import Any

from sqlalchemy import and_, select
from sqlalchemy.orm import Session

from arco_orchestration.facts.store import (
    EventKind,
    add_event,
    drop_outbox,
    known_without_downstream,
    notify_dispatcher,
)
from arco_orchestration.facts.transitions import (
    RunTransition,
    TaskTransition,
    allows,
    transition,
)
from arco_orchestration.models import Run, Task, TaskDependency
from arco_orchestration.states import EdgeResolution, RunState, TaskState, finished_run_state

_FINISH = {
    RunState.SUCCEEDED: RunTransition.SUCCEED,
    RunState.FAILED: RunTransition.FAIL,
    RunState.CANCELLED: RunTransition.CANCEL,
}


def count_terminal(run: Run, state: TaskState) -> None:
    run.tasks_completed += 1
    if state is TaskState.SUCCEEDED:
        run.tasks_succeeded += 1
    elif state is TaskState.FAILED:
        run.tasks_failed += 1
    elif state is TaskState.SKIPPED:
        run.tasks_skipped += 1
    elif state is TaskState.CANCELLED:
        run.tasks_cancelled += 1


def without_downstream(session: Session, run: Run, task_key: str) -> bool:
    """Whether it is known, without a query, that no edge leaves the task: edges join two
    tasks of one run, so a one-task run has none, and the callback's locked read tells
    whether its task has any."""
    return run.tasks_total <= 1 or known_without_downstream(session, run.run_id, task_key)


def finish_run_if_done(run: Run, now: datetime) -> None:
    """End a live run whose every task is terminal."""
    if RunState(run.state).is_terminal or run.tasks_completed < run.tasks_total:
        return
    state = finished_run_state(cancelled=run.tasks_cancelled, failed=run.tasks_failed)
    transition(run, _FINISH[state])
    run.completed_at = now


def end_task(
    session: Session,
    run: Run,
    task: Task,
    change: TaskTransition,
    kind: EventKind,
    now: datetime,
    *,
    detail: dict[str, Any] | None = None,
) -> None:
    """Move a non-terminal task to a terminal state that no worker reported (cascades,
    cancellation): counted, no ``completed_at``, outbox rows dropped."""
    previous = transition(task, change)
    task.retry_not_before = None
    task.heartbeat_deadline = None
    count_terminal(run, TaskState(task.state))
    drop_outbox(session, task)
    add_event(session, task, kind, now, from_state=previous, detail=detail)


def cancel_task(session: Session, run: Run, task: Task, now: datetime) -> None:
    """T10 / D7: a task that has not started, of a run being cancelled, is CANCELLED."""
    end_task(session, run, task, TaskTransition.CANCEL, EventKind.CANCELLED, now)


def _edges_from(
    session: Session, run: Run, upstream_key: str
) -> list[tuple[TaskDependency, Task | None]]:
    """The outgoing edges of ``upstream_key`` with their downstream tasks, in one query
    (rows already in the session keep their unflushed changes)."""
    if without_downstream(session, run, upstream_key):
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


def cascade(session: Session, run: Run, origin: Task, now: datetime) -> None:
    """Skip (after a failure: T11) or cancel (after a cancellation: T12) every transitive
    downstream task of ``origin``, breadth first."""
    skip = origin.state == TaskState.FAILED
    first_hop = EdgeResolution.FAILED if skip else EdgeResolution.CANCELLED
    later_hops = EdgeResolution.SKIPPED if skip else EdgeResolution.CANCELLED
    change = TaskTransition.SKIP_DOWNSTREAM if skip else TaskTransition.CANCEL_DOWNSTREAM
    kind = EventKind.SKIPPED if skip else EventKind.CANCELLED
    queue: deque[tuple[str, EdgeResolution]] = deque([(origin.task_key, first_hop)])
    while queue:
        upstream_key, resolution = queue.popleft()
        for edge, found in _edges_from(session, run, upstream_key):
            if edge.resolution is None:
                edge.satisfied = False
                edge.resolution = resolution.value
                edge.satisfied_at = now
            downstream = _downstream(run, edge, found)
            if not allows(downstream, change):
                continue
            end_task(session, run, downstream, change, kind, now, detail={"upstream": upstream_key})
            queue.append((downstream.task_key, later_hops))


def _make_ready(session: Session, run: Run, task: Task, now: datetime) -> bool:
    """Returns whether the task became READY (the caller then notifies the dispatcher)."""
    if run.cancel_requested:
        # D7: nothing new starts in a run being cancelled.
        cancel_task(session, run, task, now)
        return False
    previous = transition(task, TaskTransition.UNBLOCK)
    task.ready_at = now
    add_event(session, task, EventKind.READY, now, from_state=previous)
    return True


def satisfy_downstream(session: Session, run: Run, task: Task, now: datetime) -> None:
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
            allows(downstream, TaskTransition.UNBLOCK)
            and downstream.deps_satisfied_count >= downstream.deps_total
        ):
            ready = _make_ready(session, run, downstream, now) or ready
    if ready:
        # One NOTIFY per run: PostgreSQL folds identical ones of a transaction anyway.
        notify_dispatcher(session, run.run_id)
