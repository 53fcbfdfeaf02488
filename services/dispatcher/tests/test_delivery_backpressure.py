"""Backpressure of the push queue: a busy worker's 429 spends no delivery attempt, halves
the pump's in-flight limit and pauses its claiming until the worker's Retry-After; each 2xx
raises the limit again by one."""

from __future__ import annotations

import asyncio
import random
import threading
from datetime import timedelta

from services.dispatcher.tests.test_http_delivery import deliver_due, make_pump, queue_tasks

from arco_dispatch.adapters import make_envelopes
from arco_dispatch.clock import utc_now
from arco_dispatch.message import dispatch_headers
from arco_dispatcher.http_delivery import (
    MAX_BUSY_PAUSE,
    DeliveryOutcome,
    DeliveryPolicy,
    DeliveryPump,
)
from arco_orchestration.db import Database
from arco_orchestration.facts import EventKind
from arco_orchestration.states import DeliveryState
from arco_testkit.clock import T0, FakeClock, wait_until
from arco_testkit.dispatching import Answer, ReceivedDispatch, RecordingWorker, flow_settings
from arco_testkit.facts import outbox_row, task_events
from arco_testkit.values import SCOPE

BUSY = Answer(429, (("Retry-After", "1"),))


def test_a_busy_answer_spends_no_delivery_attempt(
    database: Database, worker: RecordingWorker, clock: FakeClock
) -> None:
    """More 429s than ARCO_FLOW_DELIVERY_MAX_ATTEMPTS: the row is never given up, each try
    waits the worker's Retry-After, and the delivery that succeeds is attempt 1."""
    worker.responder = lambda _: BUSY
    [dispatch_id] = queue_tasks(database, ["extract"])
    outcomes: list[DeliveryOutcome] = []
    for _ in range(5):  # max_attempts is 3
        pump = make_pump(database, worker, clock)
        pump._observe = lambda outcome, _: outcomes.append(outcome)
        assert asyncio.run(deliver_due(pump)) == 1
        row = outbox_row(database, dispatch_id)
        assert row is not None
        assert (row.delivery_state, row.delivery_attempts, row.lease_owner) == (
            DeliveryState.QUEUED,
            0,
            None,
        )
        assert (row.last_delivery_status, row.last_delivery_error) == (
            429,
            "worker answered HTTP 429",
        )
        assert row.next_delivery_at == clock() + timedelta(seconds=1)
        clock.advance(timedelta(seconds=1))
    assert outcomes == [DeliveryOutcome.BUSY] * 5
    worker.responder = lambda _: Answer(202)
    assert asyncio.run(deliver_due(make_pump(database, worker, clock))) == 1
    row = outbox_row(database, dispatch_id)
    assert row is not None
    assert (row.delivery_state, row.delivery_attempts) == (DeliveryState.DELIVERED, 1)
    [delivered] = task_events(database, "run1", "extract", EventKind.DISPATCH_DELIVERED)
    assert delivered.detail == {"dispatchId": dispatch_id, "status": 202, "deliveryAttempt": 1}
    assert len(worker.requests()) == 6


def test_a_busy_answer_without_retry_after_waits_the_minimum_backoff(
    database: Database, worker: RecordingWorker, clock: FakeClock
) -> None:
    worker.responder = lambda _: Answer(429)
    [dispatch_id] = queue_tasks(database, ["extract"])
    pump = make_pump(database, worker, clock, backoff_min=timedelta(milliseconds=1500))
    asyncio.run(deliver_due(pump))
    row = outbox_row(database, dispatch_id)
    assert row is not None
    assert (row.delivery_attempts, row.next_delivery_at) == (0, T0 + timedelta(seconds=1.5))
    assert pump.busy_until == T0 + timedelta(seconds=1.5)


def test_other_failures_still_count_and_leave_the_limit_alone(
    database: Database, worker: RecordingWorker, clock: FakeClock
) -> None:
    worker.responder = lambda _: Answer(503, (("Retry-After", "1"),))
    [dispatch_id] = queue_tasks(database, ["extract"])
    pump = make_pump(database, worker, clock)
    asyncio.run(deliver_due(pump))
    row = outbox_row(database, dispatch_id)
    assert row is not None
    assert (row.delivery_state, row.delivery_attempts) == (DeliveryState.QUEUED, 1)
    assert (pump.limit, pump.busy_until) == (pump.policy.concurrency, None)


