"""One dispatcher cycle: upstream scenarios 45-54 of arco-orchestration 8 and the
same-cycle enqueue of design D4."""

from __future__ import annotations

import json
from datetime import timedelta

from google.api_core import exceptions as google_errors
from services.dispatcher.tests.conftest import MakeDispatcher
from sqlalchemy import delete

from arco_dispatch.cloudtasks_provider import CloudTasksProvider
from arco_dispatch.memory_provider import MemoryProvider
from arco_dispatch.summary import CycleError
from arco_dispatcher.cycle import DispatchSummary
from arco_envelope import WorkerDispatchEnvelope, attempt_id, cloud_task_name
from arco_orchestration.db import Database
from arco_orchestration.facts import EventKind, request_dispatch
from arco_orchestration.models import DispatchOutbox, Run, Task
from arco_orchestration.states import OutboxStatus, TaskState
from arco_testkit.clock import T0, FakeClock
from arco_testkit.dispatching import (
    CANONICAL_ENVELOPE_KEYS,
    FakeCloudTasksTransport,
    client_with,
    names_of,
)
from arco_testkit.facts import (
    age,
    complete,
    load_run,
    load_task,
    outbox_by_dispatch_id,
    outbox_row,
    planned,
    start,
    task_events,
    trigger,
)
from arco_testkit.values import DISPATCH_SECRET, SCOPE

QUEUE = "projects/proj/locations/loc/queues/arco-flow-dispatch"


def run_cycle(make_dispatcher: MakeDispatcher, provider: MemoryProvider) -> DispatchSummary:
    return make_dispatcher(provider).cycle.run()


def test_a_ready_task_is_requested_and_enqueued_in_the_same_cycle(
    database: Database, make_dispatcher: MakeDispatcher
) -> None:
    """45 + 53 + D4: a READY task gets DispatchRequested attempt 1 with id
    dispatch:run1:extract:1 and the default queue, and is enqueued by the cycle that saw
    it (upstream enqueues it one cycle later). BLOCKED tasks are ignored."""
    trigger(database, "run1", [planned("extract"), planned("load", "extract")])
    queue = MemoryProvider()
    summary = run_cycle(make_dispatcher, queue)
    assert summary == DispatchSummary(
        ready_dispatch_emitted=1, dispatch_actions=1, dispatch_enqueued=1
    )
    [row] = outbox_by_dispatch_id(database)
    assert row.dispatch_id == "dispatch:run1:extract:1"
    assert (row.attempt, row.attempt_id) == (1, attempt_id("dispatch:run1:extract:1"))
    assert row.worker_queue == "default-queue"
    assert row.status == OutboxStatus.CREATED
    assert row.cloud_task_id == cloud_task_name("dispatch:run1:extract:1")
    task = load_task(database, "run1", "extract")
    assert (task.state, task.attempt, task.attempt_id) == (
        TaskState.DISPATCHED,
        1,
        row.attempt_id,
    )
    assert load_task(database, "run1", "load").state == TaskState.BLOCKED
    [message] = queue.peek()
    envelope = WorkerDispatchEnvelope.from_json(message.body)
    assert envelope.dispatch_id == "dispatch:run1:extract:1"
    assert message.name == row.cloud_task_id


def test_a_task_made_ready_by_a_completion_goes_out_in_the_next_cycle(
    database: Database, make_dispatcher: MakeDispatcher, clock: FakeClock
) -> None:
    """D4 latency: the downstream task is requested and enqueued by the first cycle that
    sees it READY."""
    trigger(database, "run1", [planned("extract"), planned("load", "extract")])
    queue = MemoryProvider()
    dispatcher = make_dispatcher(queue)
    dispatcher.cycle.run()
    start(database, "run1", "extract", now=clock())
    complete(database, "run1", "extract", now=clock())
    assert load_task(database, "run1", "load").state == TaskState.READY
    summary = dispatcher.cycle.run()
    assert (summary.ready_dispatch_emitted, summary.dispatch_enqueued) == (1, 1)
    assert [m.name for m in queue.peek()][-1] == cloud_task_name("dispatch:run1:load:1")


