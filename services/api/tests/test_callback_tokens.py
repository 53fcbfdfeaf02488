"""Task tokens on the callbacks: arco-contract 8.7 and 8.9 (middleware and validator tests),
orchestration 8 #76, the token attacks of the issue (each 401 with its reason and nothing
written), rotation and the heartbeat token refresh of design D8."""

from __future__ import annotations

import base64
import json
import warnings
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from fastapi.testclient import TestClient
from jwt.warnings import InsecureKeyLengthWarning
from services.api.tests.api_test_support import (
    DAILY,
    RAW,
    Api,
    Attempt,
    Clock,
    bearer,
    debug_headers,
    error_of,
    forge,
    scoped_claims,
    sqlite_only,
    task_token_config,
    unscoped_token,
    unsigned,
    user_token,
)

from arco_envelope import parse_timestamp
from arco_envelope.tokens import TaskTokenConfig, verify_task_token
from arco_testkit.values import TASK_AUDIENCE, TASK_ISSUER, TASK_SECRET, TENANT, WORKSPACE

pytestmark = sqlite_only

PREFIX = "invalid_token: invalid input: invalid task token: "


def b64(data: dict[str, Any]) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def assert_rejected(api: Api, attempt: Attempt, token: str, message: str) -> None:
    """Every phase answers 401 `invalid_token` with ``message``, and nothing is written."""
    before = api.snapshot(attempt.run_id, attempt.task_key)
    for phase, body in (
        ("started", attempt.body()),
        ("heartbeat", attempt.body(progressPct=10)),
        ("completed", attempt.body(outcome="SUCCEEDED")),
    ):
        response = api.callback(phase, attempt, body, token=token)
        assert error_of(response) == (401, "invalid_token", message), phase
    assert api.snapshot(attempt.run_id, attempt.task_key) == before


# --- arco-contract 8.7: the middleware with the task_token config ---------------------------


def test_task_auth_middleware_accepts_task_token_config(api: Api, running: Attempt) -> None:
    """8.7 #1 and 8.9 #23 `test_task_auth_middleware_accepts_valid_token`: a token with exp
    2000000000 passes the middleware and the request scope is the token's tenant/workspace.
    Scoped, it completes the task; unscoped it gets past the middleware to the handler's
    `missing_scope_claims`; with another tenant's claims (`tenant-1`/`workspace-1`) the
    task is not found, because state is read in that tenant."""
    far: dict[str, Any] = {"exp": 2_000_000_000, "nbf": None, "iat": None}
    unscoped = forge(scoped_claims(running, runId=None, attempt=None, attemptId=None, **far))
    assert error_of(api.heartbeat(running, token=unscoped))[1:] == (
        "invalid_token",
        "invalid_token: missing_scope_claims",
    )
    other = forge(scoped_claims(running, tenantId="tenant-1", workspaceId="workspace-1", **far))
    assert error_of(api.heartbeat(running, token=other))[:2] == (404, "task_not_found")
    scoped = forge(scoped_claims(running, **far))
    assert api.completed(running, token=scoped).status_code == 200


def test_task_auth_middleware_rejects_expired_task_token(api: Api, running: Attempt) -> None:
    """8.7 #2: exp 1700000000 is 401 ExpiredSignature; nothing written."""
    token = forge(scoped_claims(running, exp=1_700_000_000, nbf=None, iat=None))
    assert_rejected(api, running, token, PREFIX + "ExpiredSignature")


def test_task_auth_middleware_started_then_expired_completed_path(
    api: Api, make_client: Callable[..., TestClient]
) -> None:
    """8.7 #3, orchestration 8 #76: a token with exp = now - 58 is accepted on /started (inside
    the 60 s leeway); 3 s later (an injected clock, not a sleep) /completed rejects it."""
    clock = Clock()
    timed = Api(make_client(clock=clock), api.database)
    attempt = timed.dispatch(timed.run())
    now = int(clock.now.timestamp())
    token = forge(scoped_claims(attempt, exp=now - 58, nbf=None, iat=None))
    assert timed.started(attempt, token=token).status_code == 200
    clock.advance(3)
    before = timed.snapshot(attempt.run_id)
    response = timed.completed(attempt, token=token)
    assert error_of(response) == (401, "invalid_token", PREFIX + "ExpiredSignature")
    assert timed.snapshot(attempt.run_id) == before


