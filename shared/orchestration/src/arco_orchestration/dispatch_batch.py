"""The dispatcher's facts for many tasks in one transaction: DispatchRequested (optionally
with the push queue's DispatchEnqueued folded in) and DispatchEnqueued of PENDING rows.

Each applies exactly the per-task rules of :mod:`arco_orchestration.facts`; only the I/O is
shared: the runs are locked with one query in ``run_id`` order (so two batches lock in the
same order and cannot deadlock, and single-run facts never wait in a cycle), task and outbox
rows are read with one query each, and the writes go out in one flush. History events are
inserted without per-row savepoints: a repeat is ruled out under the run locks, and any
failure (a unique key, a vanished row) rolls the whole batch back, so the caller retries its
rows one at a time and one bad row never takes the others with it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, tuple_
from sqlalchemy.orm import Session

from arco_orchestration.facts import (
    DispatchRequest,
    EventKind,
    add_event,
    apply_dispatch_request,
    get_tasks,
    lock_runs,
    notify_dispatcher,
)
from arco_orchestration.models import DispatchOutbox, Task
from arco_orchestration.scope import Scope
from arco_orchestration.snapshots import DispatchSnapshot
from arco_orchestration.states import DeliveryState, OutboxStatus


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


def _existing_dispatch_ids(session: Session, keys: Sequence[tuple[str, str]]) -> set[str]:
    stmt = select(DispatchOutbox.dispatch_id).where(
        tuple_(DispatchOutbox.run_id, DispatchOutbox.task_key).in_(sorted(set(keys)))
    )
    return set(session.scalars(stmt))


def request_dispatches(
    session: Session,
    scope: Scope,
    refs: Sequence[tuple[str, str]],
    *,
    now: datetime,
    queue: QueueNow | None = None,
) -> list[DispatchRequest | None]:
    """:func:`facts.request_dispatch` for each ``(run_id, task_key)``, in order; ``None``
    where nothing applies. With ``queue`` every new row is acknowledged at once
    (:func:`record_enqueue` on the row before it is even written), which a push-delivery
    provider may do because its queue is this row: no PENDING step, no second transaction.
    """
    if not refs:
        return []
    runs = lock_runs(session, scope, (run_id for run_id, _ in refs))
    tasks = get_tasks(session, scope, refs)
    existing = _existing_dispatch_ids(session, refs)
    results: list[DispatchRequest | None] = []
    for run_id, task_key in refs:
        run, task = runs.get(run_id), tasks.get((run_id, task_key))
        requested = None
        if run is not None and task is not None:
            requested = apply_dispatch_request(
                session, run, task, now=now, exists=existing.__contains__
            )
        if requested is None:
            results.append(None)
            continue
        request, row = requested
        existing.add(request.dispatch_id)
        if queue is not None:
            enqueued = queue(DispatchSnapshot.of(row, task))
            record_enqueue(session, row, task, enqueued, now=now, push_delivery=True)
        results.append(request)
    if any(results):
        # One wake-up per batch: listeners only need to know that there is work.
        notify_dispatcher(session, next(r.run_id for r in results if r is not None))
    return results


def record_enqueue(
    session: Session,
    row: DispatchOutbox,
    task: Task | None,
    enqueued: Enqueued,
    *,
    now: datetime,
    push_delivery: bool,
) -> None:
    """The effects of :func:`facts.record_enqueued` on a PENDING row the caller has locked
    (with its run): CREATED, queued for push delivery, and the history event."""
    row.status = OutboxStatus.CREATED.value
    row.cloud_task_id = enqueued.cloud_task_id
    row.created_at = now
    row.enqueued_at = now
    row.delivery_state = DeliveryState.QUEUED.value if push_delivery else None
    row.next_delivery_at = now if push_delivery else None
    row.row_version += 1
    if task is None or task.attempt != row.attempt:
        return
    add_event(
        session,
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
    """:func:`facts.record_enqueued` for many messages: returns the dispatch ids whose row
    changed (those still PENDING; a row consumed or acknowledged meanwhile is left alone)."""
    if not acknowledgements:
        return set()
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
        record_enqueue(
            session, row, task, by_id[row.dispatch_id], now=now, push_delivery=push_delivery
        )
    return {row.dispatch_id for row in rows}
