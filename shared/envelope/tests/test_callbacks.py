"""Callback request and response bodies (arco-contract sections 4, 5 and 9; upstream tests
8.1 and 8.11)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from arco_envelope import (
    ATTEMPT_OVER_CODES,
    CallbackErrorCode,
    CallbackErrorPayload,
    ErrorCategory,
    HeartbeatRequest,
    HeartbeatResponse,
    OutputVisibilityState,
    TaskCompletedRequest,
    TaskCompletedResponse,
    TaskError,
    TaskMetrics,
    TaskOutput,
    TaskStartedRequest,
    TaskStartedResponse,
    WorkerOutcome,
)

BASE: dict[str, Any] = {"attempt": 1, "attemptId": "att-123", "workerId": "worker-1"}
SERVER_TIME = datetime(2026, 1, 1, 0, 0, 6, tzinfo=UTC)

# Section 5.3 fixture (round-trips exactly).
CALLBACK_ERROR_FIXTURE = (
    '{"error":"attempt_id_mismatch","message":"callback attempt id is stale","state":"RUNNING",'
    '"expectedAttempt":1,"receivedAttempt":1,"expectedAttemptId":"att-123",'
    '"receivedAttemptId":"att-456"}'
)

DELTA_OUTPUT: dict[str, Any] = {
    "materializationId": "mat-1",
    "rowCount": 1200,
    "byteSize": 65536,
    "outputPath": "gs://bucket/analytics/daily_sales/date=2026-01-01",
    "deltaTable": "analytics.daily_sales",
    "deltaVersion": 7,
    "deltaPartition": "date=2026-01-01",
    "outputVisibilityState": "VISIBLE",
    "publishedAt": "2026-01-01T00:01:00Z",
    "publishError": "none",
}

SNAKE_CASE_KEY_HINTS = ("attempt_id", "worker_id", "started_at", "progress_pct", "_")


# ---------------------------------------------------------------------------------------------
# Upstream: crates/arco-worker-contract/tests/contract_roundtrip.rs (8.1)


def test_heartbeat_progress_rejects_values_above_one_hundred() -> None:
    """Upstream: contract_roundtrip.rs::heartbeat_progress_rejects_values_above_one_hundred."""
    with pytest.raises(ValidationError) as excinfo:
        HeartbeatRequest.from_json(json.dumps(BASE | {"progressPct": 101}))
    assert "progressPct" in str(excinfo.value)


def test_completed_request_accepts_legacy_result_alias() -> None:
    """Upstream: contract_roundtrip.rs::completed_request_accepts_legacy_result_alias."""
    request = TaskCompletedRequest.from_json(
        json.dumps(BASE | {"outcome": "SUCCEEDED", "result": {"rowCount": 1}})
    )
    assert request.output is not None
    assert request.output.row_count == 1
    written = request.to_dict()
    assert written["output"] == {"rowCount": 1}
    assert "result" not in written


# ---------------------------------------------------------------------------------------------
# Upstream: unit tests in crates/arco-flow/src/orchestration/callbacks/types.rs (8.11)


def test_task_started_request_serialization() -> None:
    """Upstream: callbacks/types.rs::test_task_started_request_serialization."""
    request = TaskStartedRequest(
        attempt=1,
        attempt_id="att-123",
        worker_id="worker-1",
        started_at=datetime(2026, 1, 1, 0, 0, 1, tzinfo=UTC),
    )
    written = request.to_json()
    assert '"attemptId":"att-123"' in written
    assert '"workerId":"worker-1"' in written
    assert '"startedAt":"2026-01-01T00:00:01Z"' in written
    assert not any(hint in key for key in json.loads(written) for hint in SNAKE_CASE_KEY_HINTS)
    assert written == (
        '{"attempt":1,"attemptId":"att-123","workerId":"worker-1","startedAt":"2026-01-01T00:00:01Z"}'
    )


def test_heartbeat_request_optional_fields() -> None:
    """Upstream: callbacks/types.rs::test_heartbeat_request_optional_fields."""
    request = HeartbeatRequest.from_json(json.dumps(BASE))
    assert request.heartbeat_at is None
    assert request.progress_pct is None
    assert request.message is None
    assert request.traceparent is None
    assert request.to_dict() == BASE


def test_task_completed_success() -> None:
    """Upstream: callbacks/types.rs::test_task_completed_success."""
    request = TaskCompletedRequest(
        attempt=1,
        attempt_id="att-123",
        worker_id="worker-1",
        outcome=WorkerOutcome.SUCCEEDED,
        output=TaskOutput(
            materialization_id="mat-1",
            row_count=1200,
            delta_table="analytics.daily_sales",
            delta_version=7,
            delta_partition="date=2026-01-01",
        ),
    )
    written = request.to_json()
    assert "SUCCEEDED" in written
    assert "materializationId" in written
    assert '"deltaTable":"analytics.daily_sales"' in written
    assert '"deltaVersion":7' in written
    assert '"deltaPartition":"date=2026-01-01"' in written
    assert TaskCompletedRequest.from_json(written) == request


def test_task_completed_failure() -> None:
    """Upstream: callbacks/types.rs::test_task_completed_failure."""
    request = TaskCompletedRequest(
        attempt=1,
        attempt_id="att-123",
        worker_id="worker-1",
        outcome=WorkerOutcome.FAILED,
        error=TaskError(category=ErrorCategory.USER_CODE, message="division by zero"),
    )
    written = request.to_json()
    assert '"outcome":"FAILED"' in written
    assert '"category":"USER_CODE"' in written
    assert "retryable" not in written
    assert TaskCompletedRequest.from_json(written) == request


def test_error_category_default_retryable() -> None:
    """Upstream: callbacks/types.rs::test_error_category_default_retryable."""
    assert ErrorCategory.USER_CODE.default_retryable is True
    assert ErrorCategory.INFRASTRUCTURE.default_retryable is True
    assert ErrorCategory.TIMEOUT.default_retryable is True
    assert ErrorCategory.DATA_QUALITY.default_retryable is False
    assert ErrorCategory.CONFIGURATION.default_retryable is False
    assert ErrorCategory.CANCELLED.default_retryable is False


def test_task_error_effective_retryable() -> None:
    """Upstream: callbacks/types.rs::test_task_error_effective_retryable."""
    defaulted = TaskError(category=ErrorCategory.DATA_QUALITY, message="bad rows")
    assert defaulted.effective_retryable is False
    overridden = TaskError(category=ErrorCategory.DATA_QUALITY, message="bad rows", retryable=True)
    assert overridden.effective_retryable is True


def test_callback_error_variants() -> None:
    """Upstream: callbacks/types.rs::test_callback_error_variants."""
    assert [code.value for code in CallbackErrorCode] == [
        "invalid_argument",
        "task_id_ambiguous",
        "invalid_token",
        "task_not_found",
        "task_already_terminal",
        "attempt_already_completed",
        "attempt_mismatch",
        "attempt_id_mismatch",
        "task_expired",
    ]
    terminal = CallbackErrorPayload(
        error=CallbackErrorCode.TASK_ALREADY_TERMINAL,
        message="Task is already in terminal state: SUCCEEDED",
        state="SUCCEEDED",
    )
    assert terminal.to_dict() == {
        "error": "task_already_terminal",
        "message": "Task is already in terminal state: SUCCEEDED",
        "state": "SUCCEEDED",
    }
    completed = CallbackErrorPayload(
        error=CallbackErrorCode.ATTEMPT_ALREADY_COMPLETED,
        message="Attempt 1 already reported a terminal result; task state is RETRY_WAIT",
        state="RETRY_WAIT",
        expected_attempt=1,
        received_attempt=1,
    )
    assert completed.to_dict() == {
        "error": "attempt_already_completed",
        "message": "Attempt 1 already reported a terminal result; task state is RETRY_WAIT",
        "state": "RETRY_WAIT",
        "expectedAttempt": 1,
        "receivedAttempt": 1,
    }
    mismatch = CallbackErrorPayload(
        error=CallbackErrorCode.ATTEMPT_MISMATCH,
        message="Expected attempt 2, received 1",
        expected_attempt=2,
        received_attempt=1,
    )
    assert mismatch.to_json() == (
        '{"error":"attempt_mismatch","message":"Expected attempt 2, received 1",'
        '"expectedAttempt":2,"receivedAttempt":1}'
    )
    id_mismatch = CallbackErrorPayload(
        error=CallbackErrorCode.ATTEMPT_ID_MISMATCH,
        message="Expected attempt_id att-1, received att-2",
        expected_attempt_id="att-1",
        received_attempt_id="att-2",
    )
    assert id_mismatch.to_dict() == {
        "error": "attempt_id_mismatch",
        "message": "Expected attempt_id att-1, received att-2",
        "expectedAttemptId": "att-1",
        "receivedAttemptId": "att-2",
    }
    expired = CallbackErrorPayload(
        error=CallbackErrorCode.TASK_EXPIRED, message="Task is no longer active", state="SUCCEEDED"
    )
    assert expired.to_dict()["error"] == "task_expired"
    not_found = CallbackErrorPayload(
        error=CallbackErrorCode.TASK_NOT_FOUND, message="Task not found: ct1_cgBr"
    )
    assert not_found.to_dict() == {"error": "task_not_found", "message": "Task not found: ct1_cgBr"}


def test_attempt_over_codes_are_the_409_codes_of_started() -> None:
    assert {
        "task_already_terminal",
        "attempt_already_completed",
        "attempt_mismatch",
        "attempt_id_mismatch",
    } == ATTEMPT_OVER_CODES


# ---------------------------------------------------------------------------------------------
# Request bodies: camelCase only (sections 5.1 and 7)


@pytest.mark.parametrize(
    ("model", "extra"),
    [
        (TaskStartedRequest, {}),
        (HeartbeatRequest, {}),
        (TaskCompletedRequest, {"outcome": "SUCCEEDED"}),
    ],
)
@pytest.mark.parametrize(
    ("snake", "camel"), [("attempt_id", "attemptId"), ("worker_id", "workerId")]
)
def test_snake_case_required_key_leaves_the_field_missing(
    model: type[TaskStartedRequest | HeartbeatRequest | TaskCompletedRequest],
    extra: dict[str, Any],
    snake: str,
    camel: str,
) -> None:
    body = {k: v for k, v in BASE.items() if k != camel} | {snake: BASE[camel]} | extra
    with pytest.raises(ValidationError) as excinfo:
        model.from_json(json.dumps(body))
    assert [(e["type"], e["loc"]) for e in excinfo.value.errors()] == [("missing", (camel,))]


@pytest.mark.parametrize(
    ("model", "body", "attribute"),
    [
        (HeartbeatRequest, BASE | {"progress_pct": 50}, "progress_pct"),
        (HeartbeatRequest, BASE | {"heartbeat_at": "2026-01-01T00:00:05Z"}, "heartbeat_at"),
        (TaskStartedRequest, BASE | {"started_at": "2026-01-01T00:00:01Z"}, "started_at"),
        (
            TaskCompletedRequest,
            BASE | {"outcome": "CANCELLED", "cancelled_during_phase": "running"},
            "cancelled_during_phase",
        ),
        (
            TaskCompletedRequest,
            BASE | {"outcome": "SUCCEEDED", "completed_at": "2026-01-01T00:01:00Z"},
            "completed_at",
        ),
    ],
)
def test_snake_case_optional_key_is_silently_dropped(
    model: type[TaskStartedRequest | HeartbeatRequest | TaskCompletedRequest],
    body: dict[str, Any],
    attribute: str,
) -> None:
    parsed = model.from_json(json.dumps(body))
    assert getattr(parsed, attribute) is None
    assert not any("_" in key for key in parsed.to_dict())


def test_snake_case_keys_inside_nested_objects_are_dropped() -> None:
    body = BASE | {"outcome": "SUCCEEDED", "output": {"row_count": 5, "rowCount": 6}}
    request = TaskCompletedRequest.from_dict(body)
    assert request.output == TaskOutput(row_count=6)


def test_callback_bodies_ignore_unknown_fields() -> None:
    body = BASE | {"unknown": 1, "taskId": "ct1_cgBr", "nested": {"x": None}}
    assert TaskStartedRequest.from_dict(body).to_dict() == BASE


def test_null_optional_fields_equal_absent() -> None:
    body = BASE | {
        "heartbeatAt": None,
        "progressPct": None,
        "message": None,
        "traceparent": None,
    }
    request = HeartbeatRequest.from_json(json.dumps(body))
    assert request == HeartbeatRequest.from_json(json.dumps(BASE))
    assert request.to_json() == json.dumps(BASE, separators=(",", ":"))


@pytest.mark.parametrize(
    "attempt", [pytest.param("1", id="string"), 1.0, -1, 4_294_967_296, True, None]
)
def test_callback_attempt_wrong_type_or_range_is_rejected(attempt: object) -> None:
    with pytest.raises(ValidationError, match="attempt"):
        TaskStartedRequest.from_json(json.dumps(BASE | {"attempt": attempt}))


def test_callback_attempt_zero_parses() -> None:
    # Upstream accepts 0 when reading (the handler answers 400 invalid_argument).
    assert TaskStartedRequest.from_dict(BASE | {"attempt": 0}).attempt == 0


# ---------------------------------------------------------------------------------------------
# progressPct


@pytest.mark.parametrize("value", [0, 1, 45, 99, 100])
def test_progress_pct_accepts_0_to_100(value: int) -> None:
    request = HeartbeatRequest.from_json(json.dumps(BASE | {"progressPct": value}))
    assert request.progress_pct == value
    assert request.to_dict()["progressPct"] == value


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(101, id="101"),
        pytest.param(255, id="255"),
        pytest.param(256, id="256"),
        pytest.param(-1, id="negative"),
        pytest.param(50.0, id="float-50.0"),
        pytest.param(50.5, id="float"),
        pytest.param("50", id="string"),
        pytest.param(True, id="bool"),
    ],
)
def test_progress_pct_rejects(value: object) -> None:
    with pytest.raises(ValidationError, match="progressPct"):
        HeartbeatRequest.from_json(json.dumps(BASE | {"progressPct": value}))


# ---------------------------------------------------------------------------------------------
# TaskCompletedRequest


@pytest.mark.parametrize("outcome", ["SUCCEEDED", "FAILED", "CANCELLED"])
def test_outcome_values(outcome: str) -> None:
    request = TaskCompletedRequest.from_dict(BASE | {"outcome": outcome})
    assert request.outcome == WorkerOutcome(outcome)
    assert request.to_dict()["outcome"] == outcome


@pytest.mark.parametrize("outcome", ["succeeded", "Succeeded", "SUCCESS", "", "TIMEOUT", None, 1])
def test_outcome_is_exact_and_case_sensitive(outcome: object) -> None:
    with pytest.raises(ValidationError, match="outcome"):
        TaskCompletedRequest.from_dict(BASE | {"outcome": outcome})


def test_outcome_is_required() -> None:
    with pytest.raises(ValidationError) as excinfo:
        TaskCompletedRequest.from_dict(BASE)
    assert [(e["type"], e["loc"]) for e in excinfo.value.errors()] == [("missing", ("outcome",))]


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"output": {"rowCount": 1}, "result": {"rowCount": 1}}, id="both-objects"),
        pytest.param({"output": {"rowCount": 1}, "result": None}, id="result-null"),
        pytest.param({"output": None, "result": {"rowCount": 1}}, id="output-null"),
    ],
)
def test_output_and_result_together_is_an_error(body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match="output"):
        TaskCompletedRequest.from_json(json.dumps(BASE | {"outcome": "SUCCEEDED"} | body))


def test_output_is_always_written_as_output() -> None:
    from_output = TaskCompletedRequest.from_dict(BASE | {"outcome": "SUCCEEDED", "output": {}})
    from_result = TaskCompletedRequest.from_dict(BASE | {"outcome": "SUCCEEDED", "result": {}})
    assert from_output == from_result
    assert from_output.to_json() == from_result.to_json()
    assert '"output":{}' in from_result.to_json()
    assert "result" not in from_result.to_json()


@pytest.mark.parametrize("outcome", ["SUCCEEDED", "FAILED", "CANCELLED"])
def test_completed_without_output_omits_output_and_result(outcome: str) -> None:
    written = TaskCompletedRequest.from_dict(BASE | {"outcome": outcome}).to_dict()
    assert "output" not in written
    assert "result" not in written
    assert written == BASE | {"outcome": outcome}


def test_failed_completion_may_carry_partial_output() -> None:
    request = TaskCompletedRequest.from_dict(
        BASE
        | {
            "outcome": "FAILED",
            "output": {"rowCount": 10},
            "error": {"category": "INFRASTRUCTURE", "message": "lost node"},
        }
    )
    assert request.output == TaskOutput(row_count=10)
    assert request.error is not None
    assert request.error.effective_retryable is True


def test_task_output_round_trips_every_field() -> None:
    body = BASE | {"outcome": "SUCCEEDED", "output": DELTA_OUTPUT}
    request = TaskCompletedRequest.from_json(json.dumps(body))
    assert request.output is not None
    assert request.output.materialization_id == "mat-1"
    assert request.output.row_count == 1200
    assert request.output.byte_size == 65536
    assert request.output.output_path == "gs://bucket/analytics/daily_sales/date=2026-01-01"
    assert request.output.delta_table == "analytics.daily_sales"
    assert request.output.delta_version == 7
    assert request.output.delta_partition == "date=2026-01-01"
    assert request.output.output_visibility_state is OutputVisibilityState.VISIBLE
    assert request.output.published_at == datetime(2026, 1, 1, 0, 1, tzinfo=UTC)
    assert request.output.publish_error == "none"
    assert request.to_dict() == body


@pytest.mark.parametrize(
    ("field", "value", "ok"),
    [
        ("rowCount", 18_446_744_073_709_551_615, True),
        ("rowCount", 18_446_744_073_709_551_616, False),
        ("rowCount", -1, False),
        ("rowCount", 1.0, False),
        ("byteSize", "1", False),
        ("deltaVersion", -9_223_372_036_854_775_808, True),
        ("deltaVersion", 9_223_372_036_854_775_807, True),
        ("deltaVersion", 9_223_372_036_854_775_808, False),
        ("deltaVersion", -9_223_372_036_854_775_809, False),
        ("outputVisibilityState", "visible", False),
        ("outputVisibilityState", "PENDING", True),
    ],
)
def test_task_output_integer_and_enum_ranges(field: str, value: object, ok: bool) -> None:
    body = BASE | {"outcome": "SUCCEEDED", "output": {field: value}}
    if ok:
        request = TaskCompletedRequest.from_json(json.dumps(body))
        assert request.to_dict()["output"] == {field: value}
    else:
        with pytest.raises(ValidationError, match=field):
            TaskCompletedRequest.from_json(json.dumps(body))


@pytest.mark.parametrize("field", ["cpuTimeMs", "peakMemoryBytes", "ioReadBytes", "ioWriteBytes"])
def test_task_metrics_are_u64(field: str) -> None:
    ok = TaskMetrics.from_dict({field: 18_446_744_073_709_551_615})
    assert ok.to_dict() == {field: 18_446_744_073_709_551_615}
    for bad in (-1, 1.0, "1", 18_446_744_073_709_551_616):
        with pytest.raises(ValidationError, match=field):
            TaskMetrics.from_dict({field: bad})


def test_partial_progress_and_cancelled_phase_are_written_verbatim() -> None:
    body = BASE | {
        "outcome": "CANCELLED",
        "cancelledDuringPhase": "running",
        "partialProgress": {"done": [1, None, "x"], "ratio": 0.5},
    }
    request = TaskCompletedRequest.from_json(json.dumps(body))
    assert request.partial_progress == {"done": [1, None, "x"], "ratio": 0.5}
    assert request.to_dict() == body


# ---------------------------------------------------------------------------------------------
# TaskError


@pytest.mark.parametrize(
    ("category", "default"),
    [
        ("USER_CODE", True),
        ("DATA_QUALITY", False),
        ("INFRASTRUCTURE", True),
        ("CONFIGURATION", False),
        ("TIMEOUT", True),
        ("CANCELLED", False),
    ],
)
def test_effective_retryable_per_category(category: str, default: bool) -> None:
    error = TaskError.from_dict({"category": category, "message": "m"})
    assert error.retryable is None
    assert error.category.default_retryable is default
    assert error.effective_retryable is default
    for explicit in (True, False):
        overridden = TaskError.from_dict(
            {"category": category, "message": "m", "retryable": explicit}
        )
        assert overridden.effective_retryable is explicit


def test_error_categories_are_exactly_the_contract_ones() -> None:
    assert [c.value for c in ErrorCategory] == [
        "USER_CODE",
        "DATA_QUALITY",
        "INFRASTRUCTURE",
        "CONFIGURATION",
        "TIMEOUT",
        "CANCELLED",
    ]


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"category": "user_code", "message": "m"}, id="lowercase-category"),
        pytest.param({"category": "USER_CODE"}, id="missing-message"),
        pytest.param({"message": "m"}, id="missing-category"),
        pytest.param({"category": "USER_CODE", "message": "m", "retryable": "true"}, id="str"),
        pytest.param({"category": "USER_CODE", "message": "m", "retryable": 1}, id="int"),
    ],
)
def test_task_error_rejects(body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        TaskError.from_dict(body)


def test_task_error_writes_camel_case() -> None:
    error = TaskError(
        category=ErrorCategory.TIMEOUT, message="slow", stack_trace="tb", retryable=False
    )
    assert error.to_json() == (
        '{"category":"TIMEOUT","message":"slow","stackTrace":"tb","retryable":false}'
    )


# ---------------------------------------------------------------------------------------------
# Responses (section 5.2) and the error payload (section 5.3)


def test_heartbeat_response_from_empty_body_means_continue() -> None:
    response = HeartbeatResponse.from_http_body(b"", server_time=SERVER_TIME)
    assert response.acknowledged is True
    assert response.should_cancel is False
    assert response.cancel_reason is None
    assert response.task_token is None


def test_heartbeat_response_from_whitespace_body_means_continue() -> None:
    response = HeartbeatResponse.from_http_body(b" \r\n", server_time=SERVER_TIME)
    assert response.acknowledged is True
    assert response.should_cancel is False


def test_heartbeat_response_from_http_body_parses_json() -> None:
    body = (
        b'{"acknowledged":true,"shouldCancel":true,"cancelReason":"user_requested",'
        b'"serverTime":"2026-01-01T00:00:06Z"}'
    )
    response = HeartbeatResponse.from_http_body(body, server_time=datetime(2030, 1, 1, tzinfo=UTC))
    assert response.should_cancel is True
    assert response.cancel_reason == "user_requested"
    assert response.server_time == SERVER_TIME
    assert response.to_json() == body.decode()


def test_heartbeat_response_writes_cancel_reason_only_when_set() -> None:
    response = HeartbeatResponse(should_cancel=False, server_time=SERVER_TIME)
    assert response.to_json() == (
        '{"acknowledged":true,"shouldCancel":false,"serverTime":"2026-01-01T00:00:06Z"}'
    )


def test_heartbeat_response_token_refresh_fields() -> None:
    response = HeartbeatResponse.from_dict(
        {
            "acknowledged": True,
            "shouldCancel": False,
            "serverTime": "2026-01-01T00:50:00Z",
            "taskToken": "t",
            "tokenExpiresAt": "2026-01-01T01:50:00.123456Z",
        }
    )
    assert response.task_token == "t"
    assert response.token_expires_at == datetime(2026, 1, 1, 1, 50, 0, 123456, tzinfo=UTC)


@pytest.mark.parametrize(
    ("model", "body"),
    [
        (TaskStartedResponse, {"acknowledged": True, "serverTime": "2026-01-01T00:00:01Z"}),
        (
            HeartbeatResponse,
            {"acknowledged": True, "shouldCancel": False, "serverTime": "2026-01-01T00:00:06Z"},
        ),
        (
            TaskCompletedResponse,
            {"acknowledged": True, "finalState": "FAILED", "serverTime": "2026-01-01T00:01:00Z"},
        ),
        (CallbackErrorPayload, {"error": "task_not_found", "message": "Task not found: x"}),
    ],
)
def test_responses_ignore_unknown_fields(
    model: type[TaskStartedResponse | HeartbeatResponse | TaskCompletedResponse]
    | type[CallbackErrorPayload],
    body: dict[str, Any],
) -> None:
    extended = body | {"requestId": "01HQ", "details": {"a": [1]}, "future_field": None}
    parsed = model.from_json(json.dumps(extended))
    assert parsed.to_dict() == body


def test_response_server_time_keeps_nanoseconds() -> None:
    """arco-contract 2.4 (issue 15 finding 12): 9 fractional digits read are written back."""
    response = TaskStartedResponse.from_json(
        '{"acknowledged":true,"serverTime":"2026-01-01T00:00:01.123456789Z"}'
    )
    assert response.to_json() == (
        '{"acknowledged":true,"serverTime":"2026-01-01T00:00:01.123456789Z"}'
    )


def test_completed_body_keeps_nanoseconds_end_to_end() -> None:
    body = TaskCompletedRequest.from_json(
        '{"attempt":1,"attemptId":"a","workerId":"w","outcome":"SUCCEEDED",'
        '"completedAt":"2026-03-04T05:06:07.123456789Z",'
        '"output":{"publishedAt":"2026-03-04T05:06:07.000000001Z"}}'
    )
    assert body.to_dict()["completedAt"] == "2026-03-04T05:06:07.123456789Z"
    assert body.to_dict()["output"]["publishedAt"] == "2026-03-04T05:06:07.000000001Z"


@pytest.mark.parametrize("final_state", ["SUCCEEDED", "FAILED", "CANCELLED"])
def test_completed_response_final_state(final_state: str) -> None:
    response = TaskCompletedResponse.from_dict(
        {"acknowledged": True, "finalState": final_state, "serverTime": "2026-01-01T00:01:00Z"}
    )
    assert response.final_state == WorkerOutcome(final_state)


def test_callback_error_payload_fixture_round_trips_exactly() -> None:
    payload = CallbackErrorPayload.from_json(CALLBACK_ERROR_FIXTURE)
    assert payload.error == CallbackErrorCode.ATTEMPT_ID_MISMATCH
    assert payload.expected_attempt_id == "att-123"
    assert payload.received_attempt_id == "att-456"
    assert payload.to_json() == CALLBACK_ERROR_FIXTURE


def test_callback_error_payload_accepts_unlisted_codes() -> None:
    # The error code is a stable string, but readers must not choke on a code they do not know.
    payload = CallbackErrorPayload.from_dict({"error": "rate_limited", "message": "slow down"})
    assert payload.error == "rate_limited"
