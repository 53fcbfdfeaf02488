"""Sending one dispatch through the provider: the single code path of the dispatcher's
enqueue and the sweeper's re-send (same envelope, same token minting, same headers)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from arco_dispatch.message import EnvelopeFactory, envelope_body, envelope_keys
from arco_dispatch.provider import EnqueueResult, EnqueueStatus, Provider
from arco_envelope import cloud_task_name
from arco_orchestration.db import Database
from arco_orchestration.facts import record_enqueued
from arco_orchestration.scope import Scope
from arco_orchestration.snapshots import DispatchSnapshot, load_dispatch
from arco_orchestration.states import OutboxStatus


@dataclass(frozen=True)
class Sent:
    """What the provider answered, and the key set of the envelope it was given."""

    result: EnqueueResult
    envelope_keys: list[str]


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
