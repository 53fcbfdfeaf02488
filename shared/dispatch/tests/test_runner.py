"""Loop mode: cycles run one at a time, a pause ends early on a wake-up, and a failed
cycle never stops the loop."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from arco_dispatch.runner import INTERVAL, CycleRunner
from arco_dispatch.summary import CycleError
from arco_testkit.clock import wait_until


@dataclass
class Summary:
    errors: list[CycleError] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"errors": self.errors}


class Cycles:
    def __init__(self, *, fail_first: bool = False) -> None:
        self.calls = 0
        self.fail_first = fail_first

    def __call__(self) -> Summary:
        self.calls += 1
        if self.fail_first and self.calls == 1:
            raise RuntimeError("database unreachable")
        return Summary()


def test_a_wake_up_ends_the_pause_and_is_counted_by_reason() -> None:
    cycles = Cycles()
    runner = CycleRunner(cycles, interval=timedelta(hours=1))

    async def scenario() -> None:
        loop = asyncio.create_task(runner.loop())
        try:
            await asyncio.to_thread(wait_until, lambda: runner.cycles == 1)
            runner.wake("notify")
            await asyncio.to_thread(wait_until, lambda: runner.cycles == 2)
        finally:
            loop.cancel()
            await asyncio.gather(loop, return_exceptions=True)

    asyncio.run(scenario())
    assert runner.wakeups["notify"] == 1
    assert runner.wakeups[INTERVAL] == 0


def test_a_failed_cycle_does_not_stop_the_loop() -> None:
    cycles = Cycles(fail_first=True)
    runner = CycleRunner(cycles, interval=timedelta(milliseconds=1))

    async def scenario() -> None:
        loop = asyncio.create_task(runner.loop())
        try:
            await asyncio.to_thread(wait_until, lambda: runner.cycles >= 2)
        finally:
            loop.cancel()
            await asyncio.gather(loop, return_exceptions=True)

    asyncio.run(scenario())
    assert cycles.calls >= 3
    assert runner.wakeups[INTERVAL] >= 2
