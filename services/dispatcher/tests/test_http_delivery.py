"""The http provider's push queue: leased claims, delivery with no transaction open,
backoff with jitter, Retry-After, bounded concurrency, per-delivery deadline, lease expiry
after a crash, tokens minted at delivery and never stored (design D5), and the envelope
golden test on the wire (design D12)."""

from __future__ import annotations

import asyncio
import json
import random
import sys
import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import MetaData, Table, delete, select, text

from arco_dispatch.adapters import make_envelopes, make_sender
from arco_dispatch.http_provider import HttpQueueProvider
from arco_dispatch.message import dispatch_headers
from arco_dispatcher.http_delivery import DeliveryOutcome, DeliveryPolicy, DeliveryPump
from arco_envelope import DISPATCH_SECRET_HEADER, WorkerDispatchEnvelope
from arco_orchestration.db import Database
from arco_orchestration.delivery import (
    Delivered,
    DeliveryClaim,
    claim_due_deliveries,
    record_deliveries,
    record_delivery_failure,
)
from arco_orchestration.facts import EventKind, load_dispatch, lock_run, request_dispatch
from arco_orchestration.models import DispatchOutbox
from arco_orchestration.states import DeliveryState, OutboxStatus
from arco_testkit.clock import T0, FakeClock, wait_until
from arco_testkit.dispatching import (
    CANONICAL_ENVELOPE_KEYS,
    Answer,
    ReceivedDispatch,
    RecordingWorker,
    flow_settings,
)
from arco_testkit.facts import is_postgres, outbox_row, planned, task_events, trigger
from arco_testkit.values import SCOPE

LEASE = timedelta(seconds=60)


def queue_tasks(
    db: Database, keys: list[str], *, run_id: str = "run1", partition_key: str | None = None
) -> list[str]:
    """Trigger ``keys`` (no dependencies), request and enqueue each through the http
    provider: their outbox rows are QUEUED for delivery."""
    trigger(db, run_id, [planned(key, partition_key=partition_key) for key in keys])
    sender = make_sender(flow_settings(), db, HttpQueueProvider())
    ids = []
    for key in keys:
        with db.transaction() as session:
            request = request_dispatch(session, SCOPE, run_id, key, now=T0)
        assert request is not None
        sender.enqueue_pending(request.dispatch_id, now=T0)
        ids.append(request.dispatch_id)
    return ids


def make_pump(
    db: Database, worker: RecordingWorker, clock: FakeClock, *, owner: str = "pump-a", **policy: Any
) -> DeliveryPump:
    values: dict[str, Any] = {
        "concurrency": 8,
        "deadline": timedelta(seconds=10),
        "lease_grace": timedelta(seconds=5),
        "max_attempts": 3,
        "backoff_min": timedelta(seconds=1),
        "backoff_max": timedelta(seconds=60),
        "poll": timedelta(milliseconds=20),
    }
    values.update(policy)
    return DeliveryPump(
        db,
        SCOPE,
        make_envelopes(flow_settings()),
        target=worker.url,
        headers=dispatch_headers("dispatch-secret"),
        policy=DeliveryPolicy(**values),
        clock=clock,
        owner=owner,
        rng=random.Random(7),  # noqa: S311 - jitter needs no cryptography
    )


async def deliver_due(pump: DeliveryPump) -> int:
    """Claim what is due, wait for those deliveries, close the pump."""
    try:
        claimed = await pump.fill()
        await pump.drain()
        return claimed
    finally:
        await pump.close(grace=0)


class Gate:
    """Holds requests for the given task keys until released (a synchronous worker)."""

    def __init__(self, *held: str) -> None:
        self.held = set(held)
        self.released = threading.Event()
        self.lock = threading.Lock()
        self.running = 0
        self.most_running = 0

    def __call__(self, request: ReceivedDispatch) -> Answer:
        with self.lock:
            self.running += 1
            self.most_running = max(self.most_running, self.running)
        if not self.held or request.envelope.task_key in self.held:
            self.released.wait(timeout=30)
        with self.lock:
            self.running -= 1
        return Answer(200)


