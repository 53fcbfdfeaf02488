"""DispatchRequested (T3) and DispatchEnqueued, for one task or many in one transaction.

A batch shares only the I/O: its runs are locked with one query in ``run_id`` order (so two
batches lock in the same order and cannot deadlock, and single-run facts never wait in a
cycle), task and outbox rows are read with one query each, and the writes go out in one
flush. History events are inserted without per-row savepoints: a repeat is ruled out under
the run locks, and any failure (a unique key, a vanished row) rolls the whole batch back, so
the caller retries its rows one at a time and one bad row never takes the others with it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from arco_envelope import DEFAULT_WORKER_QUEUE
from arco_envelope import attempt_id as deterministic_attempt_id
from arco_envelope import dispatch_id as make_dispatch_id
from arco_orchestration.facts.graph import cancel_task, finish_run_if_done
from arco_orchestration.facts.keysets import pair_match, pair_params
from arco_orchestration.facts.snapshots import DispatchSnapshot
from arco_orchestration.facts.store import (
    EventKind,
    event_values,
    get_task,
    get_tasks,
    insert_rows,
    lock_run,
    lock_runs,
    notify_dispatcher,
    outbox_row_values,
    write_many,
)
from arco_orchestration.facts.transitions import TaskTransition, allows, transition
from arco_orchestration.models import DispatchOutbox, Run, Task, TaskEvent
from arco_orchestration.scope import Scope
from arco_orchestration.states import DeliveryState, OutboxStatus, TaskState


@dataclass(frozen=True)
class DispatchRequest:
    """An outbox row the caller may now hand to the provider."""

    dispatch_id: str
    run_id: str
    task_key: str
    attempt: int
    attempt_id: str
    worker_queue: str


@dataclass(frozen=True)
class Enqueued:
    """What a provider answered for one message, as the history records it."""

    dispatch_id: str
    run_id: str
    cloud_task_id: str
    envelope_keys: Sequence[str]
    deduplicated: bool = False


# For a provider whose queue is the outbox row: the enqueue to record for a dispatch just
# requested (its message name and envelope key set), in the same transaction.
QueueNow = Callable[[DispatchSnapshot], Enqueued]


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
    planned = _plan_dispatch(
        session, run, task, now=now, exists=exists, worker_queue=worker_queue, attempt=attempt
    )
    if planned is None:
        return None
    request, values, event = planned
    row = DispatchOutbox(**values)
    session.add(row)
    session.add(TaskEvent(**event))
    return request, row


def _plan_dispatch(
    session: Session,
    run: Run,
    task: Task,
    *,
    now: datetime,
    exists: Callable[[str], bool],
    worker_queue: str = DEFAULT_WORKER_QUEUE,
    attempt: int | None = None,
) -> tuple[DispatchRequest, dict[str, Any], dict[str, Any]] | None:
    """:func:`apply_dispatch_request` up to the writes: the task changed (or cancelled),
    and the values of its new outbox row and DispatchRequested event, for the caller to
    write as objects (one request) or as rows of a multi-row insert (a batch)."""
    if not allows(task, TaskTransition.DISPATCH):
        return None
    if run.cancel_requested:
        cancel_task(session, run, task, now)
        finish_run_if_done(run, now)
        return None
    retry = task.state == TaskState.RETRY_WAIT
    next_attempt = task.attempt + 1 if retry else max(task.attempt, 1)
    if attempt is not None and attempt != next_attempt:
        return None
    if retry and next_attempt > task.max_attempts:
        return None
    dispatch = make_dispatch_id(task.run_id, task.task_key, next_attempt)
    if exists(dispatch):
        return None
    new_attempt_id = deterministic_attempt_id(dispatch)
    row = outbox_row_values(
        task,
        dispatch_id=dispatch,
        attempt=next_attempt,
        attempt_id=new_attempt_id,
        now=now,
        worker_queue=worker_queue,
    )
    previous = transition(task, TaskTransition.DISPATCH)
    task.attempt = next_attempt
    task.attempt_id = new_attempt_id
    task.dispatched_at = now
    task.retry_not_before = None
    task.heartbeat_deadline = None
    # ``exists`` ruled a repeat out under the run lock; the key stays as the last guard.
    event = event_values(
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
    return request, row, event


def _existing_dispatch_ids(session: Session, keys: Sequence[tuple[str, str]]) -> set[str]:
    dialect = session.get_bind().dialect.name
    params = pair_params(dialect, sorted(set(keys)))
    return set(session.scalars(_EXISTING_DISPATCH_IDS[dialect], params))


# Built once per dialect, with a text that does not depend on the number of keys (keysets).
_EXISTING_DISPATCH_IDS = {
    dialect: select(DispatchOutbox.dispatch_id).where(match)
    for dialect, match in pair_match(DispatchOutbox.run_id, DispatchOutbox.task_key).items()
}


def request_dispatches(
    session: Session,
    scope: Scope,
    refs: Sequence[tuple[str, str]],
    *,
    now: datetime,
    queue: QueueNow | None = None,
) -> list[DispatchRequest | None]:
    """:func:`request_dispatch` for each ``(run_id, task_key)``, in order; ``None`` where
    nothing applies. With ``queue`` every new row is acknowledged at once
    (:func:`acknowledge` on the row before it is even written), which a push-delivery
    provider may do because its queue is this row: no PENDING step, no second transaction,
    and no NOTIFY (see below).
    """
    if not refs:
        return []
    runs = lock_runs(session, scope, (run_id for run_id, _ in refs))
    tasks = get_tasks(session, scope, refs)
    existing = _existing_dispatch_ids(session, refs)
    results: list[DispatchRequest | None] = []
    rows: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    dispatched: list[Task] = []
    for run_id, task_key in refs:
        run, task = runs.get(run_id), tasks.get((run_id, task_key))
        planned = None
        if run is not None and task is not None:
            planned = _plan_dispatch(session, run, task, now=now, exists=existing.__contains__)
        if planned is None or task is None:
            results.append(None)
            continue
        request, row, event = planned
        dispatched.append(task)
        existing.add(request.dispatch_id)
        events.append(event)
        if queue is not None:
            enqueued = queue(DispatchSnapshot.of_values(row, task))
            row.update(_acknowledged(row["row_version"], enqueued, now=now, push_delivery=True))
            events.append(_enqueued_event(task, enqueued, now=now))
        rows.append(row)
        results.append(request)
    # Rows, not objects: one executemany per table for the batch, the task rows' UPDATE
    # included (the ORM's flush of a hundred new objects was a quarter of a dispatcher's CPU).
    write_many(session, dispatched)
    insert_rows(session, DispatchOutbox, rows)
    insert_rows(session, TaskEvent, events)
    if queue is None and any(results):
        # One wake-up per batch: listeners only need to know that there is work (PENDING
        # rows). Rows queued at once make no work for any dispatcher cycle, only for the
        # caller's own delivery pump, which its caller wakes: a NOTIFY would only make every
        # listening dispatcher, the caller first, run one more cycle that finds nothing.
        notify_dispatcher(session, next(r.run_id for r in results if r is not None))
    return results


def acknowledge(
    session: Session,
    row: DispatchOutbox,
    task: Task | None,
    enqueued: Enqueued,
    *,
    now: datetime,
    push_delivery: bool,
) -> None:
    """DispatchEnqueued on a PENDING row the caller has locked (with its run): CREATED,
    queued for push delivery with ``push_delivery`` (the built-in http provider), and the
    history event (``envelope_keys``: the dispatched envelope's shape, never the token)."""
    for column, value in _acknowledged(
        row.row_version, enqueued, now=now, push_delivery=push_delivery
    ).items():
        setattr(row, column, value)
    if task is None or task.attempt != row.attempt:
        return
    session.add(TaskEvent(**_enqueued_event(task, enqueued, now=now)))


def _acknowledged(
    row_version: int, enqueued: Enqueued, *, now: datetime, push_delivery: bool
) -> dict[str, Any]:
    """The outbox columns DispatchEnqueued sets on a PENDING row of ``row_version``."""
    return {
        "status": OutboxStatus.CREATED.value,
        "cloud_task_id": enqueued.cloud_task_id,
        "created_at": now,
        "enqueued_at": now,
        "delivery_state": DeliveryState.QUEUED.value if push_delivery else None,
        "next_delivery_at": now if push_delivery else None,
        "row_version": row_version + 1,
    }


def _enqueued_event(task: Task, enqueued: Enqueued, *, now: datetime) -> dict[str, Any]:
    """The DispatchEnqueued event of ``task`` (the row's attempt is the task's)."""
    return event_values(
        task,
        EventKind.DISPATCH_ENQUEUED,
        now,
        from_state=task.state,
        detail={
            "dispatchId": enqueued.dispatch_id,
            "cloudTaskId": enqueued.cloud_task_id,
            "deduplicated": enqueued.deduplicated,
            "envelopeKeys": list(enqueued.envelope_keys),
        },
    )


def record_enqueues(
    session: Session,
    scope: Scope,
    acknowledgements: Sequence[Enqueued],
    *,
    now: datetime,
    push_delivery: bool,
) -> set[str]:
    """DispatchEnqueued for many messages: the first acknowledgement of a PENDING row makes
    it CREATED (:func:`acknowledge`). Returns the dispatch ids whose row changed (those
    still PENDING; a row consumed or acknowledged meanwhile is left alone)."""
    if not acknowledgements:
        return set()
    # Lock order is run, then outbox and task rows, as in every other fact: /started and
    # cancel delete outbox rows under the run lock, so taking the row first could deadlock.
    runs = lock_runs(session, scope, (ack.run_id for ack in acknowledgements))
    by_id = {ack.dispatch_id: ack for ack in acknowledgements}
    rows = session.scalars(
        select(DispatchOutbox)
        .where(
            DispatchOutbox.dispatch_id.in_(sorted(by_id)),
            DispatchOutbox.tenant_id == scope.tenant_id,
            DispatchOutbox.workspace_id == scope.workspace_id,
            DispatchOutbox.status == OutboxStatus.PENDING.value,
        )
        .order_by(DispatchOutbox.dispatch_id)
        .with_for_update()
    ).all()
    rows = [row for row in rows if row.run_id in runs]
    tasks = get_tasks(session, scope, ((row.run_id, row.task_key) for row in rows))
    for row in rows:
        task = tasks.get((row.run_id, row.task_key))
        acknowledge(
            session, row, task, by_id[row.dispatch_id], now=now, push_delivery=push_delivery
        )
    return {row.dispatch_id for row in rows}


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
    """:func:`record_enqueues` for one message known by its dispatch id. Returns whether
    the row changed."""
    run_id = session.scalar(
        select(DispatchOutbox.run_id).where(DispatchOutbox.dispatch_id == dispatch_id)
    )
    if run_id is None:
        return False
    enqueued = Enqueued(dispatch_id, run_id, cloud_task_id, envelope_keys, deduplicated)
    changed = record_enqueues(session, scope, [enqueued], now=now, push_delivery=push_delivery)
    return dispatch_id in changed
