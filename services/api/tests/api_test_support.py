"""Shared helpers of the API suites: constants, credentials, task-token minting, manifests,
and ``Api``, the HTTP operations the suites repeat (imported by conftest and the tests)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from arco_api.settings import ApiSettings
from arco_envelope import callback_task_id
from arco_envelope.tokens import TaskTokenConfig, mint_task_token
from arco_orchestration import facts
from arco_orchestration.db import Database
from arco_orchestration.models import Run, Task, TaskEvent
from arco_orchestration.scope import Scope
from arco_testkit.clock import FakeClock
from arco_testkit.values import TASK_AUDIENCE, TASK_ISSUER, TASK_SECRET, TENANT, WORKER, WORKSPACE

USER_JWT_SECRET = "user-jwt-secret-0123456789abcdef0123456789"

# The worked example of arco-manifest 1.6: what arco's SDK sends for two assets.
EXAMPLE_MANIFEST: dict[str, Any] = json.loads(
    (Path(__file__).parent / "data" / "arco-manifest-example.json").read_text(encoding="utf-8")
)


def api_settings(**overrides: Any) -> ApiSettings:
    """A private-posture API (no debug) with user JWTs and task tokens configured."""
    values: dict[str, Any] = {
        "environment": "staging",
        "api_public": False,
        "debug": False,
        "jwt_secret": USER_JWT_SECRET,
        "task_token_secret": TASK_SECRET,
        "task_token_issuer": TASK_ISSUER,
        "task_token_audience": TASK_AUDIENCE,
        "task_token_ttl_secs": 900,
    }
    values.update(overrides)
    return ApiSettings(**values)


def user_token(
    tenant: str = TENANT, workspace: str = WORKSPACE, user: str = "user-1", **extra: Any
) -> str:
    claims = {
        "tenant": tenant,
        "workspace": workspace,
        "sub": user,
        "exp": int((datetime.now(UTC) + timedelta(hours=1)).timestamp()),
        **extra,
    }
    return jwt.encode(claims, USER_JWT_SECRET, algorithm="HS256")


def user_headers(**kwargs: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {user_token(**kwargs)}"}


def task_token_config() -> TaskTokenConfig:
    return TaskTokenConfig(
        secret=TASK_SECRET, issuer=TASK_ISSUER, audience=TASK_AUDIENCE, ttl_seconds=900
    )


def mint_for(
    run_id: str,
    task_key: str,
    attempt: int,
    attempt_id: str,
    *,
    now: datetime | None = None,
    config: TaskTokenConfig | None = None,
    tenant: str = TENANT,
    workspace: str = WORKSPACE,
) -> str:
    """A scoped task token for one attempt, as the dispatcher mints it."""
    token, _ = mint_task_token(
        config or task_token_config(),
        task_id=callback_task_id(run_id, task_key),
        tenant_id=tenant,
        workspace_id=workspace,
        run_id=run_id,
        attempt=attempt,
        attempt_id=attempt_id,
        now=now,
    )
    return token


# --- helpers shared by the HTTP suites -------------------------------------------------------

RAW = "analytics.raw_orders"
DAILY = "analytics.daily_sales"
RUNS = f"/api/v1/workspaces/{WORKSPACE}/runs"
MANIFESTS = f"/api/v1/workspaces/{WORKSPACE}/manifests"


def manifest_of(
    graph: dict[str, list[str]], code_version: str = "01TESTCODEVERSION"
) -> dict[str, Any]:
    """A minimal SDK-shaped manifest: ``{"ns.name": ["ns.upstream", ...]}``, unpartitioned."""

    def key(text: str) -> dict[str, str]:
        namespace, name = text.split(".", 1)
        return {"namespace": namespace, "name": name}

    assets = [
        {
            "id": f"id-{asset}",
            "key": key(asset),
            "dependencies": [{"upstreamKey": key(up)} for up in upstream],
        }
        for asset, upstream in graph.items()
    ]
    return {"manifestVersion": "1.0", "codeVersionId": code_version, "assets": assets}


@dataclass(frozen=True)
class Attempt:
    """One dispatched attempt of a task, as the envelope would describe it."""

    run_id: str
    task_key: str
    attempt: int
    attempt_id: str

    @property
    def task_id(self) -> str:
        return callback_task_id(self.run_id, self.task_key)

    def token(self, **kwargs: Any) -> str:
        return mint_for(self.run_id, self.task_key, self.attempt, self.attempt_id, **kwargs)

    def body(self, **fields: Any) -> dict[str, Any]:
        base: dict[str, Any] = {
            "attempt": self.attempt,
            "attemptId": self.attempt_id,
            "workerId": WORKER,
        }
        base.update(fields)
        return {key: value for key, value in base.items() if value is not None}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class Api:
    """The HTTP operations the suites repeat, over one TestClient and its database."""

    def __init__(self, client: TestClient, database: Database) -> None:
        self.client = client
        self.database = database
        self.scope = Scope(TENANT, WORKSPACE)

    # user routes
    def trigger(
        self, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> httpx.Response:
        response: httpx.Response = self.client.post(
            RUNS, json=body, headers={**user_headers(), **(headers or {})}
        )
        return response

    def run(self, selection: list[str] | None = None, **extra: Any) -> str:
        """Trigger a run (201) and return its id."""
        response = self.trigger({"selection": selection or [RAW], **extra})
        assert response.status_code == 201, response.text
        run_id: str = response.json()["runId"]
        return run_id

    def get(self, path: str, **params: Any) -> httpx.Response:
        response: httpx.Response = self.client.get(
            path, params=params or None, headers=user_headers()
        )
        return response

    def detail(self, run_id: str) -> dict[str, Any]:
        response = self.get(f"{RUNS}/{run_id}")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def summary(self, run_id: str, task_key: str) -> dict[str, Any]:
        tasks = {task["taskKey"]: task for task in self.detail(run_id)["tasks"]}
        found: dict[str, Any] = tasks[task_key]
        return found

    def task(self, run_id: str, task_key: str) -> dict[str, Any]:
        response = self.get(f"{RUNS}/{run_id}/tasks/{task_key}")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def cancel(self, run_id: str, reason: str | None = None) -> httpx.Response:
        body = {} if reason is None else {"reason": reason}
        response: httpx.Response = self.client.post(
            f"{RUNS}/{run_id}/cancel", json=body, headers=user_headers()
        )
        return response

    # dispatcher side
    def dispatch(self, run_id: str, task_key: str = RAW) -> Attempt:
        with self.database.transaction() as session:
            request = facts.request_dispatch(
                session, self.scope, run_id, task_key, now=datetime.now(UTC)
            )
        assert request is not None, f"{task_key} of {run_id} was not dispatchable"
        return Attempt(run_id, task_key, request.attempt, request.attempt_id)

    # worker callbacks
    def callback(
        self,
        phase: str,
        attempt: Attempt,
        body: dict[str, Any] | None = None,
        *,
        token: str | None = None,
        task_id: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        response: httpx.Response = self.client.post(
            f"/api/v1/tasks/{task_id or attempt.task_id}/{phase}",
            json=attempt.body() if body is None else body,
            headers={**bearer(token or attempt.token()), **(headers or {})},
        )
        return response

    def started(self, attempt: Attempt, **kwargs: Any) -> httpx.Response:
        return self.callback("started", attempt, **kwargs)

    def heartbeat(self, attempt: Attempt, **kwargs: Any) -> httpx.Response:
        return self.callback("heartbeat", attempt, **kwargs)

    def completed(
        self,
        attempt: Attempt,
        outcome: str = "SUCCEEDED",
        extra: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        body = attempt.body(outcome=outcome, **(extra or {}))
        return self.callback("completed", attempt, body, **kwargs)

    def succeed(self, attempt: Attempt) -> None:
        assert self.started(attempt).status_code == 200
        response = self.completed(attempt)
        assert response.status_code == 200, response.text

    def fail(self, attempt: Attempt, *, retryable: bool = True) -> None:
        error = {"category": "USER_CODE", "message": "boom", "retryable": retryable}
        response = self.completed(attempt, "FAILED", {"error": error})
        assert response.status_code == 200, response.text

    def retry(self, first: Attempt) -> Attempt:
        """Fail ``first`` retryably (RETRY_WAIT), then dispatch the next attempt."""
        self.fail(first)
        return self.dispatch(first.run_id, first.task_key)

    # stored state, read directly (to prove what was or was not written)
    def snapshot(self, run_id: str, task_key: str = RAW) -> dict[str, Any]:
        with self.database.transaction() as session:
            task = session.get(Task, (run_id, task_key))
            run = session.get(Run, run_id)
            assert task is not None
            assert run is not None
            events = session.scalars(
                select(TaskEvent.kind)
                .where(TaskEvent.run_id == run_id, TaskEvent.task_key == task_key)
                .order_by(TaskEvent.id)
            ).all()
            return {
                "task": {c.key: getattr(task, c.key) for c in Task.__table__.columns},
                "run": {c.key: getattr(run, c.key) for c in Run.__table__.columns},
                "events": list(events),
            }

    def events(self, run_id: str, task_key: str = RAW) -> list[TaskEvent]:
        with self.database.transaction() as session:
            rows = session.scalars(
                select(TaskEvent)
                .where(TaskEvent.run_id == run_id, TaskEvent.task_key == task_key)
                .order_by(TaskEvent.id)
            ).all()
            session.expunge_all()
            return list(rows)


class Clock(FakeClock):
    """The test kit's clock for ``create_app(..., clock=...)``, started at the wall-clock time:
    the suites mint task tokens against real time, which the API's clock must agree with."""

    def __init__(self, now: datetime | None = None) -> None:
        super().__init__(now or datetime.now(UTC))