@pytest.fixture
def gate(worker: RecordingWorker) -> Iterator[Gate]:
    held = Gate()
    yield held
    held.released.set()


def test_a_real_delivery_puts_the_canonical_envelope_on_the_wire(
    database: Database, worker: RecordingWorker, clock: FakeClock
) -> None:
    """Golden test: the body on the wire parses with WorkerDispatchEnvelope, has exactly
    the canonical key set and bytes, and travels with the secret header, never in
    Authorization."""
    [dispatch_id] = queue_tasks(
        database, ["analytics.daily_sales"], partition_key="date=d:2026-01-01"
    )
    assert asyncio.run(deliver_due(make_pump(database, worker, clock))) == 1
    [request] = worker.requests()
    assert request.path == "/dispatch"
    assert request.headers["content-type"] == "application/json"
    assert request.headers[DISPATCH_SECRET_HEADER.lower()] == "dispatch-secret"
    assert "authorization" not in request.headers
    envelope = WorkerDispatchEnvelope.from_json(request.body)
    assert list(json.loads(request.body)) == CANONICAL_ENVELOPE_KEYS
    assert request.body == envelope.to_json().encode()
    assert envelope.dispatch_id == dispatch_id
    assert envelope.task_id.startswith("ct1_")
    assert envelope.partition_key == "date=d:2026-01-01"
    assert envelope.heartbeat_timeout_sec == 300
    row = outbox_row(database, dispatch_id)
    assert row is not None
    assert row.delivery_state == DeliveryState.DELIVERED
    assert row.delivered_at == T0
    assert row.last_delivery_status == 200
    assert row.lease_owner is None
    [enqueued] = task_events(database, "run1", "analytics.daily_sales", EventKind.DISPATCH_ENQUEUED)
    assert enqueued.detail is not None
    assert enqueued.detail["envelopeKeys"] == CANONICAL_ENVELOPE_KEYS
    [delivered] = task_events(
        database, "run1", "analytics.daily_sales", EventKind.DISPATCH_DELIVERED
    )
    assert delivered.detail == {"dispatchId": dispatch_id, "status": 200, "deliveryAttempt": 1}


def test_tokens_are_minted_at_delivery_and_never_stored(
    database: Database, worker: RecordingWorker, clock: FakeClock
) -> None:
    worker.responder = lambda _: Answer(500)
    [dispatch_id] = queue_tasks(database, ["extract"])
    asyncio.run(deliver_due(make_pump(database, worker, clock)))
    clock.advance(timedelta(seconds=5))
    asyncio.run(deliver_due(make_pump(database, worker, clock)))
    first, second = (request.envelope for request in worker.requests())
    assert first.token_expires_at == T0 + timedelta(seconds=3600)
    assert second.token_expires_at == T0 + timedelta(seconds=3605)
    assert first.task_token != second.task_token
    dumped = _dump_database(database)
    assert first.task_token not in dumped
    assert second.task_token not in dumped
    row = outbox_row(database, dispatch_id)
    assert row is not None
    assert row.body is None


def _dump_database(db: Database) -> str:
    metadata = MetaData()
    metadata.reflect(db.engine)
    texts: list[str] = []
    with db.engine.connect() as connection:
        for table in metadata.sorted_tables:
            texts.extend(
                str(row) for row in connection.execute(select(Table(table.name, metadata)))
            )
    return "\n".join(texts)


