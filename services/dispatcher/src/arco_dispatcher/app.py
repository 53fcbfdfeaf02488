"""The dispatcher process: HTTP frame, loop mode, NOTIFY wake-ups and, with the http
provider, the delivery pump."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import FastAPI

from arco_dispatch.adapters import make_envelopes, make_provider, make_sender
from arco_dispatch.clock import Clock, utc_now
from arco_dispatch.message import dispatch_headers
from arco_dispatch.provider import Provider
from arco_dispatch.runner import CycleRunner
from arco_dispatch.service_app import create_service_app
from arco_dispatcher.cycle import DispatchCycle, DispatchSummary
from arco_dispatcher.http_delivery import DeliveryOutcome, DeliveryPolicy, DeliveryPump
from arco_dispatcher.listen import NotifyListener, conninfo
from arco_dispatcher.metrics import DispatcherMetrics
from arco_dispatcher.settings import DispatcherSettings
from arco_dispatcher.statistics import keep_statistics
from arco_orchestration.db import Database, is_postgres
from arco_orchestration.delivery import DeliveryClaim
from arco_orchestration.facts import NOTIFY_CHANNEL

# How long deliveries in flight may finish when the process stops.
SHUTDOWN_GRACE_SECS = 5.0


@dataclass(frozen=True)
class Dispatcher:
    """The parts of a running dispatcher (``app.state.dispatcher``)."""

    settings: DispatcherSettings
    provider: Provider
    cycle: DispatchCycle
    runner: CycleRunner[DispatchSummary]
    pump: DeliveryPump | None
    metrics: DispatcherMetrics
    listener: NotifyListener | None  # PostgreSQL in loop mode: NOTIFY ends the pause


def build_dispatcher(
    settings: DispatcherSettings,
    db: Database,
    *,
    provider: Provider | None = None,
    clock: Clock = utc_now,
) -> Dispatcher:
    """Wire a dispatcher: provider from the settings unless given, clock injectable."""
    provider = provider or make_provider(settings)
    metrics = DispatcherMetrics()
    notifications = is_postgres(db.engine)
    pause = settings.pause(notifications=notifications)
    pump = None
    if provider.push_delivery:

        def observe(outcome: DeliveryOutcome, claim: DeliveryClaim) -> None:
            metrics.deliveries.labels(outcome=outcome.value).inc()
            enqueued_at = claim.dispatch.enqueued_at
            if outcome is DeliveryOutcome.DELIVERED and enqueued_at is not None:
                latency = (clock() - enqueued_at).total_seconds()
                metrics.delivery_latency.observe(max(latency, 0.0))

        pump = DeliveryPump(
            db,
            settings.scope,
            make_envelopes(settings),
            target=settings.dispatch_target_url,
            headers=dispatch_headers(settings.dispatch_secret),
            policy=DeliveryPolicy.from_settings(settings, poll=pause),
            clock=clock,
            observe=observe,
        )
        metrics.deliveries_in_flight.set_function(lambda: pump.in_flight if pump else 0)
        metrics.attempts_held.set_function(lambda: pump.held if pump else 0)
        metrics.delivery_limit.set_function(lambda: pump.limit if pump else 0)
    cycle = DispatchCycle(
        db, settings.scope, make_sender(settings, db, provider), clock=clock, metrics=metrics
    )

    def after_cycle(summary: DispatchSummary) -> None:
        # Rows this cycle queued for push delivery go out now, not at the pump's next poll.
        if pump is not None and summary.dispatch_enqueued + summary.dispatch_deduplicated:
            pump.wake()

    runner = CycleRunner(cycle.run, interval=pause, metrics=metrics, after_cycle=after_cycle)
    listener = None
    if notifications and settings.dispatch_loop:
        listener = NotifyListener(conninfo(db.engine), NOTIFY_CHANNEL, runner.wake)
    return Dispatcher(settings, provider, cycle, runner, pump, metrics, listener)


def create_app(
    settings: DispatcherSettings,
    db: Database,
    *,
    provider: Provider | None = None,
    clock: Clock = utc_now,
) -> FastAPI:
    """The dispatcher app; its lifespan runs the loop (when on), the NOTIFY listener (on
    PostgreSQL) and the delivery pump (http provider)."""
    dispatcher = build_dispatcher(settings, db, provider=provider, clock=clock)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        background: list[asyncio.Task[None]] = []
        if dispatcher.pump is not None:
            background.append(asyncio.create_task(dispatcher.pump.run()))
        if settings.dispatch_loop:
            background.append(asyncio.create_task(dispatcher.runner.loop()))
        if dispatcher.listener is not None:
            dispatcher.listener.start()
        if is_postgres(db.engine) and settings.statistics_interval_secs > 0:
            background.append(
                asyncio.create_task(
                    keep_statistics(
                        db.engine,
                        every=settings.statistics_interval_secs,
                        analyzed=lambda table: dispatcher.metrics.tables_analyzed.labels(
                            table=table
                        ).inc(),
                    )
                )
            )
        try:
            yield
        finally:
            if dispatcher.listener is not None:
                await asyncio.to_thread(dispatcher.listener.stop)
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            if dispatcher.pump is not None:
                await dispatcher.pump.close(grace=SHUTDOWN_GRACE_SECS)
            dispatcher.provider.close()

    app = create_service_app(
        service="dispatcher",
        db=db,
        runner=dispatcher.runner,
        metrics=dispatcher.metrics,
        lifespan=lifespan,
        run_token=settings.run_token.get_secret_value(),
    )
    app.state.dispatcher = dispatcher
    return app
