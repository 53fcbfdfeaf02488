"""The HTTP layer of the callbacks: the exact processing order of arco-contract 5.5, body
handling (415, 400, 413, 422), message prefixes (design D9), `X-Request-Id`, and the exact
paths of section 4."""

from __future__ import annotations

import json
from typing import Any

import pytest
from services.api.tests.api_test_support import (
    RAW,
    Api,
    Attempt,
    bearer,
    error_of,
    forge,
    scoped_claims,
    sqlite_only,
)

from arco_envelope import callback_task_id

pytestmark = sqlite_only

PHASES = ["started", "heartbeat", "completed"]


def body_for(phase: str, of: Attempt, **fields: Any) -> dict[str, Any]:
    if phase == "completed":
        fields.setdefault("outcome", "SUCCEEDED")
    return of.body(**fields)


def post_raw(
    api: Api,
    attempt: Attempt,
    phase: str,
    content: bytes,
    *,
    token: str | None = None,
    content_type: str | None = "application/json",
    task_id: str | None = None,
) -> Any:
    headers = bearer(token or attempt.token())
    if content_type is not None:
        headers["Content-Type"] = content_type
    return api.client.post(
        f"/api/v1/tasks/{task_id or attempt.task_id}/{phase}", content=content, headers=headers
    )


# --- step 1 (auth) before step 3 (body) before step 4 (taskId claim) ------------------------


@pytest.mark.parametrize("phase", PHASES)
def test_bad_token_beats_bad_body(api: Api, running: Attempt, phase: str) -> None:
    """5.5 steps 1 and 3: an invalid token with a malformed body, or with no JSON content
    type, is 401, not 400/415."""
    for content_type in ("application/json", "text/plain"):
        response = post_raw(
            api, running, phase, b"{not json", token="bad", content_type=content_type
        )
        assert error_of(response)[:2] == (401, "invalid_token")
    response = api.client.post(f"/api/v1/tasks/{running.task_id}/{phase}", content=b"{")
    assert error_of(response) == (401, "invalid_token", "invalid_token: missing bearer token")


@pytest.mark.parametrize("phase", PHASES)
def test_body_beats_task_id_mismatch(api: Api, running: Attempt, phase: str) -> None:
    """5.5 steps 3 and 4: with a valid token for another task, a bad body is still a body
    error (400 malformed, 422 schema); a good body gets 401 `task_id_mismatch`."""
    other_path = callback_task_id(running.run_id, "analytics.other")
    malformed = post_raw(api, running, phase, b"{", task_id=other_path)
    assert error_of(malformed)[:2] == (400, "invalid_json")
    schema = api.callback(phase, running, {"attempt": 1}, task_id=other_path)
    assert error_of(schema)[:2] == (422, "invalid_request")
    good = api.callback(phase, running, body_for(phase, running), task_id=other_path)
    assert error_of(good) == (401, "invalid_token", "invalid_token: task_id_mismatch")


@pytest.mark.parametrize("phase", PHASES)
def test_attempt_zero_is_invalid_argument(api: Api, running: Attempt, phase: str) -> None:
    """5.5 step 7, 5.4: body attempt 0 is 400 `invalid_argument`, before the task lookup (so
    even on an unknown task) and nothing is written."""
    before = api.snapshot(running.run_id)
    response = api.callback(phase, running, body_for(phase, running, attempt=0))
    assert error_of(response) == (
        400,
        "invalid_argument",
        "invalid_argument: Invalid attempt: must be >= 1",
    )
    ghost = Attempt(running.run_id, "analytics.ghost", 1, "x")
    response = api.callback(phase, ghost, body_for(phase, ghost, attempt=0))
    assert error_of(response)[:2] == (400, "invalid_argument")
    assert api.snapshot(running.run_id) == before


def test_invalid_storage_ids_in_token_are_bad_request_before_attempt_zero(
    api: Api, running: Attempt
) -> None:
    """5.5 step 6 (before step 7), 5.4 and pitfall 18: a token tenant that is not a storage id
    is 400 with the API error body `{code: BAD_REQUEST}`, never 401 or 403."""
    for tenant_claim, name in (("Tenant-A", "tenant_id"), ("tenant/a", "tenant_id")):
        token = forge(scoped_claims(running, tenantId=tenant_claim))
        response = api.started(running, body=running.body(attempt=0), token=token)
        assert response.status_code == 400
        body = response.json()
        assert body["code"] == "BAD_REQUEST"
        assert body["message"].startswith(f"{name} contains invalid characters")
    token = forge(scoped_claims(running, workspaceId="Workspace B"))
    response = api.started(running, token=token)
    assert response.status_code == 400
    assert response.json()["message"].startswith("workspace_id contains invalid characters")


@pytest.mark.parametrize("progress", [101, 255])
def test_heartbeat_progress_rejects_values_above_one_hundred(
    api: Api, running: Attempt, progress: int
) -> None:
    """8.1 #8 `heartbeat_progress_rejects_values_above_one_hundred` over HTTP (pitfall 8, D9):
    422 with a JSON body `{error: invalid_request, message, detail}` naming progressPct."""
    response = api.heartbeat(running, body=running.body(progressPct=progress))
    status, code, message = error_of(response)
    assert (status, code) == (422, "invalid_request")
    assert response.headers["content-type"].startswith("application/json")
    assert "progressPct" in message
    detail = response.json()["detail"]
    assert [item["loc"] for item in detail] == [["progressPct"]]


