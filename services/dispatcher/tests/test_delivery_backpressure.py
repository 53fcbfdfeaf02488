"""Backpressure of the push queue: a busy worker's 429 spends no delivery attempt and
teaches the pump the worker's capacity. Full with the pump's own attempts, the worker gets
the next one as soon as one of them ends; full with others' work, the pump pauses until the
Retry-After and grows back by one per 2xx; a capacity that holds the pump back grows by one
per probe interval."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta

from services.dispatcher.tests.test_http_delivery import deliver_due, make_pump, queue_tasks

from arco_dispatch.adapters import make_envelopes
from arco_dispatch.clock import utc_now
from arco_dispatch.message import dispatch_headers
from arco_dispatcher.http_delivery import (
    MAX_BUSY_PAUSE,
    PROBE_EVERY,
    DeliveryOutcome,
    DeliveryPolicy,
    DeliveryPump,
)
from arco_orchestration.db import Database
from arco_orchestration.delivery import open_attempts
from arco_orchestration.facts import EventKind
from arco_orchestration.states import DeliveryState, TaskState
from arco_testkit.clock import T0, FakeClock, wait_until
from arco_testkit.dispatching import Answer, ReceivedDispatch, RecordingWorker, flow_settings
from arco_testkit.facts import (
    complete,
    failed,
    load_task,
    outbox_row,
    start,
    task_events,
    task_states,
)
from arco_testkit.values import OTHER_WORKSPACE, SCOPE

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


def end_attempts(database: Database, keys: list[str]) -> None:
    """What the worker's /started and /completed callbacks do: the attempts end."""
    for key in keys:
        assert start(database, "run1", key, now=T0)
        assert complete(database, "run1", key, now=T0)


def test_a_busy_worker_holding_none_of_ours_pauses_claiming_then_regrows_per_2xx(
    database: Database, worker: RecordingWorker, clock: FakeClock
) -> None:
    """A 429 while the pump holds no attempt says nothing about when a slot frees: the
    pump pauses for the Retry-After, starts again at one and adds one per 2xx."""
    worker.responder = lambda _: BUSY
    keys = [f"task{n}" for n in range(6)]
    ids = queue_tasks(database, keys)
    pump = make_pump(database, worker, clock, concurrency=8)

    async def scenario() -> list[int]:
        claimed: list[int] = []
        ended: set[str] = set()
        try:
            assert await pump.fill() == 6
            await pump.drain()
            assert (pump.limit, pump.held) == (1, 0)
            assert pump.busy_until == T0 + timedelta(seconds=1)
            assert await pump.fill() == 0  # paused (and nothing is due anyway)
            clock.advance(timedelta(seconds=1))
            worker.responder = lambda _: Answer(202)
            while pump.in_flight or len(worker.requests()) < 12:
                claimed.append(await pump.fill())
                await pump.drain()
                # The worker runs them; the pump reads that their attempts ended.
                delivered = [k for k in keys if f"dispatch:run1:{k}:1" in worker.ok_answers]
                await asyncio.to_thread(end_attempts, database, sorted(set(delivered) - ended))
                ended.update(delivered)
                assert await pump.release_ended() == claimed[-1]
        finally:
            await pump.close(grace=0)
        return claimed

    # After the pause: one, then one more per 2xx (1 -> 2 -> 4), the rest.
    assert asyncio.run(scenario()) == [1, 2, 3]
    assert pump.limit == 7
    # Each delivered once, as its first counted attempt (the 429s spent none).
    assert sorted(worker.ok_answers.items()) == [(dispatch_id, 1) for dispatch_id in sorted(ids)]
    for key in keys:
        [delivered] = task_events(database, "run1", key, EventKind.DISPATCH_DELIVERED)
        assert delivered.detail is not None
        assert delivered.detail["deliveryAttempt"] == 1


