"""Short leases renewed while a delivery is in flight: a dead pump's claims come due again
one lease later, a long delivery keeps its row, and renewals that fail never stop the pump."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from services.dispatcher.tests.test_http_delivery import Gate, deliver_due, make_pump, queue_tasks
from sqlalchemy import delete
from sqlalchemy.exc import OperationalError

from arco_dispatcher.http_delivery import MIN_LEASE, DeliveryOutcome, DeliveryPolicy
from arco_orchestration.db import Database
from arco_orchestration.delivery import DeliveryClaim, claim_due_deliveries, renew_leases
from arco_orchestration.facts import EventKind
from arco_orchestration.models import DispatchOutbox
from arco_orchestration.states import DeliveryState
from arco_testkit.clock import T0, FakeClock, wait_until
from arco_testkit.dispatching import Answer, ReceivedDispatch, RecordingWorker
from arco_testkit.facts import is_postgres, outbox_row, task_events
from arco_testkit.values import SCOPE

# The production defaults: a delivery may last 30 minutes, a claim is leased for 30 s.
DEADLINE = timedelta(seconds=1800)
GRACE = timedelta(seconds=30)


@pytest.fixture
def gate() -> Iterator[Gate]:
    held = Gate()
    yield held
    held.released.set()


def lease_of(db: Database, dispatch_id: str) -> tuple[str | None, datetime | None]:
    """The row's lease owner and expiry."""
    row = outbox_row(db, dispatch_id)
    assert row is not None
    return row.lease_owner, row.lease_expires_at


def test_the_lease_is_short_and_renewed_every_third_of_it() -> None:
    policy = DeliveryPolicy(deadline=DEADLINE, lease_grace=GRACE)
    assert policy.lease == GRACE
    assert policy.renew_every == GRACE / 3
    # A grace of 0 (allowed by the settings) still leaves a lease to renew.
    assert DeliveryPolicy(lease_grace=timedelta(0)).lease == MIN_LEASE


def test_a_crashed_pumps_rows_come_due_after_the_short_lease(
    database: Database, worker: RecordingWorker, clock: FakeClock
) -> None:
    """A pump SIGKILLed after claiming, before delivering or recording: its rows are taken
    by another pump one lease later, not deadline + grace later."""
    ids = queue_tasks(database, ["a", "b"])
    crashed = make_pump(
        database, worker, clock, owner="crashed", deadline=DEADLINE, lease_grace=GRACE
    )
    # What a claim leaves in the database; the process then dies and records nothing.
    assert len(crashed._claim(10)) == 2
    for dispatch_id in ids:
        owner, expires = lease_of(database, dispatch_id)
        assert (owner or "").startswith("crashed:")
        assert expires == T0 + GRACE

    def other() -> int:
        pump = make_pump(
            database, worker, clock, owner="pump-b", deadline=DEADLINE, lease_grace=GRACE
        )
        return asyncio.run(deliver_due(pump))

    clock.advance(GRACE - timedelta(milliseconds=1))
    assert other() == 0  # still leased
    clock.advance(timedelta(milliseconds=1))
    assert other() == 2
    assert sorted(worker.dispatch_ids()) == sorted(ids)
    for dispatch_id in ids:
        row = outbox_row(database, dispatch_id)
        assert row is not None
        assert (row.delivery_state, row.delivery_attempts, row.lease_owner) == (
            DeliveryState.DELIVERED,
            2,
            None,
        )