def test_an_existing_dispatch_is_not_requested_again(
    database: Database, make_dispatcher: MakeDispatcher
) -> None:
    """46: a READY task that already has a PENDING or CREATED outbox row is skipped. (Our
    DispatchRequested makes the task DISPATCHED in the same transaction, so a READY task
    with a row is forced here.)"""
    trigger(database, "run1", [planned("extract")])
    with database.transaction() as session:
        request_dispatch(session, SCOPE, "run1", "extract", now=T0)
        task = session.get(Task, ("run1", "extract"))
        assert task is not None
        task.state = TaskState.READY
    queue = MemoryProvider()
    summary = run_cycle(make_dispatcher, queue)
    assert (summary.ready_dispatch_emitted, summary.ready_dispatch_skipped) == (0, 1)
    assert summary.dispatch_enqueued == 1  # the PENDING row
    summary = run_cycle(make_dispatcher, queue)  # now CREATED
    assert (summary.ready_dispatch_skipped, summary.dispatch_actions) == (1, 0)
    assert len(outbox_by_dispatch_id(database)) == 1


def test_no_snapshot_lag_in_a_transactional_database(
    database: Database, make_dispatcher: MakeDispatcher
) -> None:
    """47 (adapted): upstream skips a 10-minute-old snapshot (compaction_lag). Our state is
    read in the transaction, never stale: READY tasks of any age are dispatched."""
    trigger(database, "run1", [planned("a"), planned("b")])
    age(database, "run1", "a", ready_at=timedelta(seconds=75))
    age(database, "run1", "b", ready_at=timedelta(minutes=10))
    summary = run_cycle(make_dispatcher, MemoryProvider())
    assert (summary.ready_dispatch_emitted, summary.dispatch_enqueued) == (2, 2)


def test_a_cancel_requested_run_is_not_dispatched(
    database: Database, make_dispatcher: MakeDispatcher
) -> None:
    """48 (+ D7): a READY task of a cancel-requested run is skipped, and cancelled rather
    than left READY. (Our cancel ends READY tasks at once; this is the legacy state.)"""
    trigger(database, "run1", [planned("extract")])
    with database.transaction() as session:
        run = session.get(Run, "run1")
        assert run is not None
        run.cancel_requested = True
    queue = MemoryProvider()
    summary = run_cycle(make_dispatcher, queue)
    assert (summary.ready_dispatch_emitted, summary.ready_dispatch_skipped) == (0, 1)
    assert queue.peek() == []
    assert outbox_by_dispatch_id(database) == []
    assert load_task(database, "run1", "extract").state == TaskState.CANCELLED
    assert load_run(database, "run1").state == "CANCELLED"


def test_each_ready_task_gets_its_own_deterministic_dispatch(
    database: Database, make_dispatcher: MakeDispatcher
) -> None:
    """49: several READY tasks each get an action; attempt ids are deterministic per
    dispatch and distinct across tasks."""
    trigger(database, "run1", [planned("a"), planned("b"), planned("c")])
    summary = run_cycle(make_dispatcher, MemoryProvider())
    assert summary.ready_dispatch_emitted == 3
    rows = outbox_by_dispatch_id(database)
    assert [r.attempt_id for r in rows] == [attempt_id(f"dispatch:run1:{k}:1") for k in "abc"]
    assert len({r.attempt_id for r in rows}) == 3


