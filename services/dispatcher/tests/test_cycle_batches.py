"""The cycle's batches: many tasks per transaction, a bad task or row isolated by the
one-at-a-time retry, the http provider's enqueue folded into the request, and a crash
between sending and recording that leaves rows re-sendable."""

from __future__ import annotations

from typing import Any

import pytest
from services.dispatcher.tests.conftest import MakeDispatcher

from arco_dispatch.http_provider import HttpQueueProvider
from arco_dispatch.memory_provider import MemoryProvider
from arco_dispatcher import cycle as cycle_module
from arco_envelope import cloud_task_name
from arco_orchestration.db import Database
from arco_orchestration.facts import EventKind, record_enqueues, request_dispatch
from arco_orchestration.models import TaskEvent
from arco_orchestration.states import DeliveryState, OutboxStatus, TaskState
from arco_testkit.clock import T0, FakeClock
from arco_testkit.facts import (
    load_task,
    outbox_by_dispatch_id,
    planned,
    start,
    task_events,
    trigger,
)
from arco_testkit.values import SCOPE


def _poison(database: Database, run_id: str, key: str) -> None:
    """A stray history event holding the idempotency key of ``key``'s first dispatch: its
    DispatchRequested then fails on the unique key."""
    with database.transaction() as session:
        session.add(
            TaskEvent(
                tenant_id=SCOPE.tenant_id,
                workspace_id=SCOPE.workspace_id,
                run_id=run_id,
                task_key=key,
                attempt=0,
                kind="ready",
                idempotency_key=f"dispatch_req:dispatch:{run_id}:{key}:1",
                at=T0,
            )
        )


def test_many_runs_are_requested_and_enqueued_in_batches(
    database: Database, make_dispatcher: MakeDispatcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cycle_module, "BATCH_SIZE", 2)
    for index in range(5):
        trigger(database, f"run{index}", [planned("a"), planned("b")])
    queue = MemoryProvider()
    summary = make_dispatcher(queue).cycle.run()
    assert (summary.ready_dispatch_emitted, summary.dispatch_enqueued, summary.errors) == (
        10,
        10,
        [],
    )
    assert {row.status for row in outbox_by_dispatch_id(database)} == {OutboxStatus.CREATED}
    assert len(queue.peek()) == 10
    for index in range(5):
        for key in "ab":
            kinds = [e.kind for e in task_events(database, f"run{index}", key)]
            assert kinds == [EventKind.DISPATCH_REQUESTED, EventKind.DISPATCH_ENQUEUED]


def test_a_bad_task_fails_alone_and_its_batch_is_still_dispatched(
    database: Database, make_dispatcher: MakeDispatcher
) -> None:
    trigger(database, "run1", [planned("a"), planned("b"), planned("c")])
    _poison(database, "run1", "b")
    queue = MemoryProvider()
    summary = make_dispatcher(queue).cycle.run()
    assert summary.ready_dispatch_emitted == 2
    assert [(e.kind, e.id) for e in summary.errors] == [("ready_dispatch_failed", "run1:b")]
    assert load_task(database, "run1", "b").state == TaskState.READY
    assert sorted(m.name for m in queue.peek()) == sorted(
        cloud_task_name(f"dispatch:run1:{key}:1") for key in "ac"
    )
    assert sorted(row.dispatch_id for row in outbox_by_dispatch_id(database)) == [
        "dispatch:run1:a:1",
        "dispatch:run1:c:1",
    ]


def test_a_task_dispatched_meanwhile_is_skipped_without_a_second_row(
    database: Database, make_dispatcher: MakeDispatcher, clock: FakeClock
) -> None:
    """A task another dispatcher requested (and whose attempt already started) between the
    scan and the batch: skipped, its row untouched, the others dispatched."""
    trigger(database, "run1", [planned("a"), planned("b")])
    dispatcher = make_dispatcher(MemoryProvider())
    original = cycle_module.batches

    def after_the_scan(items: Any, size: int) -> Any:
        if items and not isinstance(items[0], str):  # the ready phase's candidates
            with database.transaction() as session:
                request_dispatch(session, SCOPE, "run1", "a", now=clock())
            start(database, "run1", "a", now=clock())
        return original(items, size)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cycle_module, "batches", after_the_scan)
        summary = dispatcher.cycle.run()
    assert (summary.ready_dispatch_emitted, summary.ready_dispatch_skipped) == (1, 1)
    assert load_task(database, "run1", "a").state == TaskState.RUNNING
    assert [row.dispatch_id for row in outbox_by_dispatch_id(database)] == ["dispatch:run1:b:1"]
    assert len(task_events(database, "run1", "a", EventKind.DISPATCH_REQUESTED)) == 1