@pytest.mark.parametrize(
    ("exp_offset", "accepted"), [(0, True), (-60, True), (-61, False), (-3600, False)]
)
def test_expiry_leeway_boundary(
    api: Api, make_client: Callable[..., TestClient], exp_offset: int, accepted: bool
) -> None:
    """arco-contract 6.4 A.6: rejected when exp < now - 60 (integer seconds), so accepted at
    exp + 60 and rejected from exp + 61."""
    clock = Clock(datetime.fromtimestamp(int(datetime.now(UTC).timestamp()) + 0.75, UTC))
    timed = Api(make_client(clock=clock), api.database)
    attempt = timed.dispatch(timed.run())
    now = int(clock.now.timestamp())
    token = forge(scoped_claims(attempt, exp=now + exp_offset, nbf=None, iat=None))
    response = timed.heartbeat(attempt, token=token)
    if accepted:
        assert response.status_code == 200
    else:
        assert error_of(response)[2] == PREFIX + "ExpiredSignature"


# --- token attacks: each 401 with its reason, nothing written --------------------------------


def test_wrong_secret(api: Api, running: Attempt) -> None:
    """Attack: a token signed with another secret is 401 InvalidSignature."""
    config = TaskTokenConfig(
        secret="not-the-secret", issuer=TASK_ISSUER, audience=TASK_AUDIENCE, ttl_seconds=900
    )
    assert_rejected(api, running, running.token(config=config), PREFIX + "InvalidSignature")


def test_alg_none(api: Api, running: Attempt) -> None:
    """Attack: `alg: none` (no signature, or the real signature kept) is 401
    InvalidAlgorithm."""
    claims = b64(scoped_claims(running))
    header = b64({"alg": "none", "typ": "JWT"})
    assert_rejected(api, running, f"{header}.{claims}.", PREFIX + "InvalidAlgorithm")
    signature = running.token().rsplit(".", 1)[1]
    assert_rejected(api, running, f"{header}.{claims}.{signature}", PREFIX + "InvalidAlgorithm")
    assert_rejected(api, running, unsigned(scoped_claims(running)), PREFIX + "InvalidAlgorithm")


