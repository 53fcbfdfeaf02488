"""One sweep: the anti-entropy rules R1-R4 of arco-orchestration 4.1 with the fixes of
design D7.

- cancel: a READY, DISPATCHED or RETRY_WAIT task of a cancel-requested run is CANCELLED
  (upstream re-dispatches it forever, 4.6).
- R1: a task READY for longer than ``stuck_ready`` gets its DispatchRequested (the same fact
  the dispatcher emits, so the two collapse).
- R2: a DISPATCHED task whose outbox row is missing gets it back; one whose row was enqueued
  longer than ``stuck_dispatched * 2^n`` ago (n = re-sends so far) is re-sent through the
  same provider under a new deterministic name; after ``max_redispatches`` re-sends the
  attempt fails with reason ``dispatch_timeout`` (and retries if attempts remain).
- R3: a RETRY_WAIT task whose retry is due gets the next attempt's DispatchRequested (the
  dispatcher does this too; this is the backstop).
- R4: a RUNNING task silent for its heartbeat timeout plus ``heartbeat_grace`` fails with
  reason ``heartbeat_timeout_anti_entropy``.

Every scan runs on an index; every repair re-checks its candidate under lock in its own
short transaction; one bad row is reported in ``errors`` and the sweep goes on. A
transactional database is never stale, so nothing is ever skipped for lag
(``skipped_due_to_lag`` stays 0, kept for upstream parity).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog

from arco_dispatch.clock import Clock, utc_now
from arco_dispatch.message import MissingTaskRow
from arco_dispatch.provider import EnqueueStatus
from arco_dispatch.sending import Sender
from arco_dispatch.summary import CycleError
from arco_envelope import cloud_task_name, dispatch_id
from arco_orchestration.db import Database
from arco_orchestration.facts import (
    DispatchSnapshot,
    cancel_unstarted_task,
    fail_attempt,
    load_dispatch,
    load_task,
    reap_silent_task,
    record_redispatch,
    recreate_dispatch,
    request_dispatch,
)
from arco_orchestration.scans import (
    TaskRef,
    dispatched_before,
    due_retries,
    ready_tasks,
    silent_running,
    unstarted_of_cancelled_runs,
)
from arco_orchestration.scope import Scope
from arco_orchestration.states import RETRY_BACKOFF_BASE, TaskState

MISSING_DISPATCH_OUTBOX = "missing_dispatch_outbox"
RETRY_WAIT_BOOTSTRAP = "retry_wait_bootstrap"
HEARTBEAT_TIMEOUT = "heartbeat_timeout_anti_entropy"
DISPATCH_TIMEOUT = "dispatch_timeout"
RUN_CANCEL_REQUESTED = "run_cancel_requested"

log = structlog.get_logger("arco.sweeper")


@dataclass(frozen=True)
class SweepThresholds:
    """When a task counts as stuck, and how often a stuck dispatch is re-sent."""

    stuck_ready: timedelta = timedelta(minutes=5)
    stuck_dispatched: timedelta = timedelta(minutes=10)
    heartbeat_grace: timedelta = timedelta(seconds=30)
    max_redispatches: int = 3
    # Not a threshold: how long a failed attempt (R2 dispatch_timeout, R4) waits to retry.
    retry_backoff_base: timedelta = RETRY_BACKOFF_BASE

    def resend_after(self, redispatch_count: int) -> timedelta:
        """How long after its last enqueue (or re-send) a DISPATCHED attempt is stuck."""
        return self.stuck_dispatched * (1 << min(redispatch_count, 20))


def redispatch_name(original_dispatch_id: str, number: int) -> str:
    """The provider name of re-send ``number`` (1-based) of a dispatch. Unique per re-send
    and different from the original (upstream 0.1), yet deterministic, so two sweepers
    re-sending the same row at once collapse into one message."""
    return cloud_task_name(f"{original_dispatch_id}:repair:{number}")


@dataclass(frozen=True)
class Repair:
    """One repair applied: ``action`` on ``id`` under ``rule``, for ``reason``."""

    action: str  # create_dispatch | redispatch | fail_attempt | cancel
    id: str
    rule: str  # R1 | R2 | R3 | R4 | cancel
    reason: str


@dataclass
class SweepSummary:
    """The ``POST /run`` body: upstream's counters (4.4) plus ours (``redispatch_exhausted``,
    ``tasks_cancelled`` and the list of ``repairs``)."""

    repairs_created: int = 0
    redispatch_attempted: int = 0
    redispatch_enqueued: int = 0
    redispatch_deduplicated: int = 0
    redispatch_failed: int = 0
    skipped_due_to_lag: int = 0
    redispatch_exhausted: int = 0
    tasks_cancelled: int = 0
    repairs: list[Repair] = field(default_factory=list)
    errors: list[CycleError] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The JSON body."""
        return asdict(self)


