"""The WorkerDispatchEnvelope (arco-contract section 2, checklist 9; upstream tests 8.1, 8.4,
8.6)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from arco_envelope import (
    DEFAULT_WORKER_QUEUE,
    WorkerDispatchEnvelope,
    attempt_id,
    callback_task_id,
    dispatch_id,
)

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

CT1_TASK_ID = "ct1_cnVuLTEyMwBhbmFseXRpY3MuZGFpbHlfc2FsZXM"

# The canonical example of section 2.5, in canonical write order.
CANONICAL: dict[str, Any] = {
    "tenantId": "tenant-a",
    "workspaceId": "workspace-b",
    "taskId": CT1_TASK_ID,
    "taskKey": "analytics.daily_sales",
    "runId": "run-123",
    "attempt": 1,
    "attemptId": "att-123",
    "dispatchId": "dispatch:run-123:analytics.daily_sales:1",
    "executionLocationId": "local-dev",
    "partitionKey": "date=d:2026-01-01",
    "heartbeatTimeoutSec": 300,
    "workerQueue": "default-queue",
    "callbackBaseUrl": "https://callbacks.example",
    "taskToken": "token",
    "tokenExpiresAt": "2026-01-01T00:00:00Z",
    "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    "payload": {"partition": "date=2026-01-01"},
}

# The legacy snake_case equivalent (no task_id, partition_key, heartbeat_timeout_sec,
# traceparent).
LEGACY: dict[str, Any] = {
    "tenant_id": "tenant-a",
    "workspace_id": "workspace-b",
    "task_key": "analytics.daily_sales",
    "run_id": "run-123",
    "attempt": 1,
    "attempt_id": "att-123",
    "dispatch_id": "dispatch:run-123:analytics.daily_sales:1",
    "execution_location_id": "local-dev",
    "worker_queue": "default-queue",
    "callback_base_url": "https://callbacks.example",
    "task_token": "token",
    "token_expires_at": "2026-01-01T00:00:00Z",
    "payload": {"partition": "date=2026-01-01"},
}

SNAKE_CASE_KEYS = {
    "tenant_id",
    "workspace_id",
    "task_id",
    "task_key",
    "run_id",
    "attempt_id",
    "dispatch_id",
    "execution_location_id",
    "partition_key",
    "heartbeat_timeout_sec",
    "worker_queue",
    "callback_base_url",
    "task_token",
    "token_expires_at",
}

OPTIONAL_KEYS = ("executionLocationId", "partitionKey", "heartbeatTimeoutSec", "traceparent")


def _without(data: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k not in keys}


def _dispatcher_envelope(
    *, partition_key: str | None, heartbeat_timeout_sec: int | None
) -> WorkerDispatchEnvelope:
    """An envelope filled the way the dispatcher fills it (section 2.6)."""
    dispatch = dispatch_id("run-123", "analytics.daily_sales", 1)
    return WorkerDispatchEnvelope(
        tenant_id="tenant-a",
        workspace_id="workspace-b",
        task_id=callback_task_id("run-123", "analytics.daily_sales"),
        task_key="analytics.daily_sales",
        run_id="run-123",
        attempt=1,
        attempt_id=attempt_id(dispatch),
        dispatch_id=dispatch,
        partition_key=partition_key,
        heartbeat_timeout_sec=heartbeat_timeout_sec,
        worker_queue=DEFAULT_WORKER_QUEUE,
        callback_base_url="https://callbacks.example",
        task_token="token",
        token_expires_at=datetime(2026, 1, 1, 1, 0, 0, 123456, tzinfo=UTC),
        payload={},
    )


# ---------------------------------------------------------------------------------------------
# Upstream: crates/arco-worker-contract/tests/contract_roundtrip.rs (8.1)


def test_canonical_worker_dispatch_envelope_matches_fixture() -> None:
    """Upstream: contract_roundtrip.rs::canonical_worker_dispatch_envelope_matches_fixture."""
    text = (EXAMPLES / "dispatch-envelope.json").read_text(encoding="utf-8")
    envelope = WorkerDispatchEnvelope.from_json(text)
    assert envelope.to_dict() == json.loads(text)
    assert envelope.to_dict() == CANONICAL
    assert list(envelope.to_dict()) == list(CANONICAL)


def test_worker_dispatch_envelope_accepts_legacy_snake_case_fixture() -> None:
    """Upstream: contract_roundtrip.rs::
    worker_dispatch_envelope_accepts_legacy_snake_case_fixture."""
    text = (EXAMPLES / "dispatch-envelope-legacy.json").read_text(encoding="utf-8")
    envelope = WorkerDispatchEnvelope.from_json(text)
    assert envelope.task_id == envelope.task_key == "analytics.daily_sales"
    assert envelope.execution_location_id == "local-dev"
    assert envelope.partition_key is None
    assert envelope.heartbeat_timeout_sec is None

    written = envelope.to_dict()
    assert written["taskId"] == "analytics.daily_sales"
    assert written["callbackBaseUrl"] == "https://callbacks.example"
    assert "task_key" not in written
    assert "partitionKey" not in written
    assert "heartbeatTimeoutSec" not in written
    assert not SNAKE_CASE_KEYS & set(written)
    assert written == _without(CANONICAL, "partitionKey", "heartbeatTimeoutSec", "traceparent") | {
        "taskId": "analytics.daily_sales"
    }


def test_worker_dispatch_envelope_accepts_snake_case_partition_scope_aliases() -> None:
    """Upstream: contract_roundtrip.rs::
    worker_dispatch_envelope_accepts_snake_case_partition_scope_aliases."""
    envelope = WorkerDispatchEnvelope.from_dict(
        LEGACY | {"partition_key": "date=d:2026-01-01", "heartbeat_timeout_sec": 120}
    )
    assert envelope.partition_key == "date=d:2026-01-01"
    assert envelope.heartbeat_timeout_sec == 120
    written = envelope.to_dict()
    assert written["partitionKey"] == "date=d:2026-01-01"
    assert written["heartbeatTimeoutSec"] == 120


# ---------------------------------------------------------------------------------------------
# Upstream: crates/arco-flow/tests/worker_dispatch_envelope_tests.rs (8.4)


def test_worker_dispatch_envelope_round_trips_json() -> None:
    """Upstream: worker_dispatch_envelope_tests.rs::worker_dispatch_envelope_round_trips_json."""
    envelope = WorkerDispatchEnvelope.from_dict(
        CANONICAL
        | {
            "attempt": 2,
            "dispatchId": "dispatch:run-123:analytics.daily_sales:2",
            "tokenExpiresAt": "2026-01-01T01:00:00.123456Z",
        }
    )
    again = WorkerDispatchEnvelope.from_json(envelope.to_json())
    assert again == envelope
    assert again.task_id == CT1_TASK_ID
    assert again.attempt == 2
    assert again.tenant_id == "tenant-a"
    assert again.workspace_id == "workspace-b"
    assert again.task_key == "analytics.daily_sales"
    assert again.run_id == "run-123"
    assert again.attempt_id == "att-123"
    assert again.dispatch_id == "dispatch:run-123:analytics.daily_sales:2"
    assert again.execution_location_id == "local-dev"
    assert again.partition_key == "date=d:2026-01-01"
    assert again.heartbeat_timeout_sec == 300
    assert again.worker_queue == "default-queue"
    assert again.callback_base_url == "https://callbacks.example"
    assert again.task_token == "token"
    assert again.token_expires_at == datetime(2026, 1, 1, 1, 0, 0, 123456, tzinfo=UTC)
    assert again.traceparent == "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    assert again.payload == {"partition": "date=2026-01-01"}


def test_worker_dispatch_envelope_writes_canonical_camel_case_json() -> None:
    """Upstream: worker_dispatch_envelope_tests.rs::
    worker_dispatch_envelope_writes_canonical_camel_case_json."""
    written = json.loads(WorkerDispatchEnvelope.from_dict(CANONICAL).to_json())
    for key in (
        "taskId",
        "taskKey",
        "callbackBaseUrl",
        "executionLocationId",
        "partitionKey",
        "heartbeatTimeoutSec",
    ):
        assert key in written
    for key in ("callbackTaskId", "task_id", "callback_base_url", "partition_key"):
        assert key not in written


def test_worker_dispatch_envelope_accepts_legacy_json_without_execution_location() -> None:
    """Upstream: worker_dispatch_envelope_tests.rs::
    worker_dispatch_envelope_accepts_legacy_json_without_execution_location."""
    envelope = WorkerDispatchEnvelope.from_dict(_without(LEGACY, "execution_location_id"))
    assert envelope.task_id == envelope.task_key == "analytics.daily_sales"
    assert envelope.execution_location_id is None
    assert "executionLocationId" not in envelope.to_dict()


def test_worker_dispatch_envelope_accepts_legacy_json_without_partition_scope() -> None:
    """Upstream: worker_dispatch_envelope_tests.rs::
    worker_dispatch_envelope_accepts_legacy_json_without_partition_scope."""
    envelope = WorkerDispatchEnvelope.from_dict(LEGACY)
    assert envelope.partition_key is None
    assert envelope.heartbeat_timeout_sec is None


def test_worker_dispatch_envelope_omits_execution_location_when_absent() -> None:
    """Upstream: worker_dispatch_envelope_tests.rs::
    worker_dispatch_envelope_omits_execution_location_when_absent."""
    written = WorkerDispatchEnvelope.from_dict(_without(CANONICAL, "executionLocationId")).to_json()
    assert "executionLocationId" not in json.loads(written)
    assert "executionLocationId" not in written


def test_worker_dispatch_envelope_omits_partition_scope_when_absent() -> None:
    """Upstream: worker_dispatch_envelope_tests.rs::
    worker_dispatch_envelope_omits_partition_scope_when_absent."""
    envelope = WorkerDispatchEnvelope.from_dict(
        _without(CANONICAL, "partitionKey", "heartbeatTimeoutSec")
    )
    written = json.loads(envelope.to_json())
    assert "partitionKey" not in written
    assert "heartbeatTimeoutSec" not in written


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(_without(CANONICAL, "callbackBaseUrl"), id="camelCase"),
        pytest.param(_without(LEGACY, "callback_base_url"), id="legacy-snake_case"),
    ],
)
def test_worker_dispatch_envelope_rejects_missing_required_fields(body: dict[str, Any]) -> None:
    """Upstream: worker_dispatch_envelope_tests.rs::
    worker_dispatch_envelope_rejects_missing_required_fields."""
    with pytest.raises(ValidationError) as excinfo:
        WorkerDispatchEnvelope.from_json(json.dumps(body))
    assert "callbackBaseUrl" in str(excinfo.value)
    errors = excinfo.value.errors()
    assert [(e["type"], e["loc"]) for e in errors] == [("missing", ("callbackBaseUrl",))]


def test_worker_dispatch_envelope_omits_traceparent_when_absent() -> None:
    """Upstream: worker_dispatch_envelope_tests.rs::
    worker_dispatch_envelope_omits_traceparent_when_absent."""
    written = WorkerDispatchEnvelope.from_dict(_without(CANONICAL, "traceparent")).to_json()
    assert "traceparent" not in json.loads(written)


# ---------------------------------------------------------------------------------------------
# Upstream: unit tests in crates/arco-flow/src/orchestration/worker_contract.rs (8.6),
# envelope-level parts


def test_envelope_carries_planned_partition_key_and_heartbeat_timeout() -> None:
    """Upstream: worker_contract.rs::
    envelope_carries_planned_partition_key_and_heartbeat_timeout."""
    envelope = _dispatcher_envelope(partition_key="date=d:2026-01-01", heartbeat_timeout_sec=300)
    written = envelope.to_dict()
    assert written["taskId"] == CT1_TASK_ID
    assert written["taskId"].startswith("ct1_")
    assert written["partitionKey"] == "date=d:2026-01-01"
    assert written["heartbeatTimeoutSec"] == 300
    assert written["payload"] == {}
    assert written["tokenExpiresAt"] == "2026-01-01T01:00:00.123456Z"
    assert "executionLocationId" not in written
    assert "traceparent" not in written


def test_envelope_omits_partition_key_for_unpartitioned_tasks() -> None:
    """Upstream: worker_contract.rs::envelope_omits_partition_key_for_unpartitioned_tasks."""
    envelope = _dispatcher_envelope(partition_key=None, heartbeat_timeout_sec=300)
    written = envelope.to_dict()
    assert envelope.partition_key is None
    assert "partitionKey" not in written
    assert written["heartbeatTimeoutSec"] == 300


def test_envelope_degrades_to_legacy_shape_without_task_row() -> None:
    """Upstream: worker_contract.rs::envelope_degrades_to_legacy_shape_without_task_row."""
    envelope = _dispatcher_envelope(partition_key=None, heartbeat_timeout_sec=None)
    written = envelope.to_dict()
    assert envelope.partition_key is None
    assert envelope.heartbeat_timeout_sec is None
    assert "partitionKey" not in written
    assert "heartbeatTimeoutSec" not in written


# ---------------------------------------------------------------------------------------------
# Read rules (section 2.2)


def test_spellings_may_be_mixed_across_fields() -> None:
    mixed = _without(CANONICAL, "tenantId", "callbackBaseUrl", "heartbeatTimeoutSec") | {
        "tenant_id": "tenant-a",
        "callback_base_url": "https://callbacks.example",
        "heartbeat_timeout_sec": 300,
    }
    assert WorkerDispatchEnvelope.from_dict(mixed).to_dict() == CANONICAL


@pytest.mark.parametrize(
    ("camel", "snake"),
    [
        ("tenantId", "tenant_id"),
        ("workspaceId", "workspace_id"),
        ("taskId", "task_id"),
        ("taskKey", "task_key"),
        ("runId", "run_id"),
        ("attemptId", "attempt_id"),
        ("dispatchId", "dispatch_id"),
        ("executionLocationId", "execution_location_id"),
        ("partitionKey", "partition_key"),
        ("heartbeatTimeoutSec", "heartbeat_timeout_sec"),
        ("workerQueue", "worker_queue"),
        ("callbackBaseUrl", "callback_base_url"),
        ("taskToken", "task_token"),
        ("tokenExpiresAt", "token_expires_at"),
    ],
)
def test_both_spellings_of_one_field_is_an_error(camel: str, snake: str) -> None:
    body = CANONICAL | {snake: CANONICAL[camel]}
    with pytest.raises(ValidationError, match=camel):
        WorkerDispatchEnvelope.from_json(json.dumps(body))


def test_both_spellings_is_an_error_even_when_one_is_null() -> None:
    with pytest.raises(ValidationError, match="taskId"):
        WorkerDispatchEnvelope.from_dict(CANONICAL | {"taskId": None, "task_id": CT1_TASK_ID})


def test_unknown_fields_are_ignored() -> None:
    body = CANONICAL | {
        "callbackTaskId": "ct1_cnVuLTEAZXh0cmFjdA",
        "callback_task_id": "ct1_cnVuLTEAZXh0cmFjdA",
        "tenant": "someone-else",
        "extra": {"nested": [1, 2, 3]},
    }
    envelope = WorkerDispatchEnvelope.from_json(json.dumps(body))
    assert envelope.to_dict() == CANONICAL
    assert envelope.tenant_id == "tenant-a"


def test_callback_task_id_is_not_an_alias_of_task_id() -> None:
    body = _without(CANONICAL, "taskId") | {"callbackTaskId": "ct1_cnVuLTEAZXh0cmFjdA"}
    assert WorkerDispatchEnvelope.from_dict(body).task_id == "analytics.daily_sales"


@pytest.mark.parametrize(
    "missing",
    [
        "tenantId",
        "workspaceId",
        "taskKey",
        "runId",
        "attempt",
        "attemptId",
        "dispatchId",
        "workerQueue",
        "callbackBaseUrl",
        "taskToken",
        "tokenExpiresAt",
    ],
)
def test_missing_required_field_error_names_the_camel_case_field(missing: str) -> None:
    with pytest.raises(ValidationError) as excinfo:
        WorkerDispatchEnvelope.from_dict(_without(CANONICAL, missing))
    assert any(e["type"] == "missing" and e["loc"] == (missing,) for e in excinfo.value.errors())


def test_only_the_listed_fields_are_required() -> None:
    minimal = _without(CANONICAL, "taskId", *OPTIONAL_KEYS, "payload")
    envelope = WorkerDispatchEnvelope.from_dict(minimal)
    assert envelope.task_id == "analytics.daily_sales"
    assert envelope.payload is None


@pytest.mark.parametrize(
    "attempt",
    [
        pytest.param("1", id="string"),
        pytest.param(1.0, id="float-1.0"),
        pytest.param(1.5, id="float"),
        pytest.param(-1, id="negative"),
        pytest.param(4_294_967_296, id="above-u32"),
        pytest.param(True, id="bool"),
        pytest.param(None, id="null"),
    ],
)
def test_attempt_wrong_type_or_range_is_rejected(attempt: object) -> None:
    with pytest.raises(ValidationError, match="attempt"):
        WorkerDispatchEnvelope.from_json(json.dumps(CANONICAL | {"attempt": attempt}))


@pytest.mark.parametrize("attempt", [0, 1, 4_294_967_295])
def test_attempt_accepts_the_u32_range(attempt: int) -> None:
    # The JSON reader does not reject 0 (only the protobuf validate_contract does).
    envelope = WorkerDispatchEnvelope.from_json(json.dumps(CANONICAL | {"attempt": attempt}))
    assert envelope.attempt == attempt


@pytest.mark.parametrize("value", ["300", 300.0, -1, 4_294_967_296])
def test_heartbeat_timeout_wrong_type_or_range_is_rejected(value: object) -> None:
    with pytest.raises(ValidationError, match="heartbeatTimeoutSec"):
        WorkerDispatchEnvelope.from_json(json.dumps(CANONICAL | {"heartbeatTimeoutSec": value}))


@pytest.mark.parametrize("field", ["tenantId", "taskKey", "taskToken", "partitionKey"])
def test_string_fields_reject_numbers(field: str) -> None:
    with pytest.raises(ValidationError, match=field):
        WorkerDispatchEnvelope.from_dict(CANONICAL | {field: 5})


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(CANONICAL | {"taskId": None}, id="taskId-null"),
        pytest.param(_without(CANONICAL, "taskId"), id="taskId-absent"),
        pytest.param(_without(CANONICAL, "taskId") | {"task_id": None}, id="task_id-null"),
        pytest.param(_without(LEGACY, "task_key") | {"taskKey": "analytics.daily_sales"}, id="mix"),
    ],
)
def test_missing_or_null_task_id_defaults_to_task_key(body: dict[str, Any]) -> None:
    envelope = WorkerDispatchEnvelope.from_dict(body)
    assert envelope.task_id == "analytics.daily_sales"
    assert envelope.to_dict()["taskId"] == "analytics.daily_sales"
    assert envelope.callback_url("started") == (
        "https://callbacks.example/api/v1/tasks/analytics.daily_sales/started"
    )


def test_empty_string_task_id_is_kept_empty() -> None:
    envelope = WorkerDispatchEnvelope.from_dict(CANONICAL | {"taskId": ""})
    assert envelope.task_id == ""
    assert envelope.to_dict()["taskId"] == ""


def test_legacy_task_id_is_read() -> None:
    envelope = WorkerDispatchEnvelope.from_dict(LEGACY | {"task_id": CT1_TASK_ID})
    assert envelope.task_id == CT1_TASK_ID


def test_reading_does_not_mutate_the_input() -> None:
    body = _without(CANONICAL, "taskId")
    snapshot = json.loads(json.dumps(body))
    WorkerDispatchEnvelope.from_dict(body)
    assert body == snapshot


@pytest.mark.parametrize("document", ["[]", '"x"', "null", "1", "{"])
def test_non_object_documents_are_rejected(document: str) -> None:
    with pytest.raises(ValidationError):
        WorkerDispatchEnvelope.from_json(document)


def test_envelope_is_frozen() -> None:
    envelope = WorkerDispatchEnvelope.from_dict(CANONICAL)
    with pytest.raises(ValidationError, match="frozen"):
        envelope.attempt = 2  # type: ignore[misc]


# ---------------------------------------------------------------------------------------------
# Write rules (section 2.3)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(_without(CANONICAL, "payload"), id="absent"),
        pytest.param(CANONICAL | {"payload": None}, id="null"),
    ],
)
def test_payload_is_always_written(body: dict[str, Any]) -> None:
    written = WorkerDispatchEnvelope.from_dict(body).to_json()
    assert json.loads(written)["payload"] is None
    assert written.endswith(',"payload":null}')


def test_payload_is_written_verbatim() -> None:
    payload = {"a": None, "b": [None, True, 1.5, -7], "c": {"d": "\u00e9\u65e5"}, "e": ""}
    envelope = WorkerDispatchEnvelope.from_dict(CANONICAL | {"payload": payload})
    assert envelope.to_dict()["payload"] == payload
    assert '"payload":{"a":null,"b":[null,true,1.5,-7],"c":{"d":"\u00e9\u65e5"},"e":""}' in (
        envelope.to_json()
    )


@pytest.mark.parametrize("payload", [[1, 2], "text", 0, False, {}])
def test_non_object_payloads_are_kept(payload: object) -> None:
    envelope = WorkerDispatchEnvelope.from_dict(CANONICAL | {"payload": payload})
    assert envelope.to_dict()["payload"] == payload


def test_optional_fields_are_never_written_as_null() -> None:
    body = CANONICAL | dict.fromkeys(OPTIONAL_KEYS)
    written = WorkerDispatchEnvelope.from_json(json.dumps(body)).to_json()
    for key in OPTIONAL_KEYS:
        assert key not in json.loads(written)
    assert written.count("null") == 0


def test_no_callback_task_id_key_is_written() -> None:
    for body in (CANONICAL, LEGACY):
        assert "callbackTaskId" not in WorkerDispatchEnvelope.from_dict(body).to_json()


def test_to_json_is_compact_and_keeps_utf8() -> None:
    envelope = WorkerDispatchEnvelope.from_dict(CANONICAL | {"taskKey": "caf\u00e9"})
    written = envelope.to_json()
    assert '"taskKey":"caf\u00e9"' in written
    assert ": " not in written
    assert ", " not in written


# ---------------------------------------------------------------------------------------------
# Timestamps on the envelope (section 2.4)


def test_token_expires_at_without_offset_is_rejected() -> None:
    with pytest.raises(ValidationError, match="tokenExpiresAt"):
        WorkerDispatchEnvelope.from_dict(CANONICAL | {"tokenExpiresAt": "2026-01-01T00:00:00"})


@pytest.mark.parametrize(
    "value",
    [
        "2026-01-01T02:00:00+02:00",
        "2026-01-01T02:00:00+0200",
        "2026-01-01T00:00:00UTC",
        "2026-01-01t00:00:00z",
        "2026-01-01 00:00:00Z",
        "2025-12-31T23:00:00-01:00",
    ],
)
def test_token_expires_at_relaxed_forms_are_normalised_to_utc(value: str) -> None:
    envelope = WorkerDispatchEnvelope.from_dict(CANONICAL | {"tokenExpiresAt": value})
    assert envelope.token_expires_at == datetime(2026, 1, 1, tzinfo=UTC)
    assert envelope.token_expires_at.utcoffset() == timedelta(0)
    assert envelope.to_dict()["tokenExpiresAt"] == "2026-01-01T00:00:00Z"


@pytest.mark.parametrize(
    ("value", "written"),
    [
        ("2026-01-01T00:00:00.000Z", "2026-01-01T00:00:00Z"),
        ("2026-01-01T00:00:00.25Z", "2026-01-01T00:00:00.250Z"),
        ("2026-01-01T00:00:00.123400Z", "2026-01-01T00:00:00.123400Z"),
        ("2026-01-01T01:00:00.123456+01:00", "2026-01-01T00:00:00.123456Z"),
    ],
)
def test_token_expires_at_is_written_with_the_fewest_digits(value: str, written: str) -> None:
    envelope = WorkerDispatchEnvelope.from_dict(CANONICAL | {"tokenExpiresAt": value})
    assert envelope.to_dict()["tokenExpiresAt"] == written


# ---------------------------------------------------------------------------------------------
# Derived values: heartbeat cadence (section 2.7) and callback URLs (section 4)


@pytest.mark.parametrize(
    ("timeout", "interval"),
    [(300, 60), (None, 60), (3600, 60), (30, 6), (100, 20), (31, 6.2), (4_294_967_295, 60)],
)
def test_heartbeat_interval_secs(timeout: int | None, interval: float) -> None:
    envelope = WorkerDispatchEnvelope.from_dict(CANONICAL | {"heartbeatTimeoutSec": timeout})
    assert envelope.heartbeat_interval_secs() == pytest.approx(interval)


@pytest.mark.parametrize("timeout", [0, 1, 29])
def test_heartbeat_interval_secs_rejects_timeouts_below_the_floor(timeout: int) -> None:
    envelope = WorkerDispatchEnvelope.from_dict(CANONICAL | {"heartbeatTimeoutSec": timeout})
    with pytest.raises(ValueError, match="below the 30s floor"):
        envelope.heartbeat_interval_secs()


@pytest.mark.parametrize(
    "base",
    ["https://callbacks.example", "https://callbacks.example/", "https://callbacks.example//"],
)
@pytest.mark.parametrize("phase", ["started", "heartbeat", "completed"])
def test_callback_url_strips_trailing_slash(base: str, phase: str) -> None:
    envelope = WorkerDispatchEnvelope.from_dict(CANONICAL | {"callbackBaseUrl": base})
    assert envelope.callback_url(phase) == (
        f"https://callbacks.example/api/v1/tasks/{CT1_TASK_ID}/{phase}"
    )


def test_callback_url_keeps_a_base_path() -> None:
    envelope = WorkerDispatchEnvelope.from_dict(
        CANONICAL | {"callbackBaseUrl": "http://api:8080/arco/"}
    )
    assert envelope.callback_url("completed") == (
        f"http://api:8080/arco/api/v1/tasks/{CT1_TASK_ID}/completed"
    )