def test_a_long_delivery_keeps_its_row_through_renewals(
    database: Database, worker: RecordingWorker, clock: FakeClock, gate: Gate
) -> None:
    """A synchronous worker holds the request for longer than several leases: renewal keeps
    the row from another pump, and the outcome is recorded by the claim that sent it."""
    worker.responder = gate
    [dispatch_id] = queue_tasks(database, ["slow"])
    pump = make_pump(database, worker, clock, deadline=DEADLINE, lease_grace=GRACE)
    outcomes: list[DeliveryOutcome] = []
    pump._observe = lambda outcome, _: outcomes.append(outcome)

    def other_claims() -> int:
        with database.transaction() as session:
            return len(
                claim_due_deliveries(
                    session, SCOPE, owner="pump-b", now=clock(), lease=GRACE, limit=10
                )
            )

    async def scenario() -> None:
        try:
            assert await pump.fill() == 1
            await asyncio.to_thread(wait_until, lambda: len(worker.requests()) == 1)
            for _ in range(5):  # 5 x 20 s: well past the first lease
                clock.advance(GRACE * 2 / 3)
                assert await pump.renew() == 1
                owner, expires = await asyncio.to_thread(lease_of, database, dispatch_id)
                assert (owner or "").startswith("pump-a:")
                assert expires == clock() + GRACE
                assert await asyncio.to_thread(other_claims) == 0
            gate.released.set()
            await pump.drain()
        finally:
            gate.released.set()
            await pump.close(grace=0)

    asyncio.run(scenario())
    assert outcomes == [DeliveryOutcome.DELIVERED]
    assert worker.dispatch_ids() == [dispatch_id]
    row = outbox_row(database, dispatch_id)
    assert row is not None
    assert (row.delivery_state, row.delivery_attempts, row.lease_owner) == (
        DeliveryState.DELIVERED,
        1,
        None,
    )
    [delivered] = task_events(database, "run1", "slow", EventKind.DISPATCH_DELIVERED)
    assert delivered.detail is not None
    assert delivered.detail["deliveryAttempt"] == 1


class FirstHeld:
    """Holds the first request until released; answers the later ones at once."""

    def __init__(self) -> None:
        self.released = threading.Event()
        self._lock = threading.Lock()
        self._seen = 0

    def __call__(self, _: ReceivedDispatch) -> Answer:
        with self._lock:
            self._seen += 1
            first = self._seen == 1
        if first:
            self.released.wait(timeout=30)
        return Answer(200)


def test_a_delivery_whose_row_was_taken_over_changes_nothing(
    database: Database, worker: RecordingWorker, clock: FakeClock
) -> None:
    """The lease ran out (no renewal) and another pump delivered the row: the first
    pump's renewal no longer holds it, its delivery goes on, and its late answer records
    nothing over the other pump's outcome."""
    held = FirstHeld()
    worker.responder = held
    [dispatch_id] = queue_tasks(database, ["extract"])
    first = make_pump(database, worker, clock, owner="pump-a", lease_grace=GRACE)
    second = make_pump(database, worker, clock, owner="pump-b", lease_grace=GRACE)

    async def scenario() -> None:
        try:
            assert await first.fill() == 1
            await asyncio.to_thread(wait_until, lambda: len(worker.requests()) == 1)
            clock.advance(GRACE)
            assert await second.fill() == 1
            await second.drain()
            assert await first.renew() == 0
            held.released.set()
            await first.drain()
        finally:
            held.released.set()
            await first.close(grace=0)
            await second.close(grace=0)

    asyncio.run(scenario())
    assert worker.dispatch_ids() == [dispatch_id, dispatch_id]
    row = outbox_row(database, dispatch_id)
    assert row is not None
    assert (row.delivery_state, row.delivery_attempts, row.delivered_at) == (
        DeliveryState.DELIVERED,
        2,
        T0 + GRACE,
    )
    # Only the claim that held the row wrote the history.
    [delivered] = task_events(database, "run1", "extract", EventKind.DISPATCH_DELIVERED)
    assert delivered.detail is not None
    assert delivered.detail["deliveryAttempt"] == 2


def test_the_running_pump_renews_its_leases_by_itself(
    database: Database, worker: RecordingWorker, clock: FakeClock, gate: Gate
) -> None:
    worker.responder = gate
    [dispatch_id] = queue_tasks(database, ["slow"])
    # The shortest lease, so that renewals come soon (every third of it, in real time).
    pump = make_pump(database, worker, clock, lease_grace=MIN_LEASE)

    async def scenario() -> None:
        runner = asyncio.create_task(pump.run())
        try:
            await asyncio.to_thread(wait_until, lambda: len(worker.requests()) == 1)
            # Less than the lease: the pump must not find its own row due again.
            renewed_at = clock.advance(MIN_LEASE / 2)
            await asyncio.to_thread(
                wait_until,
                lambda: lease_of(database, dispatch_id)[1] == renewed_at + MIN_LEASE,
            )
        finally:
            gate.released.set()
            runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)
            await pump.close(grace=5)

    asyncio.run(scenario())
    assert worker.dispatch_ids() == [dispatch_id]