SCHEMA_ERRORS: list[tuple[str, dict[str, Any], str]] = [
    ("started", {"attempt": 1, "workerId": "w"}, "attemptId"),
    ("started", {"attempt": 1, "attempt_id": "a", "worker_id": "w"}, "attemptId"),
    ("started", {"attempt": 1.0, "attemptId": "a", "workerId": "w"}, "attempt"),
    ("started", {"attempt": "1", "attemptId": "a", "workerId": "w"}, "attempt"),
    ("started", {"attempt": -1, "attemptId": "a", "workerId": "w"}, "attempt"),
    (
        "started",
        {"attempt": 1, "attemptId": "a", "workerId": "w", "startedAt": "2026-01-01T00:00:00"},
        "startedAt",
    ),
    (
        "completed",
        {"attempt": 1, "attemptId": "a", "workerId": "w", "outcome": "succeeded"},
        "outcome",
    ),
    (
        "completed",
        {"attempt": 1, "attemptId": "a", "workerId": "w", "outcome": "SKIPPED"},
        "outcome",
    ),
    ("completed", {"attempt": 1, "attemptId": "a", "workerId": "w"}, "outcome"),
    (
        "completed",
        {
            "attempt": 1,
            "attemptId": "a",
            "workerId": "w",
            "outcome": "FAILED",
            "error": {"message": "m"},
        },
        "error.category",
    ),
]


@pytest.mark.parametrize(("phase", "body", "field"), SCHEMA_ERRORS)
def test_schema_errors_are_422_json_naming_the_field(
    api: Api, running: Attempt, phase: str, body: dict[str, Any], field: str
) -> None:
    """arco-contract 5.1, 5.4 and 7 (snake_case keys are unknown, so a required field is
    missing), pitfall 8 and design D9: a missing field, a snake_case key, a float or string
    integer, a naive timestamp or a bad enum is 422 `invalid_request` whose message names the
    field; nothing is written."""
    before = api.snapshot(running.run_id)
    response = api.callback(phase, running, body)
    status, code, message = error_of(response)
    assert (status, code) == (422, "invalid_request")
    assert field in message
    assert api.snapshot(running.run_id) == before


def test_unknown_fields_and_nulls_are_ignored(api: Api) -> None:
    """5.1: unknown fields are ignored and `null` on an optional field is absent."""
    attempt = api.dispatch(api.run())
    body = attempt.body(traceparent=None, startedAt=None)
    body.update({"traceparent": None, "startedAt": None, "somethingNew": {"x": 1}})
    assert api.started(attempt, body=body).status_code == 200


def test_started_request_deserialization(api: Api) -> None:
    """8.9 #1 `test_started_request_deserialization`: a camelCase started body with
    traceparent and startedAt is accepted."""
    attempt = api.dispatch(api.run())
    body = attempt.body(
        traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        startedAt="2026-01-01T00:00:00.123456789Z",
    )
    assert api.started(attempt, body=body).status_code == 200


@pytest.mark.parametrize("phase", PHASES)
def test_non_json_content_type_is_415(api: Api, running: Attempt, phase: str) -> None:
    """arco-contract 4 "Content-Type": anything but `application/json` or
    `application/*+json` is 415 (after a valid token), with a JSON error body."""
    payload = json.dumps(body_for(phase, running)).encode()
    for content_type in (None, "text/plain", "application/x-www-form-urlencoded"):
        response = post_raw(api, running, phase, payload, content_type=content_type)
        status, code, _ = error_of(response)
        assert (status, code) == (415, "unsupported_media_type")


def test_json_suffix_content_types_are_accepted(api: Api) -> None:
    """arco-contract 4: `application/*+json` and a charset parameter are JSON."""
    attempt = api.dispatch(api.run())
    payload = json.dumps(attempt.body()).encode()
    response = post_raw(api, attempt, "started", payload, content_type="application/vnd.arco+json")
    assert response.status_code == 200
    response = post_raw(
        api, attempt, "started", payload, content_type="application/json; charset=utf-8"
    )
    assert response.status_code == 200


@pytest.mark.parametrize("content", [b"{", b"", b'{"attempt": 1,', b"\xff\xfe", b"[1, 2"])
def test_malformed_json_is_400_with_json_body(api: Api, running: Attempt, content: bytes) -> None:
    """arco-contract 5.4 and design D9: malformed or truncated JSON is 400 with a JSON body
    `{error: invalid_json, message}`."""
    response = post_raw(api, running, "heartbeat", content)
    status, code, message = error_of(response)
    assert (status, code) == (400, "invalid_json")
    assert "Failed to parse the request body as JSON" in message


