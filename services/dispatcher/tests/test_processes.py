"""Real processes against one database: a dispatcher killed with SIGKILL mid-delivery loses
nothing and sends nothing twice to a worker that answered 2xx; and, on PostgreSQL, two
dispatchers and two sweepers deliver each (task, attempt) exactly once."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from services.dispatcher.tests.processes import ServiceProcess, service_env

from arco_dispatch.clock import utc_now
from arco_orchestration.db import Database
from arco_orchestration.states import DeliveryState
from arco_testkit.clock import wait_until
from arco_testkit.dispatching import Answer, ReceivedDispatch, RecordingWorker
from arco_testkit.facts import (
    complete,
    is_postgres,
    load_run,
    outbox_by_dispatch_id,
    planned,
    start,
    trigger,
)
from arco_testkit.values import SCOPE

TASKS = 8
CONCURRENCY = 3
ANSWERED_AT_ONCE = 2


class HoldAfterFirst:
    """Answers the first requests at once, then holds every request until the dispatcher
    is killed; afterwards it answers held requests 503 (never 2xx) and new ones 200."""

    def __init__(self, answered_at_once: int) -> None:
        self.answered_at_once = answered_at_once
        self.lock = threading.Lock()
        self.seen = 0
        self.held = 0
        self.killed = threading.Event()

    def __call__(self, request: ReceivedDispatch) -> Answer:
        with self.lock:
            self.seen += 1
            hold = self.seen > self.answered_at_once and not self.killed.is_set()
            if hold:
                self.held += 1
        if not hold:
            return Answer(200)
        self.killed.wait(timeout=60)
        return Answer(503)


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[list[ServiceProcess]]:
    started: list[ServiceProcess] = []
    yield started
    for process in started:
        process.stop()


def test_a_killed_dispatcher_loses_nothing_and_repeats_no_answered_delivery(
    database: Database,
    database_url: str,
    worker: RecordingWorker,
    processes: list[ServiceProcess],
    tmp_path: Path,
) -> None:
    keys = [f"task{n}" for n in range(TASKS)]
    trigger(database, "run1", [planned(key) for key in keys])
    gate = HoldAfterFirst(ANSWERED_AT_ONCE)
    worker.responder = gate
    env = service_env(
        database_url,
        worker.url,
        ARCO_FLOW_DISPATCH_CONCURRENCY=str(CONCURRENCY),
        # The lease a killed dispatcher leaves behind lasts the grace (at least 5 s).
        ARCO_FLOW_TASK_TIMEOUT_SECS="2",
        ARCO_FLOW_DELIVERY_LEASE_GRACE_SECS="0",
    )
    first = ServiceProcess("dispatcher", env, tmp_path, "first")
    processes.append(first)

    def delivered() -> int:
        return sum(
            r.delivery_state == DeliveryState.DELIVERED for r in outbox_by_dispatch_id(database)
        )

    try:
        wait_until(lambda: delivered() == ANSWERED_AT_ONCE and gate.held >= CONCURRENCY, timeout=60)
    except AssertionError:
        pytest.fail(f"dispatcher did not deliver as expected:\n{first.output()}")
    first.kill()
    gate.killed.set()
    second = ServiceProcess("dispatcher", env, tmp_path, "second")
    processes.append(second)
    wait_until(lambda: len(worker.ok_answers) == TASKS, timeout=60)
    assert sorted(worker.ok_answers) == [f"dispatch:run1:{key}:1" for key in sorted(keys)]
    assert set(worker.ok_answers.values()) == {1}
    wait_until(lambda: delivered() == TASKS, timeout=60)


def test_two_dispatchers_and_two_sweepers_deliver_each_attempt_exactly_once(
    database: Database,
    database_url: str,
    worker: RecordingWorker,
    processes: list[ServiceProcess],
    tmp_path: Path,
) -> None:
    if not is_postgres(database):
        pytest.skip("concurrent dispatchers need PostgreSQL's row locks")
    runs = [f"run{n}" for n in range(4)]

    def work(request: ReceivedDispatch) -> Answer:
        """A worker that runs the task before answering, as arco's SDK worker does: the
        completion makes the next task of the chain READY."""
        envelope = request.envelope
        start(database, envelope.run_id, envelope.task_key, now=utc_now())
        complete(database, envelope.run_id, envelope.task_key, now=utc_now())
        return Answer(200)

    worker.responder = work
    env = service_env(database_url, worker.url, ARCO_FLOW_SWEEP_INTERVAL_SECS="0.2")
    for name in ("dispatcher-a", "dispatcher-b"):
        processes.append(ServiceProcess("dispatcher", env, tmp_path, name))
    for name in ("sweeper-a", "sweeper-b"):
        processes.append(ServiceProcess("sweeper", env, tmp_path, name))
    for run_id in runs:
        trigger(
            database, run_id, [planned("a"), planned("b", "a"), planned("c", "b"), planned("d")]
        )
    try:
        wait_until(
            lambda: all(load_run(database, r).state == "SUCCEEDED" for r in runs), timeout=90
        )
    except AssertionError:
        pytest.fail("\n".join(p.output() for p in processes))
    expected = sorted(f"dispatch:{r}:{k}:1" for r in runs for k in "abcd")
    assert sorted(worker.dispatch_ids()) == expected
    assert set(worker.ok_answers.values()) == {1}
    assert SCOPE.tenant_id == worker.requests()[0].envelope.tenant_id
