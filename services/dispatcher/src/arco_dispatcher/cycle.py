"""One dispatcher cycle (arco-orchestration 3.1, with design D4).

1. Ready phase: every READY task and every due retry gets a DispatchRequested (task
   DISPATCHED, outbox row PENDING), up to ``BATCH_SIZE`` tasks per transaction. With the
   http provider, whose queue is the outbox row, the same transaction also records the
   enqueue (row CREATED and queued for the delivery pump): no PENDING step.
2. Dispatch phase: every PENDING row, including those just created (upstream enqueues them
   one cycle later), is built into the canonical envelope and handed to the provider, with
   no transaction open; the acknowledgements of a batch are recorded in one new transaction.

One bad item is reported in ``errors`` and never aborts the cycle (upstream aborts on a
missing task row; we report it and go on): a batch that fails is retried one item at a time.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from itertools import islice
from typing import Any, TypeVar

import structlog

from arco_dispatch.clock import Clock, utc_now
from arco_dispatch.message import MissingTaskRow
from arco_dispatch.provider import EnqueueStatus
from arco_dispatch.sending import Outcome, Sender
from arco_dispatch.summary import CycleError
from arco_dispatcher.metrics import DispatcherMetrics
from arco_orchestration.db import Database
from arco_orchestration.facts import (
    DispatchRequest,
    DispatchSnapshot,
    Enqueued,
    QueueNow,
    request_dispatches,
)
from arco_orchestration.scans import TaskRef, due_retries, pending_dispatches, ready_tasks
from arco_orchestration.scope import Scope

log = structlog.get_logger("arco.dispatcher")

# Tasks (or PENDING rows) per transaction: large enough to amortise the round trips, small
# enough that the run locks a batch holds delay callbacks of those runs only briefly.
BATCH_SIZE = 100

T = TypeVar("T")


def batches(items: Sequence[T], size: int) -> Iterator[list[T]]:
    """``items`` in consecutive lists of at most ``size``."""
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


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
        pending: list[str] | None = None
        with self._db.transaction() as session:
            candidates = [
                *ready_tasks(session, self._scope),
                *due_retries(session, self._scope, now=self._clock()),
            ]
            if self._sender.queues_in_outbox:
                # The ready phase leaves no PENDING row behind with such a sender (it queues
                # its rows at once), so the PENDING rows to hand over are known now: one
                # transaction per cycle less. A row another process makes PENDING meanwhile
                # comes with a NOTIFY, hence with another cycle.
                pending = pending_dispatches(session, self._scope)
        became_due = self._ready_phase(summary, candidates)
        self._dispatch_phase(summary, became_due, pending)
        return summary

    def _ready_phase(
        self, summary: DispatchSummary, candidates: list[TaskRef]
    ) -> dict[str, datetime]:
        """Request a dispatch for each READY task and due retry; returns, per requested
        dispatch id left PENDING, when its task became due (for the latency metric)."""
        became_due: dict[str, datetime] = {}
        for chunk in batches(candidates, BATCH_SIZE):
            for ref, outcome in zip(chunk, self._request(chunk), strict=True):
                if isinstance(outcome, Exception):
                    summary.errors.append(
                        CycleError(
                            "ready_dispatch_failed", f"{ref.run_id}:{ref.task_key}", str(outcome)
                        )
                    )
                elif outcome is None:
                    # Dispatched meanwhile, or its run is being cancelled (then cancelled).
                    summary.ready_dispatch_skipped += 1
                else:
                    summary.ready_dispatch_emitted += 1
                    if self._sender.queues_in_outbox:
                        summary.dispatch_actions += 1
                        self._enqueued(summary, outcome.dispatch_id, EnqueueStatus.ENQUEUED, ref.at)
                    elif ref.at is not None:
                        became_due[outcome.dispatch_id] = ref.at
        return became_due

    def _request(self, refs: list[TaskRef]) -> list[DispatchRequest | Exception | None]:
        """Request ``refs`` in one transaction; when it fails, one transaction per task so
        that only the bad task fails."""
        if len(refs) > 1:
            try:
                return list(self._request_batch(refs))
            except Exception as exc:  # noqa: BLE001 - retried task by task below
                log.warning("ready_batch_failed", tasks=len(refs), error=str(exc))
        outcomes: list[DispatchRequest | Exception | None] = []
        for ref in refs:
            try:
                outcomes.extend(self._request_batch([ref]))
            except Exception as exc:  # noqa: BLE001 - one bad task never aborts the cycle
                outcomes.append(exc)
        return outcomes

    def _request_batch(self, refs: list[TaskRef]) -> list[DispatchRequest | None]:
        now = self._clock()
        queue: QueueNow | None = None
        if self._sender.queues_in_outbox:

            def queue(dispatch: DispatchSnapshot) -> Enqueued:
                return self._sender.queue_now(dispatch, now=now)

        keys = [(ref.run_id, ref.task_key) for ref in refs]
        with self._db.transaction() as session:
            return request_dispatches(session, self._scope, keys, now=now, queue=queue)

    def _dispatch_phase(
        self,
        summary: DispatchSummary,
        became_due: dict[str, datetime],
        dispatch_ids: list[str] | None,
    ) -> None:
        """Hand the PENDING rows ``dispatch_ids`` to the provider (``None``: read them now,
        after the ready phase made some)."""
        if dispatch_ids is None:
            with self._db.transaction() as session:
                dispatch_ids = pending_dispatches(session, self._scope)
        for chunk in batches(dispatch_ids, BATCH_SIZE):
            for outcome in self._sender.enqueue_many(chunk, now=self._clock()):
                summary.dispatch_actions += 1
                self._handle(summary, outcome, became_due.get(outcome.dispatch_id))

    def _handle(self, summary: DispatchSummary, outcome: Outcome, due: datetime | None) -> None:
        dispatch_id, result = outcome.dispatch_id, outcome.result
        if isinstance(outcome.error, MissingTaskRow):
            self._fail(summary, "dispatch_unscoped", dispatch_id, str(outcome.error))
        elif outcome.error is not None:
            self._fail(summary, "dispatch_enqueue_failed", dispatch_id, str(outcome.error))
        elif result is None:  # consumed or enqueued by another dispatcher meanwhile
            return
        elif result.status is EnqueueStatus.QUEUE_FULL:
            self._count(result.status)
            self._fail(summary, "dispatch_queue_full", dispatch_id, "queue full")
        elif not result.accepted:
            self._count(result.status)
            self._fail(summary, "dispatch_enqueue_failed", dispatch_id, result.error or "error")
        else:
            self._enqueued(summary, dispatch_id, result.status, due)

    def _count(self, status: EnqueueStatus) -> None:
        if self._metrics is not None:
            self._metrics.enqueues.labels(outcome=status.value).inc()

    def _enqueued(
        self,
        summary: DispatchSummary,
        dispatch_id: str,
        status: EnqueueStatus,
        due: datetime | None,
    ) -> None:
        self._count(status)
        if status is EnqueueStatus.DEDUPLICATED:
            summary.dispatch_deduplicated += 1
        else:
            summary.dispatch_enqueued += 1
        log.info("enqueued", dispatch_id=dispatch_id, outcome=status.value)
        if self._metrics is not None and due is not None:
            latency = (self._clock() - due).total_seconds()
            self._metrics.dispatch_latency.observe(max(latency, 0.0))

    def _fail(self, summary: DispatchSummary, kind: str, dispatch_id: str, message: str) -> None:
        """The row stays PENDING and is tried again next cycle."""
        summary.dispatch_failed += 1
        summary.errors.append(CycleError(kind, dispatch_id, message))
        log.warning("dispatch_failed", kind=kind, dispatch_id=dispatch_id, message=message)
