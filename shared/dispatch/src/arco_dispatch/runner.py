"""Running a service's cycle: on demand (``POST /run``) and in loop mode, one cycle at a
time per process. Cycles are synchronous database work, so they run in a worker thread and
the event loop stays free for HTTP and deliveries."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from typing import Generic, TypeVar

import structlog

from arco_dispatch.clock import wait_event
from arco_dispatch.metrics import ServiceMetrics
from arco_dispatch.summary import CycleSummary

log = structlog.get_logger("arco.dispatch.runner")

S = TypeVar("S", bound=CycleSummary)

INTERVAL = "interval"


class CycleRunner(Generic[S]):
    """Runs one service's cycle on demand and in loop mode."""

    def __init__(
        self,
        cycle: Callable[[], S],
        *,
        interval: timedelta,
        metrics: ServiceMetrics | None = None,
        after_cycle: Callable[[S], None] | None = None,
    ) -> None:
        """``interval`` is the longest pause between two cycles in loop mode; ``wake``
        ends a pause early. ``after_cycle`` sees every summary (metrics, wake-ups)."""
        self._cycle = cycle
        self.interval = interval
        self._metrics = metrics
        self._after_cycle = after_cycle
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._reasons: set[str] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.cycles = 0
        self.paused = False  # the loop is between two cycles
        # What ended each pause of the loop: "interval", or the reasons given to wake().
        self.wakeups: Counter[str] = Counter()

    async def run_once(self) -> S:
        """Run one cycle (after the one in progress, if any) and return its summary.
        A hard failure (the database is unreachable, say) raises."""
        self._loop = asyncio.get_running_loop()
        async with self._lock:
            started = time.perf_counter()
            try:
                summary = await asyncio.to_thread(self._cycle)
            except Exception:
                self._count("failed", started)
                raise
            self.cycles += 1
        self._count("errors" if summary.errors else "ok", started)
        if self._after_cycle is not None:
            self._after_cycle(summary)
        return summary

    def _count(self, outcome: str, started: float) -> None:
        if self._metrics is not None:
            self._metrics.cycles.labels(outcome=outcome).inc()
            self._metrics.cycle_seconds.observe(time.perf_counter() - started)

    def wake(self, reason: str) -> None:
        """End the loop's current pause now; safe to call from any thread."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._set_wake, reason)

    def _set_wake(self, reason: str) -> None:
        self._reasons.add(reason)
        self._wake.set()

    async def loop(self) -> None:
        """Run cycles until cancelled, pausing up to ``interval`` between them. A failed
        cycle is logged and the loop goes on."""
        self._loop = asyncio.get_running_loop()
        while True:
            self._wake.clear()
            self._reasons.clear()
            try:
                summary = await self.run_once()
            except Exception:  # logged; the next cycle may succeed (database back)
                log.exception("cycle_failed")
            else:
                if summary.errors:
                    log.warning("cycle_errors", errors=[e.__dict__ for e in summary.errors])
            await self._pause()

    async def _pause(self) -> None:
        self.paused = True
        woke = await wait_event(self._wake, self.interval.total_seconds())
        self.paused = False
        if woke:
            self.wakeups.update(self._reasons)
        else:
            self.wakeups[INTERVAL] += 1
