"""One dispatcher cycle (arco-orchestration 3.1, with design D4).

1. Ready phase: every READY task and every due retry gets a DispatchRequested (task
   DISPATCHED, outbox row PENDING), one short transaction per task.
2. Dispatch phase: every PENDING row, including those just created (upstream enqueues them
   one cycle later), is built into the canonical envelope and handed to the provider, with
   no transaction open; the acknowledgement is recorded in a new transaction.

One bad item is reported in ``errors`` and never aborts the cycle (upstream aborts on a
missing task row; we report it and go on).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import structlog

from arco_dispatch.clock import Clock, utc_now
from arco_dispatch.message import MissingTaskRow
from arco_dispatch.provider import EnqueueStatus
from arco_dispatch.sending import Sender
from arco_dispatch.summary import CycleError
from arco_dispatcher.metrics import DispatcherMetrics
from arco_orchestration.db import Database
from arco_orchestration.facts import request_dispatch
from arco_orchestration.scans import due_retries, pending_dispatches, ready_tasks
from arco_orchestration.scope import Scope

log = structlog.get_logger("arco.dispatcher")


@dataclass
class DispatchSummary:
    """The ``POST /run`` body. The timer phase is kept for upstream parity: nothing in
    scope schedules timers, so its counters stay 0."""

    ready_dispatch_emitted: int = 0
    ready_dispatch_skipped: int = 0
    dispatch_actions: int = 0  # PENDING rows handled (upstream also counts CREATED skips)
    dispatch_enqueued: int = 0
    dispatch_deduplicated: int = 0
    dispatch_failed: int = 0
    timer_actions: int = 0
    timer_enqueued: int = 0
    timer_deduplicated: int = 0
    timer_failed: int = 0
    errors: list[CycleError] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The JSON body."""
        return asdict(self)


class DispatchCycle:
    """The dispatcher's cycle for one scope, through one provider."""

    def __init__(
        self,
        db: Database,
        scope: Scope,
        sender: Sender,
        *,
        clock: Clock = utc_now,
        metrics: DispatcherMetrics | None = None,
    ) -> None:
        self._db = db
        self._scope = scope
        self._sender = sender
        self._clock = clock
        self._metrics = metrics

    def run(self) -> DispatchSummary:
        """Run one cycle. Raises only when a scan fails (the database is unreachable)."""
        summary = DispatchSummary()
        became_due = self._ready_phase(summary)
        self._dispatch_phase(summary, became_due)
        return summary

    def _ready_phase(self, summary: DispatchSummary) -> dict[str, datetime]:
        """Request a dispatch for each READY task and due retry; returns, per requested
        dispatch id, when its task became due (for the latency metric)."""
        with self._db.transaction() as session:
            candidates = [
                *ready_tasks(session, self._scope),
                *due_retries(session, self._scope, now=self._clock()),
            ]
        became_due: dict[str, datetime] = {}
        for ref in candidates:
            try:
                with self._db.transaction() as session:
                    request = request_dispatch(
                        session, self._scope, ref.run_id, ref.task_key, now=self._clock()
                    )
            except Exception as exc:  # noqa: BLE001 - one bad task never aborts the cycle
                summary.errors.append(
                    CycleError("ready_dispatch_failed", f"{ref.run_id}:{ref.task_key}", str(exc))
                )
                continue
            if request is None:
                # Dispatched meanwhile, or its run is being cancelled (then it was cancelled).
                summary.ready_dispatch_skipped += 1
                continue
            summary.ready_dispatch_emitted += 1
            if ref.at is not None:
                became_due[request.dispatch_id] = ref.at
        return became_due

    def _dispatch_phase(self, summary: DispatchSummary, became_due: dict[str, datetime]) -> None:
        with self._db.transaction() as session:
            dispatch_ids = pending_dispatches(session, self._scope)
        for dispatch_id in dispatch_ids:
            summary.dispatch_actions += 1
            try:
                result = self._sender.enqueue_pending(dispatch_id, now=self._clock())
            except MissingTaskRow as exc:
                self._fail(summary, "dispatch_unscoped", dispatch_id, str(exc))
                continue
            except Exception as exc:  # noqa: BLE001 - one bad row never aborts the cycle
                self._fail(summary, "dispatch_enqueue_failed", dispatch_id, str(exc))
                continue
            if result is None:  # consumed or enqueued by another dispatcher meanwhile
                continue
            if self._metrics is not None:
                self._metrics.enqueues.labels(outcome=result.status.value).inc()
            if result.status is EnqueueStatus.ENQUEUED:
                summary.dispatch_enqueued += 1
            elif result.status is EnqueueStatus.DEDUPLICATED:
                summary.dispatch_deduplicated += 1
            elif result.status is EnqueueStatus.QUEUE_FULL:
                self._fail(summary, "dispatch_queue_full", dispatch_id, "queue full")
                continue
            else:
                self._fail(summary, "dispatch_enqueue_failed", dispatch_id, result.error or "error")
                continue
            log.info("enqueued", dispatch_id=dispatch_id, outcome=result.status.value)
            due = became_due.get(dispatch_id)
            if self._metrics is not None and due is not None:
                latency = (self._clock() - due).total_seconds()
                self._metrics.dispatch_latency.observe(max(latency, 0.0))

    def _fail(self, summary: DispatchSummary, kind: str, dispatch_id: str, message: str) -> None:
        """The row stays PENDING and is tried again next cycle."""
        summary.dispatch_failed += 1
        summary.errors.append(CycleError(kind, dispatch_id, message))
        log.warning("dispatch_failed", kind=kind, dispatch_id=dispatch_id, message=message)