def test_failures_back_off_exponentially_with_jitter_then_give_up(
    database: Database, worker: RecordingWorker, clock: FakeClock
) -> None:
    worker.responder = lambda _: Answer(500)
    [dispatch_id] = queue_tasks(database, ["extract"])
    pauses = []
    for attempt in (1, 2):
        asyncio.run(deliver_due(make_pump(database, worker, clock)))
        row = outbox_row(database, dispatch_id)
        assert row is not None
        assert row.next_delivery_at is not None
        assert row.delivery_state == DeliveryState.QUEUED
        assert (row.delivery_attempts, row.last_delivery_status) == (attempt, 500)
        assert row.last_delivery_error == "worker answered HTTP 500"
        assert row.lease_owner is None
        assert row.lease_expires_at is None
        pause = row.next_delivery_at - clock()
        ceiling = timedelta(seconds=2 ** (attempt - 1))
        assert ceiling / 2 <= pause <= ceiling
        pauses.append(pause)
        # Not due before its time: nothing is claimed.
        assert asyncio.run(deliver_due(make_pump(database, worker, clock))) == 0
        clock.advance(pause)
    assert pauses[1] > pauses[0]
    asyncio.run(deliver_due(make_pump(database, worker, clock)))
    row = outbox_row(database, dispatch_id)
    assert row is not None
    assert (row.delivery_state, row.delivery_attempts, row.next_delivery_at) == (
        DeliveryState.GAVE_UP,
        3,
        None,
    )
    assert len(worker.requests()) == 3


def test_retry_after_is_honoured(
    database: Database, worker: RecordingWorker, clock: FakeClock
) -> None:
    worker.responder = lambda _: Answer(503, (("Retry-After", "7"),))
    [dispatch_id] = queue_tasks(database, ["extract"])
    asyncio.run(deliver_due(make_pump(database, worker, clock)))
    row = outbox_row(database, dispatch_id)
    assert row is not None
    assert row.next_delivery_at == T0 + timedelta(seconds=7)
    assert row.last_delivery_status == 503


def test_a_worker_past_the_deadline_counts_as_a_failed_delivery(
    database: Database, worker: RecordingWorker, clock: FakeClock, gate: Gate
) -> None:
    worker.responder = gate
    [dispatch_id] = queue_tasks(database, ["extract"])
    outcomes: list[DeliveryOutcome] = []
    pump = make_pump(database, worker, clock, deadline=timedelta(milliseconds=300))
    pump._observe = lambda outcome, _: outcomes.append(outcome)
    asyncio.run(deliver_due(pump))
    assert outcomes == [DeliveryOutcome.RETRY]
    row = outbox_row(database, dispatch_id)
    assert row is not None
    assert row.last_delivery_error == "no answer within the 0.3s deadline"
    assert row.last_delivery_status is None


def test_a_slow_synchronous_worker_does_not_block_other_deliveries(
    database: Database, worker: RecordingWorker, clock: FakeClock
) -> None:
    """arco's own SDK worker answers only when its task ends: that request holds one slot
    while the others are delivered."""
    held = Gate("slow")
    worker.responder = held
    ids = queue_tasks(database, ["fast1", "slow", "fast2"])
    pump = make_pump(database, worker, clock)

    async def scenario() -> None:
        try:
            assert await pump.fill() == 3
            await asyncio.to_thread(
                wait_until,
                lambda: all(
                    (row := outbox_row(database, i)) is not None
                    and row.delivery_state == DeliveryState.DELIVERED
                    for i in (ids[0], ids[2])
                ),
            )
            slow = outbox_row(database, ids[1])
            assert slow is not None
            assert slow.lease_owner is not None
            # A delivery frees its slot just after its outcome is committed.
            for _ in range(500):
                if pump.in_flight == 1:
                    break
                await asyncio.sleep(0.01)
            assert pump.in_flight == 1
            held.released.set()
            await pump.drain()
        finally:
            held.released.set()
            await pump.close(grace=0)

    asyncio.run(scenario())
    assert sorted(worker.dispatch_ids()) == sorted(ids)