def test_cloud_tasks_names_are_deterministic_and_created_rows_are_not_resent(
    database: Database, make_dispatcher: MakeDispatcher, clock: FakeClock
) -> None:
    """50 + 52: a PENDING row becomes one CreateTask named d_ + 26 chars; a CREATED row is
    not sent again; a lost acknowledgement is recovered because the same name comes back
    ALREADY_EXISTS (deduplicated, still recorded); another attempt gets another name."""
    transport = FakeCloudTasksTransport()
    provider = CloudTasksProvider(client_with(transport), queue=QUEUE)
    trigger(database, "run1", [planned("extract")])
    dispatcher = make_dispatcher(provider)
    assert dispatcher.cycle.run().dispatch_enqueued == 1
    [name] = names_of(transport.requests)
    assert name == cloud_task_name("dispatch:run1:extract:1")
    assert len(name) == 28
    assert name.startswith("d_")
    assert dispatcher.cycle.run() == DispatchSummary()  # CREATED: already_created
    # The acknowledgement was lost (the row is PENDING again): deduplicated by name.
    with database.transaction() as session:
        lost = session.get(DispatchOutbox, "dispatch:run1:extract:1")
        assert lost is not None
        lost.status = OutboxStatus.PENDING
    summary = dispatcher.cycle.run()
    assert (summary.dispatch_enqueued, summary.dispatch_deduplicated) == (0, 1)
    row = outbox_row(database, "dispatch:run1:extract:1")
    assert row is not None
    assert row.status == OutboxStatus.CREATED
    # Attempt 2 of the same task: a different name.
    start(database, "run1", "extract", now=clock())
    complete(database, "run1", "extract", now=clock(), outcome="FAILED")
    clock.advance(timedelta(seconds=30))
    assert dispatcher.cycle.run().dispatch_enqueued == 1
    assert names_of(transport.requests)[-1] == cloud_task_name("dispatch:run1:extract:2")
    assert len(set(names_of(transport.requests))) == 2


def test_queue_full_and_provider_errors_leave_the_row_pending_for_the_next_cycle(
    database: Database, make_dispatcher: MakeDispatcher
) -> None:
    """52 through the cycle: queue full -> dispatch_queue_full, an API error ->
    dispatch_enqueue_failed; both counted in dispatch_failed, the cycle answers 500 and the
    rows stay PENDING; the next cycle enqueues them."""
    transport = FakeCloudTasksTransport()
    transport.errors = [
        google_errors.ResourceExhausted("quota"),  # type: ignore[no-untyped-call]
        google_errors.InternalServerError("backend"),  # type: ignore[no-untyped-call]
    ]
    dispatcher = make_dispatcher(CloudTasksProvider(client_with(transport), queue=QUEUE))
    trigger(database, "run1", [planned("a"), planned("b")])
    summary = dispatcher.cycle.run()
    assert (summary.dispatch_actions, summary.dispatch_failed) == (2, 2)
    assert [(e.kind, e.id) for e in summary.errors] == [
        ("dispatch_queue_full", "dispatch:run1:a:1"),
        ("dispatch_enqueue_failed", "dispatch:run1:b:1"),
    ]
    assert summary.errors[0].message == "queue full"
    assert summary.errors[1].message.startswith("Cloud Tasks API error: 500")
    assert {r.status for r in outbox_by_dispatch_id(database)} == {OutboxStatus.PENDING}
    summary = dispatcher.cycle.run()
    assert (summary.dispatch_enqueued, summary.errors) == (2, [])


def test_a_row_without_its_task_row_is_refused_and_the_cycle_goes_on(
    database: Database, make_dispatcher: MakeDispatcher
) -> None:
    """54: the dispatcher refuses an unscoped dispatch (upstream aborts the whole cycle
    with 500; we report the row and still enqueue the others)."""
    trigger(database, "run1", [planned("a"), planned("b")])
    with database.transaction() as session:
        request_dispatch(session, SCOPE, "run1", "a", now=T0)
        session.execute(delete(Task).where(Task.run_id == "run1", Task.task_key == "a"))
    queue = MemoryProvider()
    summary = run_cycle(make_dispatcher, queue)
    assert summary.errors == [
        CycleError(
            "dispatch_unscoped",
            "dispatch:run1:a:1",
            "refusing unscoped dispatch for missing task row: run=run1 task=a",
        )
    ]
    assert (summary.dispatch_failed, summary.dispatch_enqueued) == (1, 1)
    assert [m.name for m in queue.peek()] == [cloud_task_name("dispatch:run1:b:1")]


