"""What every provider sends: the canonical envelope bytes and the dispatch headers
(arco-contract 2.6 and 3.1; design D12: there is no other shape)."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from arco_envelope import DISPATCH_SECRET_HEADER, WorkerDispatchEnvelope, callback_task_id
from arco_envelope.tokens import TaskTokenConfig, mint_task_token
from arco_orchestration.facts import DispatchSnapshot

CONTENT_TYPE = "application/json"


class MissingTaskRow(LookupError):  # noqa: N818 - reads as a sentence
    """An outbox row whose task row is gone: upstream refuses to send it rather than
    degrade to the legacy unscoped envelope, and so do we."""

    def __init__(self, run_id: str, task_key: str, *, redispatch: bool = False) -> None:
        action = "redispatch" if redispatch else "dispatch"
        super().__init__(
            f"refusing unscoped {action} for missing task row: run={run_id} task={task_key}"
        )


def new_traceparent() -> str:
    """A fresh W3C traceparent (version 00, random trace and span ids, sampled)."""
    return f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"


@dataclass(frozen=True)
class EnvelopeFactory:
    """Builds the envelope of one dispatch, minting its scoped task token."""

    tenant_id: str
    workspace_id: str
    callback_base_url: str
    token_config: TaskTokenConfig

    def build(
        self, dispatch: DispatchSnapshot, *, now: datetime, redispatch: bool = False
    ) -> WorkerDispatchEnvelope:
        """The canonical envelope of ``dispatch``: attempt, attempt id, dispatch id and queue
        from the outbox row; partition key and heartbeat timeout from the task row; a token
        scoped to the run and attempt, minted at ``now``; a fresh traceparent.

        Raises :class:`MissingTaskRow` when the task row is missing.
        """
        task = dispatch.task
        if task is None:
            raise MissingTaskRow(dispatch.run_id, dispatch.task_key, redispatch=redispatch)
        task_id = callback_task_id(dispatch.run_id, dispatch.task_key)
        token, expires_at = mint_task_token(
            self.token_config,
            task_id=task_id,
            tenant_id=self.tenant_id,
            workspace_id=self.workspace_id,
            run_id=dispatch.run_id,
            attempt=dispatch.attempt,
            attempt_id=dispatch.attempt_id,
            now=now,
        )
        return WorkerDispatchEnvelope(
            tenant_id=self.tenant_id,
            workspace_id=self.workspace_id,
            task_id=task_id,
            task_key=dispatch.task_key,
            run_id=dispatch.run_id,
            attempt=dispatch.attempt,
            attempt_id=dispatch.attempt_id,
            dispatch_id=dispatch.dispatch_id,
            partition_key=task.partition_key,
            heartbeat_timeout_sec=task.heartbeat_timeout_sec,
            worker_queue=dispatch.worker_queue,
            callback_base_url=self.callback_base_url,
            task_token=token,
            token_expires_at=expires_at,
            traceparent=new_traceparent(),
            payload={},
        )


def envelope_body(envelope: WorkerDispatchEnvelope) -> bytes:
    """The bytes on the wire: compact canonical camelCase JSON, UTF-8."""
    return envelope.to_json().encode()


def envelope_keys(envelope: WorkerDispatchEnvelope) -> list[str]:
    """The envelope's key set in wire order (recorded in the task history; never values)."""
    return list(envelope.to_dict())


def dispatch_headers(secret: str) -> Mapping[str, str]:
    """``Content-Type`` and ``X-Arco-Dispatch-Secret``. The secret never goes in
    ``Authorization``, which belongs to Cloud Tasks' OIDC token."""
    value = secret.strip()
    if not value:
        raise ValueError("ARCO_FLOW_WORKER_DISPATCH_SECRET must not be empty")
    return {"Content-Type": CONTENT_TYPE, DISPATCH_SECRET_HEADER: value}