def test_concurrency_is_bounded(
    database: Database, worker: RecordingWorker, clock: FakeClock, gate: Gate
) -> None:
    worker.responder = gate
    ids = queue_tasks(database, [f"task{n}" for n in range(5)])
    pump = make_pump(database, worker, clock, concurrency=2)

    async def scenario() -> None:
        try:
            assert await pump.fill() == 2
            await asyncio.to_thread(wait_until, lambda: len(worker.requests()) == 2)
            assert await pump.fill() == 0  # no free slot
            gate.released.set()
            while len(worker.requests()) < len(ids) or pump.in_flight:
                await pump.fill()
                await pump.drain()
        finally:
            await pump.close(grace=0)

    asyncio.run(scenario())
    assert sorted(worker.dispatch_ids()) == sorted(ids)
    assert gate.most_running == 2


def test_the_pump_loop_delivers_queued_rows_as_they_come(
    database: Database, worker: RecordingWorker, clock: FakeClock
) -> None:
    pump = make_pump(database, worker, clock, concurrency=2)

    async def scenario() -> None:
        runner = asyncio.create_task(pump.run())
        try:
            await asyncio.to_thread(queue_tasks, database, ["a", "b", "c"])
            pump.wake()
            await asyncio.to_thread(wait_until, lambda: len(worker.requests()) == 3)
        finally:
            runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)
            await pump.close(grace=5)

    asyncio.run(scenario())
    assert sorted(worker.dispatch_ids()) == [f"dispatch:run1:{key}:1" for key in "abc"]


def test_a_dead_dispatchers_lease_expires_and_another_delivers(
    database: Database, worker: RecordingWorker, clock: FakeClock
) -> None:
    [dispatch_id] = queue_tasks(database, ["extract"])
    with database.transaction() as session:
        [dead] = claim_due_deliveries(
            session, SCOPE, owner="dead-dispatcher", now=clock(), lease=LEASE, limit=10
        )
    # Still leased: nobody else may deliver it.
    assert asyncio.run(deliver_due(make_pump(database, worker, clock, owner="pump-b"))) == 0
    clock.advance(LEASE)
    assert asyncio.run(deliver_due(make_pump(database, worker, clock, owner="pump-b"))) == 1
    assert worker.dispatch_ids() == [dispatch_id]
    row = outbox_row(database, dispatch_id)
    assert row is not None
    assert (row.delivery_state, row.delivery_attempts) == (DeliveryState.DELIVERED, 2)
    # The dead dispatcher's late outcome changes nothing.
    with database.transaction() as session:
        assert not record_delivery_failure(
            session, SCOPE, dead, status=None, error="late", retry_at=clock()
        )
    row = outbox_row(database, dispatch_id)
    assert row is not None
    assert row.delivery_state == DeliveryState.DELIVERED


def test_a_stopping_pump_gives_its_rows_back_at_once(
    database: Database, worker: RecordingWorker, clock: FakeClock, gate: Gate
) -> None:
    worker.responder = gate
    [dispatch_id] = queue_tasks(database, ["extract"])
    pump = make_pump(database, worker, clock)

    async def scenario() -> None:
        await pump.fill()
        await asyncio.to_thread(wait_until, lambda: len(worker.requests()) == 1)
        await pump.close(grace=0)

    asyncio.run(scenario())
    row = outbox_row(database, dispatch_id)
    assert row is not None
    assert (row.delivery_state, row.delivery_attempts, row.lease_owner) == (
        DeliveryState.QUEUED,
        0,
        None,
    )
    assert row.next_delivery_at == T0


def test_only_created_push_rows_are_claimed(database: Database, clock: FakeClock) -> None:
    trigger(database, "run1", [planned("extract")])
    with database.transaction() as session:
        request = request_dispatch(session, SCOPE, "run1", "extract", now=T0)
    assert request is not None
    row = outbox_row(database, request.dispatch_id)
    assert row is not None
    assert row.status == OutboxStatus.PENDING
    with database.transaction() as session:
        assert claim_due_deliveries(session, SCOPE, owner="a", now=T0, lease=LEASE, limit=5) == []