def test_busy_halves_the_limit_and_pauses_claiming_success_raises_it(
    database: Database, worker: RecordingWorker, clock: FakeClock
) -> None:
    worker.responder = lambda _: BUSY
    ids = queue_tasks(database, [f"task{n}" for n in range(6)])
    pump = make_pump(database, worker, clock, concurrency=8)

    async def scenario() -> list[int]:
        claimed = []
        try:
            assert await pump.fill() == 6
            await pump.drain()
            # Six 429s: 8 -> 4 -> 2 -> 1, never below one.
            assert pump.limit == 1
            assert pump.busy_until == T0 + timedelta(seconds=1)
            assert await pump.fill() == 0  # paused (and nothing is due anyway)
            clock.advance(timedelta(seconds=1))
            worker.responder = lambda _: Answer(202)
            while pump.in_flight or len(worker.requests()) < 12:
                claimed.append(await pump.fill())
                await pump.drain()
        finally:
            await pump.close(grace=0)
        return claimed

    # After the pause: one, then one more per 2xx (1 -> 2 -> 4), the rest.
    assert asyncio.run(scenario()) == [1, 2, 3]
    assert pump.limit == 7
    for dispatch_id in ids:
        row = outbox_row(database, dispatch_id)
        assert row is not None
        assert (row.delivery_state, row.delivery_attempts) == (DeliveryState.DELIVERED, 1)


def test_the_claiming_pause_is_capped_but_the_row_honours_retry_after(
    database: Database, worker: RecordingWorker, clock: FakeClock
) -> None:
    worker.responder = lambda _: Answer(429, (("Retry-After", "3600"),))
    [dispatch_id] = queue_tasks(database, ["extract"])
    pump = make_pump(database, worker, clock)
    asyncio.run(deliver_due(pump))
    row = outbox_row(database, dispatch_id)
    assert row is not None
    assert row.next_delivery_at == T0 + timedelta(hours=1)
    assert pump.busy_until == T0 + MAX_BUSY_PAUSE


class SmallWorker:
    """A worker with ``slots`` handler slots that answers 202 and keeps the slot a moment
    after answering (its handler runs in the background), or 429 when full."""

    def __init__(self, slots: int, hold: float) -> None:
        self.slots = slots
        self.hold = hold
        self._lock = threading.Lock()
        self.running = 0
        self.busy = 0

    def __call__(self, _: ReceivedDispatch) -> Answer:
        with self._lock:
            if self.running >= self.slots:
                self.busy += 1
                return BUSY
            self.running += 1
        threading.Timer(self.hold, self._free).start()
        return Answer(202)

    def _free(self) -> None:
        with self._lock:
            self.running -= 1


def test_a_full_worker_gets_every_task_once_with_no_attempt_spent(
    database: Database, worker: RecordingWorker
) -> None:
    """The running pump against a worker far smaller than the pump: every row is delivered
    exactly once with a 2xx, whatever number of 429s it took, and none counts."""
    small = SmallWorker(slots=2, hold=0.05)
    worker.responder = small
    pump = DeliveryPump(
        database,
        SCOPE,
        make_envelopes(flow_settings()),
        target=worker.url,
        headers=dispatch_headers("dispatch-secret"),
        policy=DeliveryPolicy(concurrency=8, max_attempts=1, poll=timedelta(milliseconds=20)),
        clock=utc_now,
        rng=random.Random(7),  # noqa: S311 - jitter needs no cryptography
    )
    keys = [f"task{n}" for n in range(10)]

    async def scenario() -> list[str]:
        runner = asyncio.create_task(pump.run())
        try:
            ids = await asyncio.to_thread(queue_tasks, database, keys)
            pump.wake()
            await asyncio.to_thread(
                wait_until,
                lambda: all(
                    (row := outbox_row(database, i)) is not None
                    and row.delivery_state == DeliveryState.DELIVERED
                    for i in ids
                ),
                timeout=60,
            )
            return ids
        finally:
            runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)
            await pump.close(grace=5)

    ids = asyncio.run(scenario())
    assert sorted(worker.ok_answers) == sorted(ids)
    assert set(worker.ok_answers.values()) == {1}
    for dispatch_id in ids:
        row = outbox_row(database, dispatch_id)
        assert row is not None
        assert row.delivery_attempts == 1
