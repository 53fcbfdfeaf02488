"""The auth policy of every route, checked against a declared table by walking the app's
routes (issue 3: "A test walks every route of the app and checks its auth policy against a
declared table"), plus user authentication (JWT HS256/RS256, claims, debug headers)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI
from fastapi.testclient import TestClient
from services.api.tests.api_test_support import (
    RAW,
    USER_JWT_SECRET,
    Api,
    Attempt,
    bearer,
    debug_headers,
    forge,
    sqlite_only,
    unsigned,
    user_headers,
    user_token,
)

from arco_api import auth
from arco_envelope.tokens import TaskTokenConfig
from arco_testkit.values import TASK_AUDIENCE, TASK_ISSUER, TENANT, WORKSPACE

pytestmark = sqlite_only

Policy = Literal["public", "user", "task", "user_or_task", "console", "login"]

ROUTE_POLICY: dict[tuple[str, str], Policy] = {
    ("GET", "/health"): "public",
    ("GET", "/ready"): "public",
    ("GET", "/version"): "public",
    ("GET", "/metrics"): "public",
    ("GET", "/openapi.json"): "public",
    ("GET", "/docs"): "public",
    ("GET", "/docs/oauth2-redirect"): "public",
    ("GET", "/redoc"): "public",
    ("POST", "/api/v1/workspaces/{workspace_id}/manifests"): "user",
    ("GET", "/api/v1/workspaces/{workspace_id}/manifests"): "user",
    ("GET", "/api/v1/workspaces/{workspace_id}/manifests/{manifest_id}"): "user",
    ("POST", "/api/v1/workspaces/{workspace_id}/runs"): "user",
    ("GET", "/api/v1/workspaces/{workspace_id}/runs"): "user",
    ("GET", "/api/v1/workspaces/{workspace_id}/runs/{run_id}"): "user",
    ("POST", "/api/v1/workspaces/{workspace_id}/runs/{run_id}/cancel"): "user",
    ("POST", "/api/v1/workspaces/{workspace_id}/runs/{run_id}/rerun"): "user",
    ("GET", "/api/v1/workspaces/{workspace_id}/runs/{run_id}/tasks"): "user",
    ("GET", "/api/v1/workspaces/{workspace_id}/runs/{run_id}/tasks/{task_key}"): "user",
    # Design D16: a worker uploads its attempt's logs with its own task token.
    ("POST", "/api/v1/workspaces/{workspace_id}/runs/{run_id}/logs"): "user_or_task",
    ("GET", "/api/v1/workspaces/{workspace_id}/runs/{run_id}/logs"): "user",
    ("POST", "/api/v1/tasks/{task_id}/started"): "task",
    ("POST", "/api/v1/tasks/{task_id}/heartbeat"): "task",
    ("POST", "/api/v1/tasks/{task_id}/completed"): "task",
    # The web console: only its session cookie (a user JWT set by the login form) opens it.
    ("GET", "/ui"): "console",
    ("GET", "/ui/login"): "public",
    ("POST", "/ui/login"): "login",
    ("POST", "/ui/logout"): "console",
    ("GET", "/ui/runs"): "console",
    ("GET", "/ui/runs/{run_id}"): "console",
    ("GET", "/ui/runs/{run_id}/tasks/{task_key:path}"): "console",
    ("GET", "/ui/runs/{run_id}/cancel"): "console",
    ("POST", "/ui/runs/{run_id}/cancel"): "console",
    ("GET", "/ui/runs/{run_id}/rerun"): "console",
    ("POST", "/ui/runs/{run_id}/rerun"): "console",
    ("GET", "/ui/manifests"): "console",
    ("POST", "/ui/manifests/trigger"): "console",
}


def app_routes(app: FastAPI) -> set[tuple[str, str]]:
    """Every (method, path template) the app serves, HEAD aside; included routers are walked
    through their effective routes."""

    def pairs(path: str, methods: Iterable[str] | None) -> set[tuple[str, str]]:
        return {(method, path) for method in (methods or ()) if method != "HEAD"}

    found: set[tuple[str, str]] = set()
    for route in app.routes:
        contexts = getattr(route, "effective_route_contexts", None)
        if callable(contexts):
            for context in contexts():
                found |= pairs(context.path, getattr(context.original_route, "methods", None))
        else:
            found |= pairs(getattr(route, "path", ""), getattr(route, "methods", None))
    return found


def concrete(path: str, running: Attempt, workspace: str = WORKSPACE) -> str:
    return (
        path.replace("{workspace_id}", workspace)
        .replace("{run_id}", running.run_id)
        .replace("{task_id}", running.task_id)
        .replace("{task_key}", RAW)
        .replace("{task_key:path}", RAW)
        .replace("{manifest_id}", "01NOPE")
    )


def call(client: TestClient, method: str, path: str, headers: dict[str, str], body: Any) -> Any:
    if method == "GET":
        return client.get(path, headers=headers)
    return client.request(method, path, json=body, headers=headers)


def body_for(path: str, running: Attempt) -> dict[str, Any]:
    if path.endswith("/completed"):
        return running.body(outcome="SUCCEEDED")
    if path.startswith("/api/v1/tasks/"):
        return running.body()
    return {"selection": [RAW], "mode": "subset", "taskKey": RAW, "attempt": 1}


def test_every_route_is_declared(app: FastAPI) -> None:
    """The table names every route the app serves, and nothing else."""
    assert app_routes(app) == set(ROUTE_POLICY)


def test_every_route_follows_its_policy(api: Api, running: Attempt, app: FastAPI) -> None:
    """Walk every route: without credentials user and task routes are 401 and public routes
    answer (2xx); a task token on a user route and a user JWT on a task route are 401; the
    right credential is never 401; a workspace path other than the caller's is 404. Nothing
    is written by a refused callback."""
    client = api.client
    before = api.snapshot(running.run_id)
    for method, template in sorted(app_routes(app)):
        policy = ROUTE_POLICY[(method, template)]
        path = concrete(template, running)
        body = body_for(template, running)
        if policy == "console":
            # No cookie: a bearer JWT, a task token or nothing all lead to the login page
            # (pages) or a 401 (forms).
            for headers in ({}, user_headers(), bearer(running.token())):
                answer = call(client, method, path, headers, body)
                if method == "GET":
                    assert answer.url.path == "/ui/login", (method, path)
                else:
                    assert answer.status_code == 401, (method, path)
            continue
        anonymous = call(client, method, path, {}, body)
        if policy == "login":
            # Answers without credentials, and only to its own form (a JSON body is a 400).
            assert anonymous.status_code == 400, (method, path)
            continue
        if policy == "public":
            assert anonymous.status_code < 300, (method, path, anonymous.status_code)
            continue
        assert anonymous.status_code == 401, (method, path)
        assert "x-request-id" in anonymous.headers
        if policy in ("user", "user_or_task"):
            task = call(client, method, path, bearer(running.token()), body)
            assert (task.status_code == 401) == (policy == "user"), (method, path)
            as_user = call(client, method, path, user_headers(), body)
            assert as_user.status_code != 401, (method, path, as_user.text)
            elsewhere = call(
                client, method, concrete(template, running, "other-ws"), user_headers(), body
            )
            assert elsewhere.status_code == 404, (method, path)
            assert elsewhere.json()["message"] == "workspace not found"
        else:
            as_user = call(client, method, path, user_headers(), body)
            assert as_user.status_code == 401, (method, path)
            assert as_user.json()["error"] == "invalid_token"
            assert api.snapshot(running.run_id) == before
    as_task = call(
        client,
        "POST",
        concrete("/api/v1/tasks/{task_id}/heartbeat", running),
        bearer(running.token()),
        running.body(),
    )
    assert as_task.status_code == 200


def test_task_token_signed_with_the_user_secret_is_still_refused(
    api: Api, running: Attempt, make_client: Callable[..., TestClient]
) -> None:
    """arco-contract 6.4 "Task tokens are only accepted on /api/v1/tasks": even when the user
    JWT secret equals the task secret, a task token is refused on user routes."""
    shared_secret = "one-shared-secret-0123456789abcdef0123"
    shared = make_client(jwt_secret=shared_secret, task_token_secret=shared_secret)
    config = TaskTokenConfig(
        secret=shared_secret, issuer=TASK_ISSUER, audience=TASK_AUDIENCE, ttl_seconds=900
    )
    token = running.token(config=config)
    path = f"/api/v1/workspaces/{WORKSPACE}/runs"
    response = shared.get(path, headers=bearer(token))
    assert response.status_code == 401
    assert response.json()["message"] == "task tokens are not accepted on this route"


# --- user JWTs --------------------------------------------------------------------------------

RUNS_PATH = f"/api/v1/workspaces/{WORKSPACE}/runs"


def user_claims(**overrides: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "tenant": TENANT,
        "workspace": WORKSPACE,
        "sub": "user-1",
        "exp": int((datetime.now(UTC) + timedelta(hours=1)).timestamp()),
    }
    claims.update(overrides)
    return {key: value for key, value in claims.items() if value is not None}


@pytest.mark.parametrize(
    ("token", "message"),
    [
        (
            lambda: forge(user_claims(), key="wrong-secret-wrong-secret-wrong-secret"),
            "invalid token: InvalidSignatureError",
        ),
        (
            lambda: forge(
                user_claims(exp=int(datetime.now(UTC).timestamp()) - 120), key=USER_JWT_SECRET
            ),
            "invalid token: ExpiredSignatureError",
        ),
        (
            lambda: forge(user_claims(exp=None), key=USER_JWT_SECRET),
            "invalid token: MissingRequiredClaimError",
        ),
        (
            lambda: forge(user_claims(tenant=None), key=USER_JWT_SECRET),
            "token lacks tenant/workspace claims",
        ),
        (
            lambda: unsigned(user_claims()),
            "invalid token: InvalidAlgorithmError",
        ),
        (lambda: "not-a-jwt", "invalid token: DecodeError"),
    ],
)
def test_user_jwt_rejections(client: TestClient, token: Callable[[], str], message: str) -> None:
    """User authentication as upstream: a bearer JWT signed with ARCO_JWT_SECRET (HS256), with
    `exp` and the tenant/workspace claims; anything else is 401 `{code: UNAUTHORIZED}`."""
    response = client.get(RUNS_PATH, headers=bearer(token()))
    assert response.status_code == 401
    body = response.json()
    assert (body["code"], body["message"]) == ("UNAUTHORIZED", message)
    assert client.get(RUNS_PATH, headers={"Authorization": "Basic abc"}).status_code == 401
    assert (
        client.get(RUNS_PATH, headers={"Authorization": f"bearer {user_token()}"}).status_code
        == 401
    )


def test_a_verified_token_is_refused_once_it_expires(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A token verified once is remembered, but its `exp` still holds on every request,
    with PyJWT's leeway and message."""
    exp = int(datetime.now(UTC).timestamp()) + 30
    headers = bearer(forge(user_claims(exp=exp), key=USER_JWT_SECRET))
    assert client.get(RUNS_PATH, headers=headers).status_code == 200
    assert client.get(RUNS_PATH, headers=headers).status_code == 200
    monkeypatch.setattr("arco_api.auth.time.time", lambda: exp + auth.LEEWAY_SECS - 1)
    assert client.get(RUNS_PATH, headers=headers).status_code == 200
    # (Only the remembered token's check reads this clock; PyJWT reads its own.)
    monkeypatch.setattr("arco_api.auth.time.time", lambda: exp + auth.LEEWAY_SECS)
    response = client.get(RUNS_PATH, headers=headers)
    assert response.status_code == 401
    body = response.json()
    assert (body["code"], body["message"]) == (
        "UNAUTHORIZED",
        "invalid token: ExpiredSignatureError",
    )