def accept(slots: int) -> Callable[[ReceivedDispatch], Answer]:
    """A worker whose first ``slots`` dispatches take its slots for good; then 429."""
    taken: list[str] = []
    lock = threading.Lock()

    def answer(request: ReceivedDispatch) -> Answer:
        with lock:
            if len(taken) >= slots:
                return BUSY
            taken.append(request.envelope.task_key)
        return Answer(202)

    return answer


def test_deliveries_awaiting_their_answer_count_toward_the_learned_capacity(
    database: Database, worker: RecordingWorker, clock: FakeClock
) -> None:
    """A worker takes a slot for each dispatch it accepts before it answers (after its
    /started): a 429 that comes back while the pump holds one attempt and two deliveries
    still wait for their answer teaches a capacity of three, not one."""
    taken: list[str] = []
    lock = threading.Lock()

    def answer(request: ReceivedDispatch) -> Answer:
        with lock:
            refused = len(taken) >= 3
            if not refused:
                taken.append(request.envelope.task_key)
            first = len(taken) == 1 and not refused
        # The worker's pace (not a wait in the test): the first accepted answers at once,
        # the refusal after it, the two other accepted ones last.
        time.sleep(0.3 if refused else 0.0 if first else 1.0)
        return BUSY if refused else Answer(202)

    worker.responder = answer
    queue_tasks(database, [f"task{n}" for n in range(4)])
    pump = make_pump(database, worker, clock, concurrency=8)

    async def scenario() -> None:
        try:
            assert await pump.fill() == 4
            await pump.drain()
        finally:
            await pump.close(grace=0)

    asyncio.run(scenario())
    assert (pump.limit, pump.held, pump.busy_until) == (3, 3, None)


def test_a_worker_full_of_our_attempts_gets_the_next_as_soon_as_one_ends(
    database: Database, worker: RecordingWorker, clock: FakeClock
) -> None:
    """A 429 while the pump holds attempts: the capacity is what it holds, the refused row is
    due again at once (no attempt spent, no pause), and it goes out when a held attempt
    ends, not a Retry-After later."""
    worker.responder = accept(2)
    ids = queue_tasks(database, ["task0", "task1", "task2"])
    pump = make_pump(database, worker, clock, concurrency=8)

    async def scenario() -> str:
        try:
            # One at a time: the worker takes two and refuses the third.
            for expected in (1, 1, 1):
                pump.policy = replace(pump.policy, concurrency=1)
                assert await pump.fill() == expected
                await pump.drain()
            pump.policy = replace(pump.policy, concurrency=8)
            assert (pump.held, pump.limit, pump.busy_until) == (2, 2, None)
            [refused_id] = set(ids) - set(worker.ok_answers)
            refused = outbox_row(database, refused_id)
            assert refused is not None
            assert (refused.delivery_state, refused.delivery_attempts) == (DeliveryState.QUEUED, 0)
            assert refused.next_delivery_at == T0
            assert await pump.fill() == 0  # due, but both slots are ours and still taken
            assert await pump.release_ended() == 0
            first_taken = min(worker.ok_answers).split(":")[2]  # dispatch:run1:<key>:1
            await asyncio.to_thread(end_attempts, database, [first_taken])
            assert await pump.release_ended() == 1
            worker.responder = lambda _: Answer(202)
            assert await pump.fill() == 1
            await pump.drain()
            return refused_id
        finally:
            await pump.close(grace=0)

    refused_id = asyncio.run(scenario())
    row = outbox_row(database, refused_id)
    assert row is not None
    assert (row.delivery_state, row.delivery_attempts) == (DeliveryState.DELIVERED, 1)


