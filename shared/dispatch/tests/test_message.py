"""The envelope builder and dispatch headers: arco-contract 2.6, 3.1, 8.4 and 8.5."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from pydantic import ValidationError

from arco_dispatch.adapters import make_envelopes
from arco_dispatch.message import (
    MissingTaskRow,
    dispatch_headers,
    envelope_body,
    envelope_keys,
    new_traceparent,
)
from arco_envelope import WorkerDispatchEnvelope, attempt_id, callback_task_id
from arco_envelope.tokens import verify_task_token
from arco_orchestration.facts import DispatchSnapshot, TaskSnapshot
from arco_testkit.clock import T0
from arco_testkit.dispatching import CANONICAL_ENVELOPE_KEYS, flow_settings

TRACEPARENT = re.compile(r"^00-[0-9a-f]{32}-[0-9a-f]{16}-01$")


def snapshot(
    *, attempt: int = 2, partition_key: str | None = "date=d:2026-01-01", task: bool = True
) -> DispatchSnapshot:
    dispatch = f"dispatch:run-123:analytics.daily_sales:{attempt}"
    return DispatchSnapshot(
        dispatch_id=dispatch,
        run_id="run-123",
        task_key="analytics.daily_sales",
        attempt=attempt,
        attempt_id=attempt_id(dispatch),
        worker_queue="default-queue",
        status="PENDING",
        created_at=T0,
        enqueued_at=None,
        redispatch_count=0,
        delivery_state=None,
        delivery_attempts=0,
        lease_expires_at=None,
        task=TaskSnapshot(
            run_id="run-123",
            task_key="analytics.daily_sales",
            state="DISPATCHED",
            attempt=attempt,
            attempt_id=attempt_id(dispatch),
            partition_key=partition_key,
            heartbeat_timeout_sec=120,
        )
        if task
        else None,
    )


def build(
    *, partition_key: str | None = "date=d:2026-01-01", task: bool = True
) -> WorkerDispatchEnvelope:
    dispatch = snapshot(partition_key=partition_key, task=task)
    return make_envelopes(flow_settings()).build(dispatch, now=T0)


def test_the_dispatcher_fills_every_field_of_section_2_6() -> None:
    envelope = build()
    assert envelope.tenant_id == "tenant-a"
    assert envelope.workspace_id == "workspace-b"
    assert envelope.task_id == callback_task_id("run-123", "analytics.daily_sales")
    assert envelope.task_id == "ct1_cnVuLTEyMwBhbmFseXRpY3MuZGFpbHlfc2FsZXM"
    assert envelope.task_key == "analytics.daily_sales"
    assert envelope.run_id == "run-123"
    assert envelope.attempt == 2
    assert envelope.attempt_id == attempt_id("dispatch:run-123:analytics.daily_sales:2")
    assert envelope.dispatch_id == "dispatch:run-123:analytics.daily_sales:2"
    assert envelope.execution_location_id is None
    assert envelope.partition_key == "date=d:2026-01-01"
    assert envelope.heartbeat_timeout_sec == 120
    assert envelope.worker_queue == "default-queue"
    assert envelope.callback_base_url == "https://api.example"
    assert envelope.token_expires_at == T0 + timedelta(seconds=3600)
    assert envelope.payload == {}
    assert envelope.traceparent is not None
    assert TRACEPARENT.match(envelope.traceparent)


def test_the_token_is_scoped_to_the_run_and_attempt() -> None:
    settings = flow_settings()
    envelope = make_envelopes(settings).build(snapshot(), now=T0)
    claims = verify_task_token(settings.task_token_config(), envelope.task_token, now=T0)
    assert claims.task_id == envelope.task_id
    assert (claims.tenant_id, claims.workspace_id) == ("tenant-a", "workspace-b")
    assert (claims.run_id, claims.attempt, claims.attempt_id) == (
        "run-123",
        2,
        envelope.attempt_id,
    )
    assert (claims.iss, claims.aud) == ("https://issuer.task", "arco-worker-callback")
    assert claims.exp == int((T0 + timedelta(seconds=3600)).timestamp())


def test_every_dispatch_gets_a_fresh_traceparent() -> None:
    assert build().traceparent != build().traceparent
    assert new_traceparent() != new_traceparent()


def test_a_missing_task_row_is_refused_never_degraded_to_the_legacy_shape() -> None:
    """Scenario 54 / arco-contract 2.6: no unscoped dispatch."""
    with pytest.raises(
        MissingTaskRow,
        match=re.escape(
            "refusing unscoped dispatch for missing task row: "
            "run=run-123 task=analytics.daily_sales"
        ),
    ):
        build(task=False)
    with pytest.raises(MissingTaskRow, match="refusing unscoped redispatch"):
        make_envelopes(flow_settings()).build(snapshot(task=False), now=T0, redispatch=True)


def test_envelope_round_trips_through_json() -> None:
    """8.4 worker_dispatch_envelope_round_trips_json."""
    envelope = build()
    assert WorkerDispatchEnvelope.from_json(envelope_body(envelope)) == envelope


def test_envelope_writes_canonical_camel_case_json() -> None:
    """8.4 worker_dispatch_envelope_writes_canonical_camel_case_json (the dispatcher never
    sets executionLocationId, so it is absent here)."""
    body = json.loads(envelope_body(build()))
    assert list(body) == CANONICAL_ENVELOPE_KEYS
    assert envelope_keys(build()) == CANONICAL_ENVELOPE_KEYS
    for legacy in ("callbackTaskId", "task_id", "callback_base_url", "partition_key", "task_key"):
        assert legacy not in body


def test_envelope_reads_legacy_json_without_execution_location_or_partition_scope() -> None:
    """8.4 accepts_legacy_json_without_execution_location / _without_partition_scope."""
    legacy = {
        "tenant_id": "tenant-a",
        "workspace_id": "workspace-b",
        "task_key": "analytics.daily_sales",
        "run_id": "run-123",
        "attempt": 1,
        "attempt_id": "att-123",
        "dispatch_id": "dispatch:run-123:analytics.daily_sales:1",
        "worker_queue": "default-queue",
        "callback_base_url": "https://api.example",
        "task_token": "token",
        "token_expires_at": "2026-01-01T00:00:00Z",
        "payload": {},
    }
    envelope = WorkerDispatchEnvelope.from_dict(legacy)
    assert envelope.task_id == envelope.task_key == "analytics.daily_sales"
    assert envelope.execution_location_id is None
    assert envelope.partition_key is None
    assert envelope.heartbeat_timeout_sec is None


def test_envelope_omits_partition_scope_and_traceparent_when_absent() -> None:
    """8.4 omits_execution_location / omits_partition_scope / omits_traceparent_when_absent."""
    envelope = build(partition_key=None).model_copy(update={"traceparent": None})
    body = json.loads(envelope_body(envelope))
    for absent in ("executionLocationId", "partitionKey", "traceparent"):
        assert absent not in body
    assert body["heartbeatTimeoutSec"] == 120


def test_envelope_rejects_missing_required_fields() -> None:
    """8.4 worker_dispatch_envelope_rejects_missing_required_fields."""
    body = json.loads(envelope_body(build()))
    del body["callbackBaseUrl"]
    with pytest.raises(ValidationError, match="callbackBaseUrl"):
        WorkerDispatchEnvelope.from_dict(body)


def test_dispatch_headers_use_the_custom_secret_header() -> None:
    """8.5 worker_dispatch_headers_use_custom_secret_header."""
    headers = dispatch_headers(" dispatch-secret ")
    assert dict(headers) == {
        "Content-Type": "application/json",
        "X-Arco-Dispatch-Secret": "dispatch-secret",
    }
    assert "Authorization" not in headers


def test_dispatch_headers_reject_an_empty_secret() -> None:
    """8.5 worker_dispatch_headers_reject_empty_secret."""
    with pytest.raises(ValueError, match="ARCO_FLOW_WORKER_DISPATCH_SECRET"):
        dispatch_headers("   ")