@pytest.mark.parametrize("algorithm", ["HS512", "HS384"])
def test_other_hmac_algorithms(api: Api, running: Attempt, algorithm: str) -> None:
    """Attack: the right secret with HS512 (or HS384) is 401 InvalidAlgorithm: only HS256."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureKeyLengthWarning)
        token = jwt.encode(scoped_claims(running), TASK_SECRET, algorithm=algorithm)
    assert_rejected(api, running, token, PREFIX + "InvalidAlgorithm")


def test_tampered_claims(api: Api, running: Attempt) -> None:
    """Attack: the claims of a valid token swapped for others keep the old signature: 401
    InvalidSignature."""
    header, _, signature = running.token().split(".")
    claims = b64(scoped_claims(running, exp=4_000_000_000))
    assert_rejected(api, running, f"{header}.{claims}.{signature}", PREFIX + "InvalidSignature")


def test_expired_beyond_leeway(api: Api, running: Attempt) -> None:
    """Attack: a token minted 900 + 61 s ago is 401 ExpiredSignature."""
    token = running.token(now=datetime.now(UTC) - timedelta(seconds=961))
    assert_rejected(api, running, token, PREFIX + "ExpiredSignature")


def test_nbf_in_the_future(api: Api, running: Attempt) -> None:
    """Attack: `nbf` beyond now + 60 is 401 ImmatureSignature (a future `iat` is fine, and
    `nbf` = now + 30 is inside the leeway)."""
    now = int(datetime.now(UTC).timestamp())
    token = forge(scoped_claims(running, nbf=now + 120))
    assert_rejected(api, running, token, PREFIX + "ImmatureSignature")
    token = forge(scoped_claims(running, nbf=now + 30, iat=now + 3600))
    assert api.heartbeat(running, token=token).status_code == 200


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"iss": "https://evil.example"}, "InvalidIssuer"),
        ({"iss": None}, "Missing required claim: iss"),
        ({"aud": "someone-else"}, "InvalidAudience"),
        ({"aud": None}, "Missing required claim: aud"),
        ({"aud": [TASK_AUDIENCE]}, "JSON error: aud: Input should be a valid string"),
        ({"iss": 7}, "JSON error: iss: Input should be a valid string"),
    ],
)
def test_issuer_and_audience(
    api: Api, running: Attempt, overrides: dict[str, Any], reason: str
) -> None:
    """Attack: wrong or missing `iss`/`aud` when configured (missing is rejected too: design D8
    hardening of 6.4 A.9/A.10), and an `aud` list (a JSON error, as upstream)."""
    assert_rejected(api, running, forge(scoped_claims(running, **overrides)), PREFIX + reason)


def test_audience_present_but_not_configured(
    api: Api, running: Attempt, make_client: Callable[..., TestClient]
) -> None:
    """arco-contract 6.4 A.10: a token with `aud` when no audience is configured is rejected;
    without issuer/audience config, a token without them is fine."""
    bare = Api(make_client(task_token_issuer="", task_token_audience=""), api.database)
    assert_rejected(bare, running, running.token(), PREFIX + "InvalidAudience")
    plain = forge(scoped_claims(running, iss=None, aud=None))
    assert bare.heartbeat(running, token=plain).status_code == 200


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"exp": None}, "JSON error: exp: Field required"),
        ({"taskId": None}, "JSON error: taskId: Field required"),
        ({"exp": 1.5e9}, "JSON error: exp: Input should be a valid integer"),
        ({"exp": -1}, "JSON error: exp: Input should be greater than or equal to 0"),
        (
            {"task_id": "dup"},
            "JSON error: claims: Value error, duplicate field `taskId` (given as taskId, task_id)",
        ),
    ],
)
def test_claims_that_do_not_deserialize(
    api: Api, running: Attempt, claims: dict[str, Any], reason: str
) -> None:
    """arco-contract 6.4 A.5: a missing or ill-typed required claim, or two spellings of one
    claim, is a JSON error before any temporal check."""
    response = api.heartbeat(running, token=forge(scoped_claims(running, **claims)))
    assert error_of(response) == (401, "invalid_token", PREFIX + reason)


def test_another_tasks_token(api: Api) -> None:
    """Attack, 8.9 #15 `test_jwt_task_token_validator_rejects_task_id_mismatch`: a token of
    another task of the same run on this task's path is 401 `task_id_mismatch` (5.5 step 4)."""
    run_id = api.run([DAILY], includeUpstream=True)
    attempt = api.dispatch(run_id, RAW)
    other = Attempt(run_id, DAILY, attempt.attempt, attempt.attempt_id)
    assert_rejected(api, attempt, other.token(), "invalid_token: task_id_mismatch")


def test_another_runs_token(api: Api) -> None:
    """Attack, 8.9 #16 re-expressed: the token of the same task key in another run is 401
    `task_id_mismatch` (its taskId names the other run). A forged token whose taskId is this
    path but whose runId is the other run reads the other run: 404, nothing written. (The
    validator's `run_id_mismatch` needs a path that resolves inside the token's run with
    another run id, which HTTP in non-debug mode cannot produce.)"""
    mine = api.dispatch(api.run())
    theirs = api.dispatch(api.run())
    assert_rejected(api, mine, theirs.token(), "invalid_token: task_id_mismatch")
    forged = forge(scoped_claims(theirs, taskId=mine.task_id))
    before = api.snapshot(mine.run_id)
    response = api.completed(mine, token=forged)
    assert error_of(response)[:2] == (404, "task_not_found")
    assert api.snapshot(mine.run_id) == before