def test_failed_renewals_are_logged_and_the_pump_keeps_delivering(
    database: Database,
    worker: RecordingWorker,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    held = Gate("slow")
    worker.responder = held
    pump = make_pump(database, worker, clock, lease_grace=MIN_LEASE)
    failures = 0
    real_renew = pump._renew  # the seam where the database fails

    def renew_while_the_database_is_down(claims: list[DeliveryClaim]) -> set[str]:
        nonlocal failures
        failures += 1
        raise OperationalError("UPDATE", {}, Exception("server closed the connection"))

    monkeypatch.setattr(pump, "_renew", renew_while_the_database_is_down)

    async def scenario() -> None:
        runner = asyncio.create_task(pump.run())
        try:
            [slow] = await asyncio.to_thread(queue_tasks, database, ["slow"], run_id="run1")
            pump.wake()
            await asyncio.to_thread(wait_until, lambda: len(worker.requests()) == 1)
            await asyncio.to_thread(wait_until, lambda: failures >= 2)
            # Deliveries go on while renewals fail.
            await asyncio.to_thread(queue_tasks, database, ["a", "b"], run_id="run2")
            pump.wake()
            await asyncio.to_thread(wait_until, lambda: len(worker.requests()) == 3)
            # The renewer survived its failures: once the database answers, it renews.
            monkeypatch.setattr(pump, "_renew", real_renew)
            renewed_at = clock.advance(MIN_LEASE / 2)
            await asyncio.to_thread(
                wait_until, lambda: lease_of(database, slow)[1] == renewed_at + MIN_LEASE
            )
            held.released.set()
            await asyncio.to_thread(
                wait_until,
                lambda: (
                    (row := outbox_row(database, slow)) is not None
                    and row.delivery_state == DeliveryState.DELIVERED
                ),
            )
        finally:
            held.released.set()
            runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)
            await pump.close(grace=5)

    asyncio.run(scenario())
    assert sorted(r.envelope.task_key for r in worker.requests()) == ["a", "b", "slow"]


def test_renewal_extends_only_leases_still_held(database: Database, clock: FakeClock) -> None:
    """One statement renews the claims that hold their rows; a claim whose row was recorded
    or deleted (``/started`` consumed it) is left out, and nothing else changes."""
    ids = queue_tasks(database, ["a", "b", "c"])
    with database.transaction() as session:
        claims = claim_due_deliveries(session, SCOPE, owner="pump-a", now=T0, lease=GRACE, limit=10)
    by_id = {claim.dispatch.dispatch_id: claim for claim in claims}
    with database.transaction() as session:
        session.execute(delete(DispatchOutbox).where(DispatchOutbox.dispatch_id == ids[1]))
    later = clock.advance(timedelta(seconds=20))
    with database.transaction() as session:
        renewed = renew_leases(session, SCOPE, claims, now=later, lease=GRACE)
    assert renewed == {by_id[ids[0]].lease_token, by_id[ids[2]].lease_token}
    for dispatch_id in (ids[0], ids[2]):
        row = outbox_row(database, dispatch_id)
        assert row is not None
        assert (row.lease_owner, row.lease_expires_at, row.next_delivery_at) == (
            by_id[dispatch_id].lease_token,
            later + GRACE,
            later + GRACE,
        )
        assert (row.delivery_state, row.delivery_attempts) == (DeliveryState.QUEUED, 1)
    with database.transaction() as session:
        assert renew_leases(session, SCOPE, [], now=later, lease=GRACE) == set()


def test_renewal_skips_a_row_locked_elsewhere_instead_of_waiting(database: Database) -> None:
    if not is_postgres(database):
        pytest.skip("row locks are PostgreSQL's; SQLite serialises writers instead")
    ids = queue_tasks(database, ["a", "b"])
    with database.transaction() as session:
        claims = claim_due_deliveries(session, SCOPE, owner="pump-a", now=T0, lease=GRACE, limit=10)
    by_id = {claim.dispatch.dispatch_id: claim for claim in claims}
    with database.transaction() as locker:
        # Another transaction (a fact consuming the row, say) holds one row.
        locker.get(DispatchOutbox, ids[0], with_for_update=True)
        with database.transaction() as session:
            renewed = renew_leases(session, SCOPE, claims, now=T0, lease=GRACE * 2)
    assert renewed == {by_id[ids[1]].lease_token}
    assert lease_of(database, ids[0])[1] == T0 + GRACE
    assert lease_of(database, ids[1])[1] == T0 + GRACE * 2