def test_concurrent_claims_take_disjoint_rows_without_waiting(database: Database) -> None:
    """FOR UPDATE SKIP LOCKED: a second dispatcher skips the rows the first is claiming."""
    if not is_postgres(database):
        pytest.skip("SKIP LOCKED is PostgreSQL's; SQLite serialises writers instead")
    ids = queue_tasks(database, [f"task{n}" for n in range(6)])
    first: list[DeliveryClaim] = []
    with database.transaction() as session:
        first = claim_due_deliveries(session, SCOPE, owner="a", now=T0, lease=LEASE, limit=3)
        # The first claim's transaction is still open: its rows are locked.
        with database.transaction() as other:
            second = claim_due_deliveries(other, SCOPE, owner="b", now=T0, lease=LEASE, limit=10)
    claimed = [c.dispatch.dispatch_id for c in first] + [c.dispatch.dispatch_id for c in second]
    assert len(first) == 3
    assert len(second) == 3
    assert sorted(claimed) == sorted(ids)


def test_recording_a_delivery_whose_row_is_consumed_takes_no_run_lock(
    database: Database, clock: FakeClock
) -> None:
    """The worker's /started usually consumes the row before the worker answers: recording
    that answer then changes nothing, and waits for no run lock (the run's callbacks hold
    it)."""
    if not is_postgres(database):
        pytest.skip("SQLite has no row locks")
    [dispatch_id] = queue_tasks(database, ["extract"])
    with database.transaction() as session:
        [claim] = claim_due_deliveries(session, SCOPE, owner="a", now=T0, lease=LEASE, limit=1)
        session.execute(delete(DispatchOutbox).where(DispatchOutbox.dispatch_id == dispatch_id))
    with database.transaction() as holder:
        assert lock_run(holder, SCOPE, "run1") is not None
        with database.transaction() as session:
            # Waiting for the run lock would fail here instead of hanging.
            session.execute(text("SET LOCAL lock_timeout = '5s'"))
            recorded = record_deliveries(session, SCOPE, [Delivered(claim, 202)], now=clock())
    assert recorded == set()


def test_a_claim_opens_no_session(
    database: Database,
    worker: RecordingWorker,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The pump's claim is Core statements on a bare connection (Database.connection): a
    delivery opens one ORM session, to record its outcome."""
    [dispatch_id] = queue_tasks(database, ["extract"])
    sessions: list[str] = []
    transaction = Database.transaction

    def counted(self: Database) -> Any:
        sessions.append(sys._getframe(1).f_code.co_name)  # which code opened it
        return transaction(self)

    monkeypatch.setattr(Database, "transaction", counted)
    assert asyncio.run(deliver_due(make_pump(database, worker, clock))) == 1
    monkeypatch.undo()
    assert sessions == ["_record_all"]
    row = outbox_row(database, dispatch_id)
    assert row is not None
    assert (row.delivery_state, row.lease_owner) == (DeliveryState.DELIVERED, None)
    [delivered] = task_events(database, "run1", "extract", EventKind.DISPATCH_DELIVERED)
    assert delivered.detail == {"dispatchId": dispatch_id, "status": 200, "deliveryAttempt": 1}


def test_a_claim_snapshots_the_row_as_leased(database: Database) -> None:
    [dispatch_id] = queue_tasks(database, ["extract"], partition_key="2024-01-01")
    with database.transaction() as session:
        [claim] = claim_due_deliveries(session, SCOPE, owner="a", now=T0, lease=LEASE, limit=5)
    with database.transaction() as session:
        stored = load_dispatch(session, SCOPE, dispatch_id)
    assert claim.dispatch == stored
    assert claim.delivery_attempt == 1
    assert claim.dispatch.lease_expires_at == T0 + LEASE
    assert claim.dispatch.task is not None
    assert claim.dispatch.task.partition_key == "2024-01-01"
    row = outbox_row(database, dispatch_id)
    assert row is not None
    assert (row.lease_owner, row.next_delivery_at) == (claim.lease_token, T0 + LEASE)