def test_previous_attempts_token(api: Api, running: Attempt) -> None:
    """Attack, 8.9 #17 `test_jwt_task_token_validator_rejects_attempt_mismatch`, orchestration
    5.6: once attempt 2 is dispatched, attempt 1's token is 401 `attempt_mismatch` on every
    callback (not 409), even with a body naming attempt 2."""
    second = api.retry(running)
    assert_rejected(api, second, running.token(), "invalid_token: attempt_mismatch")
    assert api.started(second).status_code == 200


def test_token_with_wrong_attempt_id(api: Api, running: Attempt) -> None:
    """8.9 #18 `test_jwt_task_token_validator_rejects_attempt_id_mismatch`: the right attempt
    with another attempt id is 401 `attempt_id_mismatch`."""
    stale = Attempt(running.run_id, running.task_key, running.attempt, "att_0123456789abcdef0123")
    assert_rejected(api, running, stale.token(), "invalid_token: attempt_id_mismatch")


def test_unscoped_token(api: Api, running: Attempt) -> None:
    """Attack, 8.9 #21 `test_jwt_task_token_validator_rejects_legacy_token_without_scope_claims`
    and pitfall 4: a valid unscoped token passes the middleware but is 401
    `missing_scope_claims`."""
    token = unscoped_token(running.task_id)
    assert_rejected(api, running, token, "invalid_token: missing_scope_claims")
    partial = forge(scoped_claims(running, attemptId=None))
    assert_rejected(api, running, partial, "invalid_token: missing_scope_claims")


def test_other_tenant_token_reads_other_tenant_state(api: Api, running: Attempt) -> None:
    """8.9 #19/#20 re-expressed over HTTP: the request scope is the token's tenant and
    workspace, so `tenant_mismatch`/`workspace_mismatch` cannot happen; a token of another
    tenant or workspace reads that tenant's state: 404, nothing written."""
    before = api.snapshot(running.run_id)
    others: list[dict[str, Any]] = [{"tenantId": "tenant-z"}, {"workspaceId": "workspace-z"}]
    for claims in others:
        response = api.completed(running, token=forge(scoped_claims(running, **claims)))
        assert error_of(response)[:2] == (404, "task_not_found")
    assert api.snapshot(running.run_id) == before


def test_user_jwt_on_a_callback(api: Api, running: Attempt, make_client: Any) -> None:
    """Attack: a user JWT on a callback is 401 (signed with the user secret: InvalidSignature;
    even with one shared secret it has no task claims: a JSON error)."""
    assert_rejected(api, running, user_token(), PREFIX + "InvalidSignature")
    shared = Api(make_client(jwt_secret=TASK_SECRET), api.database)
    token = forge(
        {"tenant": TENANT, "workspace": WORKSPACE, "sub": "u", "exp": 4_000_000_000},
        key=TASK_SECRET,
    )
    before = shared.snapshot(running.run_id)
    response = shared.completed(running, token=token)
    status, code, message = error_of(response)
    assert (status, code) == (401, "invalid_token")
    assert message.startswith(PREFIX + "JSON error: taskId")
    assert shared.snapshot(running.run_id) == before


