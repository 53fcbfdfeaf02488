"""The sweeper process: HTTP frame and loop mode."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import FastAPI

from arco_dispatch.adapters import make_provider, make_sender
from arco_dispatch.clock import Clock, utc_now
from arco_dispatch.provider import Provider
from arco_dispatch.runner import CycleRunner
from arco_dispatch.service_app import create_service_app
from arco_orchestration.db import Database
from arco_sweeper.metrics import SweeperMetrics
from arco_sweeper.rules import Sweeper, SweepSummary
from arco_sweeper.settings import SweeperSettings


@dataclass(frozen=True)
class SweeperService:
    """The parts of a running sweeper (``app.state.sweeper``)."""

    settings: SweeperSettings
    provider: Provider
    sweeper: Sweeper
    runner: CycleRunner[SweepSummary]
    metrics: SweeperMetrics


def build_sweeper(
    settings: SweeperSettings,
    db: Database,
    *,
    provider: Provider | None = None,
    clock: Clock = utc_now,
) -> SweeperService:
    """Wire a sweeper: provider from the settings unless given, clock injectable."""
    provider = provider or make_provider(settings)
    metrics = SweeperMetrics()
    sweeper = Sweeper(
        db,
        settings.scope,
        make_sender(settings, db, provider),
        settings.thresholds(),
        clock=clock,
    )

    def after_cycle(summary: SweepSummary) -> None:
        for repair in summary.repairs:
            metrics.repairs.labels(action=repair.action, rule=repair.rule).inc()

    runner = CycleRunner(
        sweeper.run, interval=settings.interval, metrics=metrics, after_cycle=after_cycle
    )
    return SweeperService(settings, provider, sweeper, runner, metrics)


def create_app(
    settings: SweeperSettings,
    db: Database,
    *,
    provider: Provider | None = None,
    clock: Clock = utc_now,
) -> FastAPI:
    """The sweeper app; its lifespan runs the loop when loop mode is on."""
    service = build_sweeper(settings, db, provider=provider, clock=clock)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        loop = asyncio.create_task(service.runner.loop()) if settings.sweep_loop else None
        try:
            yield
        finally:
            if loop is not None:
                loop.cancel()
                await asyncio.gather(loop, return_exceptions=True)
            service.provider.close()

    app = create_service_app(
        service="sweeper",
        db=db,
        runner=service.runner,
        metrics=service.metrics,
        lifespan=lifespan,
        run_token=settings.run_token.get_secret_value(),
    )
    app.state.sweeper = service
    return app
