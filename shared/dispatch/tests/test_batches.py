"""Batched facts of the dispatcher's hot path: DispatchRequested for many tasks, and the
push queue's delivered outcomes recorded together. A row consumed or re-leased meanwhile is
left alone and never lost or duplicated."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update

from arco_orchestration.db import Database
from arco_orchestration.delivery import Delivered, claim_due_deliveries, record_deliveries
from arco_orchestration.facts import (
    DispatchSnapshot,
    Enqueued,
    EventKind,
    cancel_run,
    request_dispatches,
)
from arco_orchestration.models import DispatchOutbox, Task
from arco_orchestration.states import DeliveryState, OutboxStatus, TaskState
from arco_testkit.clock import T0
from arco_testkit.facts import (
    load_task,
    outbox_by_dispatch_id,
    outbox_row,
    planned,
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