# --- 8.9: bearer extraction and the debug mode ------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "Basic dXNlcjpwYXNz",
        "bearer {token}",
        "BEARER {token}",
        "Bearer",
        "Bearer   ",
        "{token}",
    ],
)
def test_extract_bearer_token_missing_or_wrong_scheme(
    api: Api, running: Attempt, authorization: str | None
) -> None:
    """8.9 #11 `test_extract_bearer_token_missing`, #12 `..._wrong_scheme`, #22
    `test_task_auth_middleware_rejects_missing_token`, pitfall 16: without a case-sensitive
    `Bearer ` prefix and a token the answer is 401 `missing bearer token`."""
    headers = {}
    if authorization is not None:
        headers["Authorization"] = authorization.format(token=running.token())
    before = api.snapshot(running.run_id)
    response = api.client.post(
        f"/api/v1/tasks/{running.task_id}/completed",
        json=running.body(outcome="SUCCEEDED"),
        headers=headers,
    )
    assert error_of(response) == (401, "invalid_token", "invalid_token: missing bearer token")
    assert api.snapshot(running.run_id) == before


def test_extract_bearer_token(api: Api, running: Attempt) -> None:
    """8.9 #10 `test_extract_bearer_token` and #14
    `test_jwt_task_token_validator_accepts_valid_token`: `Bearer <token>` carries the token; a
    scoped token matching task, run, attempt and attempt id is accepted."""
    assert api.heartbeat(running, headers=bearer(running.token())).status_code == 200


def test_task_auth_middleware_accepts_debug_headers_in_dev(
    api: Api, make_client: Callable[..., TestClient]
) -> None:
    """8.9 #24: debug + dev: `Bearer debug-token` and X-Tenant-Id/X-Workspace-Id give the
    request that scope; without the headers the answer is 401 `missing tenant/workspace
    headers`; another tenant's headers read that tenant (404)."""
    debug = Api(make_client(environment="dev", debug=True), api.database)
    attempt = debug.dispatch(debug.run())
    response = debug.started(attempt, token="debug-token", headers=debug_headers())
    assert response.status_code == 200, response.text
    missing = debug.heartbeat(attempt, token="debug-token")
    assert error_of(missing) == (
        401,
        "invalid_token",
        "invalid_token: missing tenant/workspace headers",
    )
    elsewhere = debug.heartbeat(attempt, token="x", headers=debug_headers(tenant="tenant-z"))
    assert error_of(elsewhere)[:2] == (404, "task_not_found")
    no_bearer = debug.client.post(
        f"/api/v1/tasks/{attempt.task_id}/heartbeat", json=attempt.body(), headers=debug_headers()
    )
    assert error_of(no_bearer)[2] == "invalid_token: missing bearer token"


@pytest.mark.parametrize(
    "overrides",
    [
        {"environment": "staging", "debug": True},
        {"environment": "prod", "debug": True},
        {"environment": "dev", "api_public": True, "debug": True},
        {"environment": "dev", "debug": False},
    ],
)
def test_task_auth_middleware_rejects_debug_headers_outside_dev(
    api: Api, running: Attempt, make_client: Callable[..., TestClient], overrides: dict[str, Any]
) -> None:
    """8.9 #25: debug outside the dev posture (or dev without debug) ignores the debug headers:
    a non-JWT bearer is 401 and nothing is written."""
    other = Api(make_client(**overrides), api.database)
    before = other.snapshot(running.run_id)
    response = other.completed(running, token="debug-token", headers=debug_headers())
    assert error_of(response) == (401, "invalid_token", PREFIX + "InvalidToken")
    assert other.snapshot(running.run_id) == before


# --- design D8: rotation and heartbeat refresh -------------------------------------------------


def test_rotation_accepts_previous_secrets(
    api: Api, running: Attempt, make_client: Callable[..., TestClient]
) -> None:
    """D8: with ARCO_TASK_TOKEN_PREVIOUS_SECRETS the old secret still verifies while the new one
    signs; a secret in neither list is refused."""
    rotated = Api(
        make_client(
            task_token_secret="new-secret", task_token_previous_secrets=f" x , {TASK_SECRET} "
        ),
        api.database,
    )
    assert rotated.heartbeat(running).status_code == 200
    new = TaskTokenConfig(
        secret="new-secret", issuer=TASK_ISSUER, audience=TASK_AUDIENCE, ttl_seconds=900
    )
    assert rotated.heartbeat(running, token=running.token(config=new)).status_code == 200
    stranger = TaskTokenConfig(
        secret="other", issuer=TASK_ISSUER, audience=TASK_AUDIENCE, ttl_seconds=900
    )
    assert_rejected(rotated, running, running.token(config=stranger), PREFIX + "InvalidSignature")
    # Without the rotation list the old tokens stop working.
    strict = Api(make_client(task_token_secret="new-secret"), api.database)
    assert_rejected(strict, running, running.token(), PREFIX + "InvalidSignature")


