"""The delivery pump outlives a database outage: a pass that fails is logged and retried,
and rows queued meanwhile are still delivered (the chaos suite found a pump that died with
its first failed claim while the dispatcher kept enqueueing)."""

from __future__ import annotations

import asyncio

import pytest
from services.dispatcher.tests.test_http_delivery import make_pump, queue_tasks
from sqlalchemy.exc import OperationalError

from arco_dispatcher.http_delivery import DeliveryPump
from arco_orchestration.db import Database
from arco_testkit.clock import FakeClock, wait_until
from arco_testkit.dispatching import RecordingWorker


def test_the_pump_keeps_delivering_after_failed_passes(
    database: Database,
    worker: RecordingWorker,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pump = make_pump(database, worker, clock)
    failures = 3
    real_claim = pump._claim  # the seam where the database fails

    def claim_while_the_database_is_down(limit: int) -> object:
        nonlocal failures
        if failures:
            failures -= 1
            raise OperationalError("SELECT", {}, Exception("server closed the connection"))
        return real_claim(limit)

    monkeypatch.setattr(pump, "_claim", claim_while_the_database_is_down)

    async def scenario(pump: DeliveryPump) -> None:
        runner = asyncio.create_task(pump.run())
        try:
            await asyncio.to_thread(queue_tasks, database, ["a", "b"])
            await asyncio.to_thread(wait_until, lambda: len(worker.requests()) == 2)
        finally:
            runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)
            await pump.close(grace=5)

    asyncio.run(scenario(pump))
    assert failures == 0
    assert sorted(r.envelope.task_key for r in worker.requests()) == ["a", "b"]