def scoped_claims(of: Attempt, /, now: datetime | None = None, **overrides: Any) -> dict[str, Any]:
    """The claims the dispatcher mints for attempt ``of``; an override of ``None`` drops a
    claim."""
    issued = int((now or datetime.now(UTC)).timestamp())
    claims: dict[str, Any] = {
        "taskId": of.task_id,
        "tenantId": TENANT,
        "workspaceId": WORKSPACE,
        "runId": of.run_id,
        "attempt": of.attempt,
        "attemptId": of.attempt_id,
        "exp": issued + 900,
        "nbf": issued,
        "iat": issued,
        "iss": TASK_ISSUER,
        "aud": TASK_AUDIENCE,
    }
    claims.update(overrides)
    return {key: value for key, value in claims.items() if value is not None}


def forge(claims: dict[str, Any], *, key: str = TASK_SECRET) -> str:
    """An HS256 JWT over exactly these claims (no library validation of claim types)."""
    segments = [
        base64.urlsafe_b64encode(json.dumps(part, separators=(",", ":")).encode())
        .rstrip(b"=")
        .decode()
        for part in ({"typ": "JWT", "alg": "HS256"}, claims)
    ]
    signing_input = ".".join(segments).encode()
    signature = hmac.new(key.encode(), signing_input, hashlib.sha256).digest()
    encoded = base64.urlsafe_b64encode(signature).rstrip(b"=").decode()
    return f"{segments[0]}.{segments[1]}.{encoded}"