def test_heartbeat_refreshes_a_token_near_expiry(
    api: Api, make_client: Callable[..., TestClient]
) -> None:
    """D8: with less than 20% of its lifetime (900 s) left, the heartbeat 200 carries a fresh
    `taskToken`/`tokenExpiresAt` for the same attempt; the new token works on /completed. At
    exactly 20% left there is no refresh."""
    clock = Clock(datetime.fromtimestamp(int(datetime.now(UTC).timestamp()) + 0.5, UTC))
    timed = Api(make_client(clock=clock), api.database)
    attempt = timed.dispatch(timed.run())
    assert timed.started(attempt).status_code == 200

    at_limit = attempt.token(now=clock.now - timedelta(seconds=720))  # 180 s left
    quiet = timed.heartbeat(attempt, token=at_limit)
    assert quiet.status_code == 200
    assert "taskToken" not in quiet.json()

    near = attempt.token(now=clock.now - timedelta(seconds=721))  # 179 s left
    response = timed.heartbeat(attempt, token=near)
    assert response.status_code == 200
    body = response.json()
    assert list(body) == [
        "acknowledged",
        "shouldCancel",
        "serverTime",
        "taskToken",
        "tokenExpiresAt",
    ]
    assert parse_timestamp(body["tokenExpiresAt"]) == clock.now + timedelta(seconds=900)
    fresh = body["taskToken"]
    assert fresh != near
    claims = verify_task_token(task_token_config(), fresh, now=clock.now)
    assert (claims.run_id, claims.attempt, claims.attempt_id, claims.task_id) == (
        attempt.run_id,
        attempt.attempt,
        attempt.attempt_id,
        attempt.task_id,
    )
    assert claims.exp == int(clock.now.timestamp()) + 900

    clock.advance(250)  # the old token is now past exp + 60; the fresh one is fine
    assert error_of(timed.heartbeat(attempt, token=near))[2] == PREFIX + "ExpiredSignature"
    done = timed.completed(attempt, token=fresh)
    assert done.status_code == 200, done.text


def test_refreshed_token_is_signed_with_the_current_secret(
    api: Api, running: Attempt, make_client: Callable[..., TestClient]
) -> None:
    """D8 with rotation: a near-expiry token signed with the previous secret is refreshed with
    one signed by the current secret."""
    rotated = Api(
        make_client(task_token_secret="new-secret", task_token_previous_secrets=TASK_SECRET),
        api.database,
    )
    near = running.token(now=datetime.now(UTC) - timedelta(seconds=800))
    response = rotated.heartbeat(running, token=near)
    fresh = response.json()["taskToken"]
    new_only = Api(make_client(task_token_secret="new-secret"), api.database)
    assert new_only.completed(running, token=fresh).status_code == 200


def test_no_refresh_in_debug_mode_or_on_other_phases(
    api: Api, make_client: Callable[..., TestClient]
) -> None:
    """D8: only the heartbeat refreshes, and only a verified scoped token."""
    attempt = api.dispatch(api.run())
    near = attempt.token(now=datetime.now(UTC) - timedelta(seconds=800))
    assert "taskToken" not in api.started(attempt, token=near).json()
    debug = Api(make_client(environment="dev", debug=True), api.database)
    response = debug.heartbeat(attempt, token="debug", headers=debug_headers())
    assert response.status_code == 200
    assert "taskToken" not in response.json()
    assert "taskToken" not in api.completed(attempt, token=near).json()
