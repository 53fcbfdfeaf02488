"""Batched facts of the dispatcher's hot path: DispatchRequested for many tasks, and the
push queue's delivered outcomes recorded together. A row consumed or re-leased meanwhile is
left alone and never lost or duplicated."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from arco_orchestration.db import Database
from arco_orchestration.delivery import Delivered, claim_due_deliveries, record_deliveries
from arco_orchestration.facts import (
    DispatchSnapshot,
    Enqueued,
    EventKind,
    cancel_run,
    record_enqueues,
    request_dispatch,
    request_dispatches,
)
from arco_orchestration.models import DispatchOutbox, Task, TaskEvent
from arco_orchestration.states import DeliveryState, OutboxStatus, TaskState
from arco_testkit.clock import T0
from arco_testkit.facts import (
    failed,
    finish,
    load_task,
    outbox_by_dispatch_id,
    outbox_row,
    planned,
    set_cancel_requested,
    start,
    task_events,
    trigger,
)
from arco_testkit.values import SCOPE

LEASE = timedelta(seconds=60)


def queue_now(dispatch: DispatchSnapshot) -> Enqueued:
    return Enqueued(dispatch.dispatch_id, dispatch.run_id, f"name-{dispatch.task_key}", ["k"])


def test_a_batch_applies_each_task_s_own_rules(database: Database) -> None:
    """READY tasks of two runs are requested; a task of a run being cancelled is cancelled
    instead; an unknown task and one already dispatched get ``None``."""
    trigger(database, "run1", [planned("a"), planned("b")])
    trigger(database, "run2", [planned("a")])
    with database.transaction() as session:
        cancel_run(session, SCOPE, "run2", reason=None, now=T0)
    with database.transaction() as session:
        # The cancel ended run2's READY task already; force the legacy READY state back.
        task = session.get(Task, ("run2", "a"))
        assert task is not None
        task.state = TaskState.READY.value
    refs = [("run1", "a"), ("run2", "a"), ("run1", "nope"), ("run1", "b"), ("run1", "a")]
    with database.transaction() as session:
        results = request_dispatches(session, SCOPE, refs, now=T0, queue=queue_now)
    assert [r.dispatch_id if r else None for r in results] == [
        "dispatch:run1:a:1",
        None,
        None,
        "dispatch:run1:b:1",
        None,
    ]
    assert load_task(database, "run2", "a").state == TaskState.CANCELLED
    rows = {row.dispatch_id: row for row in outbox_by_dispatch_id(database)}
    assert sorted(rows) == ["dispatch:run1:a:1", "dispatch:run1:b:1"]
    for row in rows.values():
        assert (row.status, row.delivery_state) == (OutboxStatus.CREATED, DeliveryState.QUEUED)
    assert [e.kind for e in task_events(database, "run1", "a")] == [
        EventKind.DISPATCH_REQUESTED,
        EventKind.DISPATCH_ENQUEUED,
    ]


def test_without_queue_the_rows_stay_pending(database: Database) -> None:
    trigger(database, "run1", [planned("a"), planned("b")])
    with database.transaction() as session:
        request_dispatches(session, SCOPE, [("run1", "a"), ("run1", "b")], now=T0)
    assert {row.status for row in outbox_by_dispatch_id(database)} == {OutboxStatus.PENDING}
    assert task_events(database, "run1", "a", EventKind.DISPATCH_ENQUEUED) == []


def test_delivered_outcomes_of_a_batch_skip_consumed_and_released_rows(
    database: Database,
) -> None:
    trigger(database, "run1", [planned("a"), planned("b"), planned("c")])
    with database.transaction() as session:
        request_dispatches(session, SCOPE, [("run1", k) for k in "abc"], now=T0, queue=queue_now)
    with database.transaction() as session:
        claims = claim_due_deliveries(session, SCOPE, owner="pump", now=T0, lease=LEASE, limit=10)
    by_key = {claim.dispatch.task_key: claim for claim in claims}
    assert sorted(by_key) == ["a", "b", "c"]
    start(database, "run1", "b", now=T0)  # /started consumed b's row before the answer
    with database.transaction() as session:
        # c's lease expired and another pump holds it now: this claim no longer holds it.
        session.execute(
            update(DispatchOutbox)
            .where(DispatchOutbox.dispatch_id == "dispatch:run1:c:1")
            .values(lease_owner="other:0123456789abcdef")
        )
    delivered = [Delivered(by_key[key], 202) for key in "abc"]
    with database.transaction() as session:
        held = record_deliveries(session, SCOPE, delivered, now=T0)
    assert held == {by_key["a"].lease_token}
    a = outbox_row(database, "dispatch:run1:a:1")
    assert a is not None
    assert (a.delivery_state, a.lease_owner, a.last_delivery_status) == (
        DeliveryState.DELIVERED,
        None,
        202,
    )
    assert outbox_row(database, "dispatch:run1:b:1") is None
    c = outbox_row(database, "dispatch:run1:c:1")
    assert c is not None
    assert c.delivery_state == DeliveryState.QUEUED
    assert c.lease_owner is not None
    assert c.lease_owner.startswith("other:")
    assert len(task_events(database, "run1", "a", EventKind.DISPATCH_DELIVERED)) == 1
    assert task_events(database, "run1", "b", EventKind.DISPATCH_DELIVERED) == []
    assert task_events(database, "run1", "c", EventKind.DISPATCH_DELIVERED) == []


def test_a_batch_writes_the_task_rows_of_one_by_one_requests(database: Database) -> None:
    """A batch writes its task rows with one Core update, not the ORM's flush: the rows end
    as one request at a time (ORM objects) leaves them, for a READY task and a due retry
    (attempt 2, retry deadline cleared), and a task of a run being cancelled in the same
    batch is still cancelled."""
    later = T0 + timedelta(minutes=1)
    for run_id in ("one", "batch"):
        trigger(database, run_id, [planned("a", max_attempts=2), planned("b")])
        finish(database, run_id, "a", failed(), now=T0)  # a waits for its retry
    assert load_task(database, "batch", "a").retry_not_before is not None
    trigger(database, "gone", [planned("a")])
    set_cancel_requested(database, "gone")
    with database.transaction() as session:
        for key in "ab":
            assert request_dispatch(session, SCOPE, "one", key, now=later) is not None
    # The cancel first: its own statements would flush tasks planned before it.
    refs = [("gone", "a"), ("batch", "a"), ("batch", "b")]
    with database.transaction() as session:
        results = request_dispatches(session, SCOPE, refs, now=later)
    assert [r.attempt if r else None for r in results] == [None, 2, 1]
    assert _task_rows(database, "batch") == _task_rows(database, "one")
    a = load_task(database, "batch", "a")
    assert (a.state, a.attempt, a.retry_not_before, a.dispatched_at) == (
        TaskState.DISPATCHED,
        2,
        None,
        later,
    )
    assert load_task(database, "gone", "a").state == TaskState.CANCELLED


def _task_rows(database: Database, run_id: str) -> list[dict[str, Any]]:
    """Every column of the run's task rows but the run id and the attempt id (derived
    from the dispatch id, so from the run id)."""
    with database.transaction() as session:
        rows = session.execute(
            select(*Task.__table__.columns).where(Task.run_id == run_id).order_by(Task.task_key)
        ).mappings()
        return [{k: v for k, v in row.items() if k not in ("run_id", "attempt_id")} for row in rows]


def _written(database: Database, run_id: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every column of the run's outbox rows, and of its events but their ids, in id order."""
    outbox = DispatchOutbox.__table__.columns
    events = [c for c in TaskEvent.__table__.columns if c.key != "id"]
    with database.transaction() as session:
        rows = session.execute(select(*outbox).where(outbox.run_id == run_id)).mappings()
        history = session.execute(
            select(*events).where(TaskEvent.run_id == run_id).order_by(TaskEvent.id)
        ).mappings()
        return (
            sorted((dict(row) for row in rows), key=lambda row: row["dispatch_id"]),
            [dict(event) for event in history],
        )