def test_remembered_tokens_are_bounded(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(auth, "VERIFIED_TOKENS", 2)
    users = client.app.state.arco.users  # type: ignore[attr-defined]
    tokens = [forge(user_claims(sub=f"user-{index}"), key=USER_JWT_SECRET) for index in range(3)]
    for token in [*tokens, tokens[0]]:
        assert client.get(RUNS_PATH, headers=bearer(token)).status_code == 200
        assert len(users._verified) <= 2
    assert [users.principal_of_token(token).user_id for token in tokens] == [
        "user-0",
        "user-1",
        "user-2",
    ]


def test_user_ids_must_be_storage_ids(client: TestClient) -> None:
    """Tenant and workspace claims must be storage ids (400 otherwise, never 403)."""
    response = client.get(
        "/api/v1/workspaces/Workspace-B/runs", headers=user_headers(workspace="Workspace-B")
    )
    assert response.status_code == 400
    assert response.json()["message"].startswith("workspace_id contains invalid characters")


def test_configured_claim_names_issuer_and_audience(
    api: Api, make_client: Callable[..., TestClient]
) -> None:
    """ARCO_JWT_TENANT_CLAIM / _WORKSPACE_CLAIM / _USER_CLAIM rename the claims;
    ARCO_JWT_ISSUER and ARCO_JWT_AUDIENCE are enforced when set."""
    client = make_client(
        jwt_tenant_claim="org",
        jwt_workspace_claim="ws",
        jwt_user_claim="email",
        jwt_issuer="https://idp",
        jwt_audience="arco-api",
    )
    good = {
        "org": TENANT,
        "ws": WORKSPACE,
        "email": "a@b.c",
        "iss": "https://idp",
        "aud": "arco-api",
        "exp": int((datetime.now(UTC) + timedelta(hours=1)).timestamp()),
    }
    assert (
        client.get(RUNS_PATH, headers=bearer(forge(good, key=USER_JWT_SECRET))).status_code == 200
    )
    for change in ({"aud": "other"}, {"iss": "https://evil"}, {"org": None}):
        claims = {**good, **change}
        claims = {key: value for key, value in claims.items() if value is not None}
        response = client.get(RUNS_PATH, headers=bearer(forge(claims, key=USER_JWT_SECRET)))
        assert response.status_code == 401, change
    # deployedBy/triggeredBy take the configured user claim.
    response = client.post(
        RUNS_PATH, json={"selection": [RAW]}, headers=bearer(forge(good, key=USER_JWT_SECRET))
    )
    assert response.status_code == 201
    assert api.snapshot(response.json()["runId"])["run"]["triggered_by"] == "a@b.c"


def test_rs256_public_key(api: Api, make_client: Callable[..., TestClient], tmp_path: Any) -> None:
    """ARCO_JWT_PUBLIC_KEY_PEM / _PATH select RS256: an RS256 token verifies, and an HS256
    token (even signed with the old user secret or with the PEM text) is refused."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    path = tmp_path / "key.pem"
    path.write_text(pem)
    token = jwt.encode(user_claims(), key, algorithm="RS256")
    for client in (make_client(jwt_public_key_pem=pem), make_client(jwt_public_key_path=str(path))):
        assert client.get(RUNS_PATH, headers=bearer(token)).status_code == 200
        assert client.get(RUNS_PATH, headers=user_headers()).status_code == 401
        confused = forge(user_claims(), key=pem)
        assert client.get(RUNS_PATH, headers=bearer(confused)).status_code == 401


# --- debug headers ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "accepted"),
    [
        ({"environment": "dev", "debug": True}, True),
        ({"environment": "dev", "debug": False}, False),
        ({"environment": "staging", "debug": True}, False),
        ({"environment": "prod", "debug": True}, False),
        ({"environment": "dev", "api_public": True, "debug": True}, False),
    ],
)
def test_debug_headers_only_with_debug_and_dev_posture(
    api: Api, make_client: Callable[..., TestClient], overrides: dict[str, Any], accepted: bool
) -> None:
    """User routes honour X-Tenant-Id/X-Workspace-Id/X-User-Id only with ARCO_DEBUG=true and the
    dev posture (ARCO_ENVIRONMENT=dev, ARCO_API_PUBLIC=false)."""
    client = make_client(**overrides)
    response = client.post(RUNS_PATH, json={"selection": [RAW]}, headers=debug_headers())
    if accepted:
        assert response.status_code == 201, response.text
        run_id = response.json()["runId"]
        assert api.snapshot(run_id)["run"]["triggered_by"] == "debug-user"
        other = client.get(RUNS_PATH, headers=debug_headers(workspace="other-ws"))
        assert other.status_code == 404
    else:
        assert response.status_code == 401
        assert response.json()["message"] == "missing bearer token"


def test_debug_mode_still_accepts_jwts(api: Api, make_client: Callable[..., TestClient]) -> None:
    """In debug mode a request without the debug headers falls back to the bearer JWT."""
    client = make_client(environment="dev", debug=True)
    assert client.get(RUNS_PATH, headers=user_headers()).status_code == 200
    assert client.get(RUNS_PATH).status_code == 401
