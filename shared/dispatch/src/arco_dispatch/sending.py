"""Sending one dispatch through the provider: the single code path of the dispatcher's
enqueue and the sweeper's re-send (same envelope, same token minting, same headers)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog

from arco_dispatch.message import EnvelopeFactory, envelope_body, envelope_keys
from arco_dispatch.provider import EnqueueResult, EnqueueStatus, Provider
from arco_envelope import cloud_task_name
from arco_orchestration.db import Database
from arco_orchestration.facts import (
    DispatchSnapshot,
    Enqueued,
    load_dispatch,
    load_dispatches,
    record_enqueued,
    record_enqueues,
)
from arco_orchestration.scope import Scope
from arco_orchestration.states import OutboxStatus

log = structlog.get_logger("arco.dispatch.sending")


@dataclass(frozen=True)
class Sent:
    """What the provider answered, and the key set of the envelope it was given."""

    result: EnqueueResult
    envelope_keys: list[str]


@dataclass(frozen=True)
class Outcome:
    """What became of one PENDING row: the provider's answer (``None`` when the row is gone
    or no longer PENDING), or the error that kept it PENDING."""

    dispatch_id: str
    result: EnqueueResult | None = None
    error: Exception | None = None


@dataclass(frozen=True)
class Sender:
    """Everything needed to put one dispatch into the provider."""

    db: Database
    scope: Scope
    provider: Provider
    envelopes: EnvelopeFactory
    target: str
    headers: Mapping[str, str]
    deadline: timedelta

    def send(
        self, dispatch: DispatchSnapshot, *, name: str, now: datetime, redispatch: bool = False
    ) -> Sent:
        """Build the envelope of ``dispatch`` (token minted at ``now``) and enqueue it as
        message ``name``. No transaction is open during the provider call.

        Raises ``MissingTaskRow`` when the task row is gone.
        """
        envelope = self.envelopes.build(dispatch, now=now, redispatch=redispatch)
        result = self.provider.enqueue(
            name, self.target, envelope_body(envelope), self.headers, self.deadline
        )
        return Sent(result=result, envelope_keys=envelope_keys(envelope))

    @property
    def queues_in_outbox(self) -> bool:
        """Whether the provider's queue is the outbox row (the http provider): a dispatch
        is then queued in the transaction that requests it (:meth:`queue_now`)."""
        return self.provider.push_delivery

    def queue_now(self, dispatch: DispatchSnapshot, *, now: datetime) -> Enqueued:
        """The enqueue of a push-delivery dispatch, recorded as it is requested. Its
        provider accepts every message and the pump renders the envelope again at each
        delivery, so the envelope is built here only for the key set in the history."""
        envelope = self.envelopes.build(dispatch, now=now)
        name = cloud_task_name(dispatch.dispatch_id)
        return Enqueued(dispatch.dispatch_id, dispatch.run_id, name, envelope_keys(envelope))

    def enqueue_many(self, dispatch_ids: Sequence[str], *, now: datetime) -> list[Outcome]:
        """:meth:`enqueue_pending` for many rows: one transaction loads them, the provider
        gets each message (no transaction open), one transaction records the accepted
        ones. A crash before that record leaves the rows PENDING: the next cycle sends
        them again under the same names, which the provider deduplicates."""
        with self.db.transaction() as session:
            dispatches = load_dispatches(session, self.scope, dispatch_ids)
        outcomes: dict[str, Outcome] = {}
        accepted: list[Enqueued] = []
        for dispatch_id in dispatch_ids:
            dispatch = dispatches.get(dispatch_id)
            if dispatch is None or dispatch.status != OutboxStatus.PENDING:
                outcomes[dispatch_id] = Outcome(dispatch_id)
                continue
            name = cloud_task_name(dispatch_id)
            try:
                sent = self.send(dispatch, name=name, now=now)
            except Exception as exc:  # noqa: BLE001 - reported per row by the caller
                outcomes[dispatch_id] = Outcome(dispatch_id, error=exc)
                continue
            outcomes[dispatch_id] = Outcome(dispatch_id, result=sent.result)
            if sent.result.accepted:
                accepted.append(
                    Enqueued(
                        dispatch_id,
                        dispatch.run_id,
                        name,
                        sent.envelope_keys,
                        deduplicated=sent.result.status is EnqueueStatus.DEDUPLICATED,
                    )
                )
        for dispatch_id, failure in self._record_many(accepted, now=now).items():
            outcomes[dispatch_id] = Outcome(dispatch_id, error=failure)
        return [outcomes[dispatch_id] for dispatch_id in dispatch_ids]

    def _record_many(self, accepted: list[Enqueued], *, now: datetime) -> dict[str, Exception]:
        """Record the acknowledgements in one transaction; when that fails, one transaction
        per row, so one bad row keeps only itself PENDING. Returns the rows that failed."""
        if not accepted:
            return {}
        try:
            with self.db.transaction() as session:
                record_enqueues(
                    session,
                    self.scope,
                    accepted,
                    now=now,
                    push_delivery=self.provider.push_delivery,
                )
            return {}
        except Exception as exc:  # noqa: BLE001 - retried row by row below
            log.warning("enqueue_batch_failed", rows=len(accepted), error=str(exc))
        failed: dict[str, Exception] = {}
        for ack in accepted:
            try:
                with self.db.transaction() as session:
                    record_enqueues(
                        session,
                        self.scope,
                        [ack],
                        now=now,
                        push_delivery=self.provider.push_delivery,
                    )
            except Exception as exc:  # noqa: BLE001 - this row stays PENDING
                failed[ack.dispatch_id] = exc
        return failed

    def _record_enqueued(
        self, dispatch: DispatchSnapshot, sent: Sent, *, name: str, now: datetime
    ) -> None:
        """DispatchEnqueued for an accepted message, in its own transaction
        (``facts.record_enqueued`` locks the run first, like every fact)."""
        with self.db.transaction() as session:
            record_enqueued(
                session,
                self.scope,
                dispatch.dispatch_id,
                cloud_task_id=name,
                now=now,
                envelope_keys=sent.envelope_keys,
                push_delivery=self.provider.push_delivery,
                deduplicated=sent.result.status is EnqueueStatus.DEDUPLICATED,
            )

    def enqueue_pending(self, dispatch_id: str, *, now: datetime) -> EnqueueResult | None:
        """Enqueue a PENDING outbox row under its deterministic name (``d_...``) and record
        the acknowledgement. ``None`` when the row is gone or no longer PENDING.

        Raises ``MissingTaskRow`` when the task row is gone.
        """
        with self.db.transaction() as session:
            dispatch = load_dispatch(session, self.scope, dispatch_id)
        if dispatch is None or dispatch.status != OutboxStatus.PENDING:
            return None
        name = cloud_task_name(dispatch_id)
        sent = self.send(dispatch, name=name, now=now)
        if sent.result.accepted:
            self._record_enqueued(dispatch, sent, name=name, now=now)
        return sent.result