def _without_run(values: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in row.items() if k != "run_id"} for row in values]


def _dispatch_one_by_one(database: Database, run_id: str, *, queued: bool) -> None:
    """The same facts as a batch, through the single-task path (ORM objects)."""
    with database.transaction() as session:
        for key in "ab":
            request = request_dispatch(session, SCOPE, run_id, key, now=T0)
            assert request is not None
            if queued:
                dispatch = DispatchSnapshot(
                    request.dispatch_id,
                    run_id,
                    key,
                    1,
                    "",
                    "",
                    "",
                    T0,
                    None,
                    0,
                    None,
                    0,
                    None,
                    None,
                )
                enqueued = queue_now(dispatch)
                record_enqueues(session, SCOPE, [enqueued], now=T0, push_delivery=True)


@pytest.mark.parametrize("queued", [False, True])
def test_a_batch_writes_the_rows_and_events_of_one_by_one_requests(
    database: Database, queued: bool
) -> None:
    """The multi-row inserts of a batch write what one request at a time writes (its outbox
    row and DispatchRequested, and with a queue the enqueue and DispatchEnqueued), and each
    task's events stay in order."""
    for run_id in ("one", "batch"):
        trigger(database, run_id, [planned("a"), planned("b")])
    _dispatch_one_by_one(database, "one", queued=queued)
    with database.transaction() as session:
        refs = [("batch", "a"), ("batch", "b")]
        request_dispatches(session, SCOPE, refs, now=T0, queue=queue_now if queued else None)
    one_rows, one_events = _written(database, "one")
    batch_rows, batch_events = _written(database, "batch")
    for row in (*one_rows, *batch_rows):
        row["dispatch_id"] = row["dispatch_id"].replace(row["run_id"], "RUN")
        row["attempt_id"] = None  # derived from the dispatch id, so from the run id
        row["cloud_task_id"] = row["cloud_task_id"] and "name"
    for event in (*one_events, *batch_events):
        event["attempt_id"] = None
        event["idempotency_key"] = event["idempotency_key"] and "key"
        if event["detail"]:
            event["detail"]["dispatchId"] = "id"
    assert _without_run(batch_rows) == _without_run(one_rows)
    assert len(batch_rows) == 2
    assert _without_run(batch_events) == _without_run(one_events)
    expected = [EventKind.DISPATCH_REQUESTED] + [EventKind.DISPATCH_ENQUEUED] * queued
    for key in "ab":
        assert [e.kind for e in task_events(database, "batch", key)][-len(expected) :] == expected