def test_body_over_two_mebibytes_is_413(api: Api, running: Attempt) -> None:
    """arco-contract 4 "Body size limit": over 2 MiB is 413; exactly at the limit is read."""
    before = api.snapshot(running.run_id)
    filler = "x" * (2 * 1024 * 1024)
    payload = json.dumps(running.body(message=filler)).encode()
    response = post_raw(api, running, "heartbeat", payload)
    assert error_of(response)[:2] == (413, "payload_too_large")
    assert api.snapshot(running.run_id) == before

    base = json.dumps(running.body(message="")).encode()
    exact = json.dumps(running.body(message="x" * (2 * 1024 * 1024 - len(base)))).encode()
    assert len(exact) == 2 * 1024 * 1024
    assert post_raw(api, running, "heartbeat", exact).status_code == 200


def test_chunked_body_over_the_limit_is_413(api: Api, running: Attempt) -> None:
    """A body without Content-Length (streamed) is measured as it arrives."""

    def chunks() -> Any:
        yield b'{"attempt": 1, "message": "'
        for _ in range(3):
            yield b"y" * (1024 * 1024)
        yield b'"}'

    response = api.client.post(
        f"/api/v1/tasks/{running.task_id}/heartbeat",
        content=chunks(),
        headers={**bearer(running.token()), "Content-Type": "application/json"},
    )
    assert error_of(response)[:2] == (413, "payload_too_large")


# --- request id, paths, methods -------------------------------------------------------------


def test_request_id_is_echoed_and_generated(api: Api, running: Attempt) -> None:
    """arco-contract 4: `X-Request-Id` is echoed; without one the server generates a ULID; every
    answer carries it (200, 401, 409, 422)."""
    echoed = api.heartbeat(running, headers={"X-Request-Id": "req-123"})
    assert echoed.headers["x-request-id"] == "req-123"
    seen = set()
    for response in (
        api.heartbeat(running),
        api.heartbeat(running, token="bad"),
        api.heartbeat(running, body=running.body(attempt=5)),
        api.heartbeat(running, body={}),
    ):
        request_id = response.headers["x-request-id"]
        assert len(request_id) == 26
        assert set(request_id) <= set("0123456789ABCDEFGHJKMNPQRSTVWXYZ")
        seen.add(request_id)
    assert len(seen) == 4


def test_paths_are_exact(api: Api, running: Attempt) -> None:
    """arco-contract 4: no trailing slash (404, not a redirect), no other phases, and only
    POST (405)."""
    before = api.snapshot(running.run_id)
    headers = bearer(running.token())
    trailing = api.client.post(
        f"/api/v1/tasks/{running.task_id}/completed/",
        json=running.body(outcome="SUCCEEDED"),
        headers=headers,
        follow_redirects=False,
    )
    assert trailing.status_code == 404
    for phase in ("cancel", "retry", "extend-token"):
        response = api.client.post(
            f"/api/v1/tasks/{running.task_id}/{phase}", json=running.body(), headers=headers
        )
        assert response.status_code == 404
    for method in ("GET", "PUT", "DELETE", "PATCH"):
        response = api.client.request(
            method, f"/api/v1/tasks/{running.task_id}/started", headers=headers
        )
        assert response.status_code == 405
    assert api.snapshot(running.run_id) == before


def test_idempotency_key_header_is_ignored_by_callbacks(api: Api) -> None:
    """arco-contract 4: `Idempotency-Key` is accepted but not used; dedupe is by event key."""
    attempt = api.dispatch(api.run())
    for key in ("k1", "k2"):
        assert api.started(attempt, headers={"Idempotency-Key": key}).status_code == 200
    kinds = [event.kind for event in api.events(attempt.run_id)]
    assert kinds.count("started") == 1


@pytest.mark.parametrize("phase", PHASES)
def test_every_error_message_starts_with_its_code(api: Api, running: Attempt, phase: str) -> None:
    """Design D9 across the error answers of one phase: invalid token, body errors, attempt 0,
    not found, attempt mismatch, attempt id mismatch."""
    answers = [
        api.callback(phase, running, body_for(phase, running), token="garbage"),
        post_raw(api, running, phase, b"{"),
        post_raw(api, running, phase, b"{}", content_type="text/plain"),
        api.callback(phase, running, {}),
        api.callback(phase, running, body_for(phase, running, attempt=0)),
        api.callback(phase, running, body_for(phase, running, attempt=9)),
        api.callback(phase, running, body_for(phase, running, attemptId="nope")),
    ]
    ghost = Attempt(running.run_id, "analytics.ghost", 1, "x")
    answers.append(api.callback(phase, ghost, body_for(phase, ghost)))
    for response in answers:
        assert response.status_code >= 400
        error_of(response)


def test_legacy_paths_with_dots_and_task_key_resolution(api: Api) -> None:
    """arco-contract 5.6 with run scope: a non-`ct1_` segment is a task key of the scoped run;
    an unknown key is 404."""
    attempt = api.dispatch(api.run())
    token = forge(scoped_claims(attempt, taskId="analytics.unknown"))
    response = api.started(attempt, task_id="analytics.unknown", token=token)
    assert error_of(response)[:2] == (404, "task_not_found")
    token = forge(scoped_claims(attempt, taskId=RAW))
    assert api.started(attempt, task_id=RAW, token=token).status_code == 200