def test_a_capacity_that_holds_the_pump_back_grows_by_one_per_probe_interval(
    database: Database, worker: RecordingWorker, clock: FakeClock
) -> None:
    """Attempts the worker lost stay DISPATCHED until the sweeper acts: the pump still
    finds the free slots, one more per PROBE_EVERY."""
    worker.responder = accept(1)
    ids = queue_tasks(database, ["task0", "task1", "task2"])
    pump = make_pump(database, worker, clock, concurrency=1)

    async def scenario() -> None:
        try:
            for _ in range(2):
                assert await pump.fill() == 1
                await pump.drain()
            assert (pump.held, pump.limit) == (1, 1)
            worker.responder = lambda _: Answer(202)  # restarted: every slot free again
            pump.policy = replace(pump.policy, concurrency=8)
            assert await pump.fill() == 0
            clock.advance(PROBE_EVERY)
            assert await pump.fill() == 1
            await pump.drain()
            assert (pump.held, pump.limit) == (2, 2)
        finally:
            await pump.close(grace=0)

    asyncio.run(scenario())
    rows = [row for dispatch_id in ids if (row := outbox_row(database, dispatch_id)) is not None]
    assert sorted((row.delivery_state, row.delivery_attempts) for row in rows) == [
        (DeliveryState.DELIVERED, 1),
        (DeliveryState.DELIVERED, 1),
        (DeliveryState.QUEUED, 0),
    ]


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
    after answering (its handler runs in the background, then its callbacks end the
    attempt), or 429 when full."""

    def __init__(self, database: Database, slots: int, hold: float) -> None:
        self.database = database
        self.slots = slots
        self.hold = hold
        self._lock = threading.Lock()
        self.running = 0
        self.busy = 0

    def __call__(self, request: ReceivedDispatch) -> Answer:
        with self._lock:
            if self.running >= self.slots:
                self.busy += 1
                return BUSY
            self.running += 1
        threading.Timer(self.hold, self._free, args=(request.envelope.task_key,)).start()
        return Answer(202)

    def _free(self, task_key: str) -> None:
        end_attempts(self.database, [task_key])
        with self._lock:
            self.running -= 1


def test_a_full_worker_gets_every_task_once_with_no_attempt_spent(
    database: Database, worker: RecordingWorker
) -> None:
    """The running pump against a worker far smaller than the pump: every row is delivered
    exactly once with a 2xx, whatever number of 429s it took, and none counts."""
    small = SmallWorker(database, slots=2, hold=0.05)
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
            # Each attempt ends as the worker frees its slot (its callbacks end the task).
            await asyncio.to_thread(
                wait_until,
                lambda: set(task_states(database, "run1").values()) == {TaskState.SUCCEEDED},
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
    # No 429 gave an attempt up (max_attempts is 1): each task ran its first attempt, and
    # its /started consumed its row.
    assert {load_task(database, "run1", key).attempt for key in keys} == {1}
    assert all(outbox_row(database, i) is None for i in ids)
    for key in keys:
        # The 2xx is in the history unless the worker's /started consumed the row before
        # the pump recorded the answer (the worker answers, then runs the task at once).
        for delivered in task_events(database, "run1", key, EventKind.DISPATCH_DELIVERED):
            assert delivered.detail is not None
            assert delivered.detail["deliveryAttempt"] == 1


def test_open_attempts_are_those_a_worker_may_still_hold(database: Database) -> None:
    """Accepted (DISPATCHED) and RUNNING attempts hold a worker slot; a finished attempt,
    an attempt that was followed by a retry and another scope's tasks do not."""
    queue_tasks(database, ["accepted", "running", "finished", "retried"])
    assert start(database, "run1", "running", now=T0)
    end_attempts(database, ["finished"])
    assert start(database, "run1", "retried", now=T0)
    assert complete(database, "run1", "retried", failed(), now=T0)
    asked = {("run1", key, 1) for key in ("accepted", "running", "finished", "retried")}
    asked |= {("run1", "accepted", 2), ("run-unknown", "accepted", 1)}
    with database.transaction() as session:
        assert open_attempts(session, SCOPE, asked) == {
            ("run1", "accepted", 1),
            ("run1", "running", 1),
        }
        assert open_attempts(session, OTHER_WORKSPACE, asked) == set()
        assert open_attempts(session, SCOPE, set()) == set()