def _seconds(delta: timedelta) -> int:
    return int(delta.total_seconds())


class Sweeper:
    """The sweep of one scope; re-sends go through the same sender as the dispatcher."""

    def __init__(
        self,
        db: Database,
        scope: Scope,
        sender: Sender,
        thresholds: SweepThresholds,
        *,
        clock: Clock = utc_now,
    ) -> None:
        self._db = db
        self._scope = scope
        self._sender = sender
        self.thresholds = thresholds
        self._clock = clock

    def run(self) -> SweepSummary:
        """One sweep at the clock's current time. Raises only when a scan fails."""
        now = self._clock()
        limits = self.thresholds
        scope = self._scope
        with self._db.transaction() as session:
            work: list[tuple[list[TaskRef], Callable[[TaskRef, datetime, SweepSummary], None]]] = [
                (unstarted_of_cancelled_runs(session, scope), self._cancel),
                (ready_tasks(session, scope, ready_before=now - limits.stuck_ready), self._r1),
                (dispatched_before(session, scope, before=now - limits.stuck_dispatched), self._r2),
                (due_retries(session, scope, now=now), self._r3),
                (
                    silent_running(session, scope, deadline_before=now - limits.heartbeat_grace),
                    self._r4,
                ),
            ]
        summary = SweepSummary()
        for refs, repair in work:
            for ref in refs:
                try:
                    repair(ref, now, summary)
                except Exception as exc:  # noqa: BLE001 - one bad row never aborts the sweep
                    summary.errors.append(
                        CycleError(
                            "repair_failed",
                            f"{ref.run_id}:{ref.task_key}",
                            f"{type(exc).__name__}: {exc}",
                        )
                    )
        for applied in summary.repairs:
            log.info("repair", **asdict(applied))
        return summary

    def _cancel(self, ref: TaskRef, now: datetime, summary: SweepSummary) -> None:
        with self._db.transaction() as session:
            cancelled = cancel_unstarted_task(
                session, self._scope, ref.run_id, ref.task_key, now=now
            )
        if cancelled:
            summary.tasks_cancelled += 1
            summary.repairs.append(
                Repair("cancel", f"{ref.run_id}:{ref.task_key}", "cancel", RUN_CANCEL_REQUESTED)
            )

    def _request(
        self, ref: TaskRef, now: datetime, summary: SweepSummary, rule: str, reason: str
    ) -> None:
        with self._db.transaction() as session:
            request = request_dispatch(session, self._scope, ref.run_id, ref.task_key, now=now)
        if request is not None:
            summary.repairs_created += 1
            summary.repairs.append(Repair("create_dispatch", request.dispatch_id, rule, reason))

    def _r1(self, ref: TaskRef, now: datetime, summary: SweepSummary) -> None:
        waited = _seconds(now - ref.at) if ref.at is not None else 0
        self._request(ref, now, summary, "R1", f"stuck_ready_{waited}s")

    def _r3(self, ref: TaskRef, now: datetime, summary: SweepSummary) -> None:
        self._request(ref, now, summary, "R3", RETRY_WAIT_BOOTSTRAP)

    def _r4(self, ref: TaskRef, now: datetime, summary: SweepSummary) -> None:
        if ref.attempt_id is None:
            return
        with self._db.transaction() as session:
            reaped = reap_silent_task(
                session,
                self._scope,
                ref.run_id,
                ref.task_key,
                attempt=ref.attempt,
                attempt_id=ref.attempt_id,
                deadline_before=now - self.thresholds.heartbeat_grace,
                reason=HEARTBEAT_TIMEOUT,
                now=now,
                retry_base=self.thresholds.retry_backoff_base,
            )
        if reaped:
            summary.repairs_created += 1
            summary.repairs.append(
                Repair(
                    "fail_attempt",
                    dispatch_id(ref.run_id, ref.task_key, ref.attempt),
                    "R4",
                    HEARTBEAT_TIMEOUT,
                )
            )

    def _r2(self, ref: TaskRef, now: datetime, summary: SweepSummary) -> None:
        current = dispatch_id(ref.run_id, ref.task_key, ref.attempt)
        with self._db.transaction() as session:
            task = load_task(session, self._scope, ref.run_id, ref.task_key)
            dispatch = load_dispatch(session, self._scope, current)
        if task is None or task.state != TaskState.DISPATCHED or task.attempt != ref.attempt:
            return
        if dispatch is None:
            with self._db.transaction() as session:
                request = recreate_dispatch(session, self._scope, ref.run_id, ref.task_key, now=now)
            if request is not None:
                summary.repairs_created += 1
                summary.repairs.append(
                    Repair("create_dispatch", request.dispatch_id, "R2", MISSING_DISPATCH_OUTBOX)
                )
            return
        waited = now - dispatch.created_at
        if waited <= self.thresholds.resend_after(dispatch.redispatch_count):
            return
        if self._sender.provider.push_delivery and dispatch.leased_at(now):
            return  # a delivery is in flight; its outcome comes first
        if dispatch.redispatch_count >= self.thresholds.max_redispatches:
            with self._db.transaction() as session:
                failed = fail_attempt(
                    session,
                    self._scope,
                    ref.run_id,
                    ref.task_key,
                    attempt=dispatch.attempt,
                    attempt_id=dispatch.attempt_id,
                    reason=DISPATCH_TIMEOUT,
                    now=now,
                    retry_base=self.thresholds.retry_backoff_base,
                )
            if failed:
                summary.redispatch_exhausted += 1
                summary.repairs.append(Repair("fail_attempt", current, "R2", DISPATCH_TIMEOUT))
            return
        self._redispatch(dispatch, f"stuck_dispatched_{_seconds(waited)}s", now, summary)

    def _redispatch(
        self, dispatch: DispatchSnapshot, reason: str, now: datetime, summary: SweepSummary
    ) -> None:
        """Re-send the same attempt (same dispatch id, attempt id, fresh token) through the
        provider under the next repair name, then record it."""
        summary.redispatch_attempted += 1
        name = redispatch_name(dispatch.dispatch_id, dispatch.redispatch_count + 1)
        try:
            sent = self._sender.send(dispatch, name=name, now=now, redispatch=True)
        except MissingTaskRow as exc:
            summary.redispatch_failed += 1
            summary.errors.append(CycleError("redispatch_unscoped", dispatch.dispatch_id, str(exc)))
            return
        status = sent.result.status
        if status is EnqueueStatus.QUEUE_FULL:
            summary.redispatch_failed += 1
            summary.errors.append(
                CycleError("redispatch_queue_full", dispatch.dispatch_id, "queue full")
            )
            return
        if status is EnqueueStatus.ERROR:
            summary.redispatch_failed += 1
            summary.errors.append(
                CycleError(
                    "redispatch_enqueue_failed", dispatch.dispatch_id, sent.result.error or "error"
                )
            )
            return
        if status is EnqueueStatus.ENQUEUED:
            summary.redispatch_enqueued += 1
        else:
            summary.redispatch_deduplicated += 1
        with self._db.transaction() as session:
            recorded = record_redispatch(
                session,
                self._scope,
                dispatch.run_id,
                dispatch.dispatch_id,
                expected_redispatch_count=dispatch.redispatch_count,
                cloud_task_id=name,
                envelope_keys=sent.envelope_keys,
                push_delivery=self._sender.provider.push_delivery,
                deduplicated=status is EnqueueStatus.DEDUPLICATED,
                now=now,
            )
        if recorded:
            summary.repairs.append(Repair("redispatch", dispatch.dispatch_id, "R2", reason))