def test_a_due_retry_is_dispatched_when_due_not_before(
    database: Database, make_dispatcher: MakeDispatcher, clock: FakeClock
) -> None:
    """D4: a retry goes out at its deadline (upstream waits for the next sweep). 69: while
    attempt 2 is DISPATCHED the previous error message is kept."""
    trigger(database, "run1", [planned("extract", max_attempts=2)])
    queue = MemoryProvider()
    dispatcher = make_dispatcher(queue)
    dispatcher.cycle.run()
    start(database, "run1", "extract", now=clock())
    complete(database, "run1", "extract", now=clock(), outcome="FAILED")
    task = load_task(database, "run1", "extract")
    assert (task.state, task.retry_not_before) == (TaskState.RETRY_WAIT, T0 + timedelta(seconds=30))
    clock.advance(timedelta(seconds=29))
    assert dispatcher.cycle.run() == DispatchSummary()
    clock.advance(timedelta(seconds=1))
    summary = dispatcher.cycle.run()
    assert (summary.ready_dispatch_emitted, summary.dispatch_enqueued) == (1, 1)
    task = load_task(database, "run1", "extract")
    assert (task.state, task.attempt, task.retry_not_before) == (TaskState.DISPATCHED, 2, None)
    assert task.error_message == "boom"
    envelope = WorkerDispatchEnvelope.from_json(queue.peek()[-1].body)
    assert (envelope.attempt, envelope.attempt_id) == (2, attempt_id("dispatch:run1:extract:2"))


def test_the_dispatched_envelope_key_set_goes_to_the_task_history(
    database: Database, make_dispatcher: MakeDispatcher
) -> None:
    """The history records the shape of what was sent, never the token."""
    trigger(database, "run1", [planned("extract", partition_key="date=d:2026-01-01")])
    queue = MemoryProvider()
    run_cycle(make_dispatcher, queue)
    [enqueued] = task_events(database, "run1", "extract", EventKind.DISPATCH_ENQUEUED)
    assert enqueued.detail is not None
    assert enqueued.detail["envelopeKeys"] == CANONICAL_ENVELOPE_KEYS
    token = WorkerDispatchEnvelope.from_json(queue.peek()[0].body).task_token
    assert token not in str(enqueued.detail)


def test_every_adapter_sends_the_same_canonical_body_and_headers(
    database: Database, make_dispatcher: MakeDispatcher
) -> None:
    """D5 + D12: memory and Cloud Tasks carry the canonical envelope (never a legacy
    shape) with Content-Type and the secret header, never Authorization (the http
    adapter's wire is captured in the delivery tests)."""
    trigger(database, "run1", [planned("a", partition_key="date=d:2026-01-01")])
    queue = MemoryProvider()
    make_dispatcher(queue).cycle.run()
    trigger(database, "run2", [planned("a", partition_key="date=d:2026-01-01")])
    transport = FakeCloudTasksTransport()
    make_dispatcher(CloudTasksProvider(client_with(transport), queue=QUEUE)).cycle.run()
    [memory] = queue.peek()
    [created] = transport.requests
    sent = [
        (memory.body, dict(memory.headers)),
        (created.task.http_request.body, dict(created.task.http_request.headers)),
    ]
    for body, headers in sent:
        assert list(json.loads(body)) == CANONICAL_ENVELOPE_KEYS
        assert WorkerDispatchEnvelope.from_json(body).to_json().encode() == body
        assert headers == {
            "Content-Type": "application/json",
            "X-Arco-Dispatch-Secret": DISPATCH_SECRET,
        }