def unscoped_token(task_id: str, *, tenant: str = TENANT, workspace: str = WORKSPACE) -> str:
    """Upstream's legacy token: taskId, tenant and workspace only (no run/attempt scope)."""
    token, _ = mint_task_token(
        task_token_config(), task_id=task_id, tenant_id=tenant, workspace_id=workspace
    )
    return token


def debug_headers(tenant: str = TENANT, workspace: str = WORKSPACE) -> dict[str, str]:
    return {"X-Tenant-Id": tenant, "X-Workspace-Id": workspace, "X-User-Id": "debug-user"}


def error_of(response: httpx.Response) -> tuple[int, str, str]:
    """``(status, error code, message)`` of a callback error; the message must start with the
    code (design D9)."""
    body = response.json()
    assert body["message"].startswith(f"{body['error']}: "), body
    return response.status_code, body["error"], body["message"]


# Tests of the HTTP layer alone (body parsing, token cryptography, auth policy) behave the same
# on any database: they run on SQLite only, keeping the PostgreSQL pass for persistence.
sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def unsigned(claims: dict[str, Any]) -> str:
    """An `alg: none` JWT over ``claims`` (no signature)."""
    segments = [
        base64.urlsafe_b64encode(json.dumps(part, separators=(",", ":")).encode())
        .rstrip(b"=")
        .decode()
        for part in ({"alg": "none", "typ": "JWT"}, claims)
    ]
    return f"{segments[0]}.{segments[1]}."