def test_the_http_provider_queues_the_row_in_the_request_transaction(
    database: Database, make_dispatcher: MakeDispatcher
) -> None:
    trigger(database, "run1", [planned("a"), planned("b")])
    summary = make_dispatcher(HttpQueueProvider()).cycle.run()
    assert (summary.ready_dispatch_emitted, summary.dispatch_enqueued) == (2, 2)
    assert summary.dispatch_actions == 2
    for row in outbox_by_dispatch_id(database):
        assert row.status == OutboxStatus.CREATED
        assert row.delivery_state == DeliveryState.QUEUED
        assert row.next_delivery_at == T0
        assert row.cloud_task_id == cloud_task_name(row.dispatch_id)
    [enqueued] = task_events(database, "run1", "a", EventKind.DISPATCH_ENQUEUED)
    assert enqueued.detail is not None
    assert enqueued.detail["deduplicated"] is False
    assert "taskToken" in enqueued.detail["envelopeKeys"]
    # Nothing is left PENDING for a second step.
    assert make_dispatcher(HttpQueueProvider()).cycle.run().dispatch_actions == 0


def test_an_http_cycle_reads_pending_rows_with_its_candidates(
    database: Database,
    make_dispatcher: MakeDispatcher,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With a provider whose queue is the outbox row, the ready phase leaves nothing
    PENDING: the scan transaction also reads the PENDING rows (a row another process
    requested, here) instead of a transaction of their own after it, and hands them over."""
    trigger(database, "run1", [planned("a"), planned("b")])
    with database.transaction() as session:
        request_dispatch(session, SCOPE, "run1", "a", now=clock())
    dispatcher = make_dispatcher(HttpQueueProvider())
    opened = 0
    transaction = Database.transaction

    def counted(self: Database) -> Any:
        nonlocal opened
        opened += 1
        return transaction(self)

    monkeypatch.setattr(Database, "transaction", counted)
    summary = dispatcher.cycle.run()
    monkeypatch.undo()
    assert (summary.ready_dispatch_emitted, summary.dispatch_enqueued) == (1, 2)
    assert summary.errors == []
    # Scan (with the PENDING rows), request of b, then the provider's two for the row of a
    # (load, record); no second scan.
    assert opened == 4
    assert {row.status for row in outbox_by_dispatch_id(database)} == {OutboxStatus.CREATED}
    opened = 0
    monkeypatch.setattr(Database, "transaction", counted)
    assert dispatcher.cycle.run().dispatch_actions == 0
    assert opened == 1  # nothing to do: the scan only


def test_a_crash_between_sending_and_recording_leaves_the_rows_pending(
    database: Database, make_dispatcher: MakeDispatcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The provider has the messages but the acknowledgement was never recorded: the rows
    stay PENDING and the next cycle sends them again under the same names (deduplicated)."""
    trigger(database, "run1", [planned("a"), planned("b")])
    queue = MemoryProvider()
    dispatcher = make_dispatcher(queue)

    def crash(*_: Any, **__: Any) -> None:
        raise ConnectionError("database went away")

    with monkeypatch.context() as patch:
        patch.setattr("arco_dispatch.sending.record_enqueues", crash)
        summary = dispatcher.cycle.run()
    assert summary.dispatch_failed == 2
    assert {row.status for row in outbox_by_dispatch_id(database)} == {OutboxStatus.PENDING}
    assert len(queue.peek()) == 2
    summary = dispatcher.cycle.run()
    assert (summary.dispatch_deduplicated, summary.errors) == (2, [])
    assert {row.status for row in outbox_by_dispatch_id(database)} == {OutboxStatus.CREATED}
    assert len(queue.peek()) == 2
    [enqueued] = task_events(database, "run1", "a", EventKind.DISPATCH_ENQUEUED)
    assert enqueued.detail is not None
    assert enqueued.detail["deduplicated"] is True


def test_a_failed_record_batch_is_retried_row_by_row(
    database: Database, make_dispatcher: MakeDispatcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch of acknowledgements that fails as a whole is recorded one row at a time, so
    only the row that fails on its own stays PENDING."""
    trigger(database, "run1", [planned("a"), planned("b"), planned("c")])

    def flaky(session: Any, scope: Any, acks: Any, **kwargs: Any) -> set[str]:
        if len(acks) > 1 or acks[0].dispatch_id == "dispatch:run1:b:1":
            raise ConnectionError("batch failed")
        return record_enqueues(session, scope, acks, **kwargs)

    monkeypatch.setattr("arco_dispatch.sending.record_enqueues", flaky)
    summary = make_dispatcher(MemoryProvider()).cycle.run()
    assert [(e.kind, e.id) for e in summary.errors] == [
        ("dispatch_enqueue_failed", "dispatch:run1:b:1")
    ]
    statuses = {row.dispatch_id: row.status for row in outbox_by_dispatch_id(database)}
    assert statuses == {
        "dispatch:run1:a:1": OutboxStatus.CREATED,
        "dispatch:run1:b:1": OutboxStatus.PENDING,
        "dispatch:run1:c:1": OutboxStatus.CREATED,
    }
