"""The bad-input suite: every operation of the API's own OpenAPI document is fuzzed with
schemathesis (schema-valid and schema-violating requests), once with valid credentials and once
with missing or invalid ones. Whatever is sent, the API never answers 5xx and every answer
matches the document: a documented status, media type, body and headers. Explicit tests then
cover what a schema cannot describe: oversized bodies (also chunked, without Content-Length),
malformed JSON and wrong content types on every route that takes a body."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from services.api.tests.api_test_support import (
    MANIFESTS,
    RAW,
    Api,
    sqlite_only,
    user_headers,
)
from services.api.tests.bad_input_support import (
    CHECKS,
    SMALL_LIMIT,
    AnyCase,
    World,
    aim_at_world,
    assert_json_error,
    bad_credentials,
    body_limit,
    body_operations,
    concrete_path,
    is_callback,
    is_system,
    operation,
    operation_ids,
    route_credentials,
    send_raw,
    use_credentials,
    valid_credentials,
)

from arco_testkit.values import WORKSPACE

# Deterministic and bounded: a fixed derivation of the seed, no example database carried
# between runs, no deadline (CI is a noisy two-core machine).
FUZZ = settings(
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


@pytest.fixture
def world(api: Api) -> World:
    manifests = api.get(MANIFESTS).json()["manifests"]
    return World.build(api, manifests[0]["manifestId"])


def _fuzz(label: str, app: FastAPI, world: World, *, valid: bool, examples: int) -> None:
    op = operation(label)
    # Schema-valid requests reach the handlers' rules; schema-violating ones their parsing.
    cases = st.one_of(
        op.as_strategy(GenerationMode.POSITIVE), op.as_strategy(GenerationMode.NEGATIVE)
    )

    @settings(FUZZ, max_examples=examples)
    @given(case=cases)
    def fuzz(case: AnyCase) -> None:
        if valid:
            aim_at_world(case, world)
            use_credentials(case, valid_credentials(op, world))
        else:
            use_credentials(case, bad_credentials(op, case, world))
        response = case.call(app=app)
        case.validate_response(response, checks=CHECKS, headers=dict(case.headers))
        if not valid and not is_system(op):
            # Nothing gets past authentication; callbacks check the token before the body.
            assert response.status_code >= 400, response.text
            if is_callback(op):
                assert response.status_code == 401, response.text

    fuzz()


@pytest.mark.parametrize("label", operation_ids())
def test_fuzz_with_valid_credentials(label: str, app: FastAPI, world: World) -> None:
    """On both databases: PostgreSQL refuses values SQLite stores (NUL, for one)."""
    _fuzz(label, app, world, valid=True, examples=15)


@sqlite_only
@pytest.mark.parametrize("label", operation_ids())
def test_fuzz_without_valid_credentials(label: str, app: FastAPI, world: World) -> None:
    """Authentication does not depend on the database: SQLite only, fewer examples."""
    _fuzz(label, app, world, valid=False, examples=6)


# --- what a schema cannot describe: body size, JSON syntax, media type ----------------------

BODY_ROUTES = body_operations()


def test_every_body_route_is_covered() -> None:
    """The explicit tests below run on every operation that takes a body; a new one joins
    them by being documented."""
    assert len(BODY_ROUTES) == 8, BODY_ROUTES
    assert all(label.startswith("POST ") for label in BODY_ROUTES)


@pytest.fixture
def small_limits(make_client: Callable[..., TestClient]) -> TestClient:
    """An app whose configurable body limits are small, so oversized bodies stay cheap."""
    return make_client(callback_body_limit=SMALL_LIMIT, manifest_body_limit=SMALL_LIMIT)


@sqlite_only
@pytest.mark.parametrize("label", BODY_ROUTES)
def test_oversized_body_is_413_with_a_json_error(
    label: str, world: World, small_limits: TestClient
) -> None:
    """Refused once the limit is passed: up front from Content-Length, or while streaming a
    chunked body that declares no length (the rest is never read)."""
    limit = body_limit(label)
    chunk = b" " * 65_536
    count = limit // len(chunk) + 2
    path = concrete_path(label, world)
    headers = {"content-type": "application/json", **route_credentials(label, world)}
    body = chunk * count
    declared = send_raw(
        small_limits.app, "POST", path, {**headers, "content-length": str(len(body))}, [body]
    )
    assert declared.status == 413, declared.body
    assert_json_error(label, declared)
    streamed = send_raw(small_limits.app, "POST", path, headers, [chunk] * count)
    assert streamed.status == 413, streamed.body
    assert_json_error(label, streamed)
    # Reading stopped at the first chunk past the limit.
    assert streamed.chunks_read == limit // len(chunk) + 1


MALFORMED = {
    "empty": b"",
    "truncated": b'{"selection": ["analytics.raw_orders"',
    "invalid-utf8": b'{"attempt": 1, "workerId": "\xff\xfe"}',
    "utf16": '{"attempt": 1}'.encode("utf-16"),
    "trailing-garbage": b'{"attempt": 1} x',
    "single-quotes": b"{'attempt': 1}",
    "nan": b'{"attempt": NaN}',
    "infinity": b'{"attempt": -Infinity}',
    "float-overflow": b'{"attempt": 1e400}',
    "huge-integer": b'{"attempt": ' + b"9" * 5000 + b"}",
    "deep-nesting": b"[" * 100_000 + b"]" * 100_000,
    "nul-in-string": b'{"reason": "a\\u0000b", "taskKey": "\\u0000"}',
    "lone-surrogate": b'{"reason": "\\ud800", "taskKey": "\\udfff"}',
    "array": b"[1, 2]",
    "string": b'"text"',
    "number": b"42",
    "null": b"null",
}


@sqlite_only
@pytest.mark.parametrize("label", BODY_ROUTES)
def test_malformed_json_is_400_or_422_with_a_json_error(
    label: str, world: World, app: FastAPI
) -> None:
    headers = {"content-type": "application/json", **route_credentials(label, world)}
    for kind, body in MALFORMED.items():
        response = send_raw(app, "POST", concrete_path(label, world), headers, [body])
        assert response.status in (400, 422), (kind, response.body)
        assert_json_error(label, response)


@sqlite_only
@pytest.mark.parametrize("label", BODY_ROUTES)
def test_duplicate_keys_take_the_last_value_everywhere(
    label: str, world: World, app: FastAPI
) -> None:
    """Duplicate keys are not rejected (RFC 8259 leaves them to the reader): the last one
    wins, in the syntax check and the typed parse alike, so a duplicated ``attempt`` cannot be
    read as one value and applied as another. Whatever the route, the answer is documented."""
    body = b'{"attempt": 0, "attempt": 1, "reason": 1, "reason": "x", "selection": [], "mode": 1}'
    headers = {"content-type": "application/json", **route_credentials(label, world)}
    response = send_raw(app, "POST", concrete_path(label, world), headers, [body])
    assert response.status < 500, response.body
    if "/api/v1/tasks/" in label:
        # attempt 0 would be a 400 "Invalid attempt"; the last value (1) was the one read.
        assert response.status != 400 or b"Invalid attempt" not in response.body
    document = json.loads(response.body)
    assert isinstance(document, dict)


WRONG_MEDIA = {
    "missing": None,
    "text": "text/plain",
    "form": "application/x-www-form-urlencoded",
    "multipart": "multipart/form-data; boundary=x",
    "json-lookalike": "application/jsonx",
}


@sqlite_only
@pytest.mark.parametrize("label", BODY_ROUTES)
def test_wrong_content_type_is_415_with_a_json_error(
    label: str, world: World, app: FastAPI
) -> None:
    for media, content_type in WRONG_MEDIA.items():
        headers = route_credentials(label, world)
        if content_type is not None:
            headers["content-type"] = content_type
        response = send_raw(app, "POST", concrete_path(label, world), headers, [b'{"attempt": 1}'])
        assert response.status == 415, (media, response.body)
        assert_json_error(label, response)


@pytest.mark.parametrize(
    "path",
    [
        f"/api/v1/workspaces/{WORKSPACE}/runs/%00",
        f"/api/v1/workspaces/{WORKSPACE}/runs/%00/tasks/x",
        f"/api/v1/workspaces/{WORKSPACE}/manifests/a%00b",
        f"/api/v1/workspaces/{WORKSPACE}/runs?cursor=%00",
        f"/api/v1/workspaces/{WORKSPACE}/runs/r/logs?taskKey=%00",
    ],
)
def test_nul_in_path_or_query_is_400_not_a_database_error(client: TestClient, path: str) -> None:
    """Regression: PostgreSQL cannot compare text with NUL, so these were 500s there."""
    response = client.get(path, headers=user_headers())
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "BAD_REQUEST"


def test_nul_in_idempotency_key_is_400(api: Api) -> None:
    """Regression: the key becomes the stored runKey (a 500 on PostgreSQL)."""
    response = api.trigger({"selection": [RAW]}, headers={"Idempotency-Key": "a\x00b"})
    assert response.status_code == 400, response.text
