"""A small client of the run API, authenticated with a user JWT signed by the stack's
``ARCO_JWT_SECRET`` (or a bearer token given by the operator)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt


def user_token(
    secret: str,
    tenant: str,
    workspace: str,
    user: str = "arco-stack",
    ttl_seconds: int = 3600,
) -> str:
    """A user JWT as the API accepts it (docs/auth.md): HS256 over ``tenant``, ``workspace``,
    ``sub`` and ``exp``."""
    claims = {
        "tenant": tenant,
        "workspace": workspace,
        "sub": user,
        "exp": int((datetime.now(UTC) + timedelta(seconds=ttl_seconds)).timestamp()),
    }
    return jwt.encode(claims, secret, algorithm="HS256")


class ApiResponseError(httpx.HTTPStatusError):
    """A non-2xx answer; ``status`` and ``api_message`` (the error body's message) say why."""

    def __init__(self, response: httpx.Response) -> None:
        self.status = response.status_code
        self.api_message = _error_message(response)
        super().__init__(
            f"{response.request.method} {response.request.url.path} -> "
            f"{response.status_code}: {response.text}",
            request=response.request,
            response=response,
        )


def _error_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:300] or response.reason_phrase
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return str(body["message"])
    return response.text.strip()[:300]


class ApiClient:
    def __init__(self, base_url: str, token: str, workspace: str) -> None:
        self.workspace = workspace
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {token}"},
            timeout=30.0,
        )

    @classmethod
    def of_stack(cls, env: Mapping[str, str]) -> ApiClient:
        """A client of the stack whose environment is ``env``, with a user token minted from
        its JWT secret for its tenant and workspace."""
        token = user_token(env["ARCO_JWT_SECRET"], env["ARCO_TENANT_ID"], env["ARCO_WORKSPACE_ID"])
        return cls(env["ARCO_FLOW_CALLBACK_BASE_URL"], token, env["ARCO_WORKSPACE_ID"])

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _path(self, suffix: str) -> str:
        return f"/api/v1/workspaces/{self.workspace}{suffix}"

    @property
    def base_url(self) -> str:
        return str(self._http.base_url)

    def _json(self, response: httpx.Response) -> Any:
        if response.status_code >= 400:
            raise ApiResponseError(response)
        return response.json()

    def latest_manifest(self) -> dict[str, Any] | None:
        """The active (newest) manifest of the workspace, or ``None`` before any deploy."""
        listed = self._json(self._http.get(self._path("/manifests")))["manifests"]
        if not listed:
            return None
        manifest_id = listed[0]["manifestId"]
        result: dict[str, Any] = self._json(self._http.get(self._path(f"/manifests/{manifest_id}")))
        return result

    def run_logs(self, run_id: str, task_key: str | None = None) -> str | None:
        """Every uploaded log section of the run (all pages), or ``None`` when there is none."""
        params: dict[str, Any] = {"limit": 200}
        if task_key:
            params["taskKey"] = task_key
        parts: list[str] = []
        while True:
            response = self._http.get(self._path(f"/runs/{run_id}/logs"), params=params)
            if response.status_code == 404 and "cursor" not in params:
                self.get_run(run_id)  # an unknown run raises here; a known one has no logs
                return None
            if response.status_code >= 400:
                raise ApiResponseError(response)
            parts.append(response.text)
            cursor = response.headers.get("x-arco-next-cursor")
            if not cursor:
                return "".join(parts)
            params["cursor"] = cursor

    def deploy_manifest(self, manifest: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self._json(
            self._http.post(self._path("/manifests"), json=manifest)
        )
        return result

    def trigger_run(self, body: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self._json(self._http.post(self._path("/runs"), json=body))
        return result

    def list_runs(
        self, limit: int = 20, state: str | None = None, cursor: str | None = None
    ) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": limit}
        if state:
            params["state"] = state
        if cursor:
            params["cursor"] = cursor
        result: dict[str, Any] = self._json(self._http.get(self._path("/runs"), params=params))
        return result

    def get_run(self, run_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._json(self._http.get(self._path(f"/runs/{run_id}")))
        return result

    def run_tasks(self, run_id: str) -> list[dict[str, Any]]:
        result = self._json(self._http.get(self._path(f"/runs/{run_id}/tasks")))
        tasks: list[dict[str, Any]] = result["tasks"]
        return tasks

    def cancel_run(self, run_id: str, reason: str = "cancelled by arco-stack") -> dict[str, Any]:
        response = self._http.post(self._path(f"/runs/{run_id}/cancel"), json={"reason": reason})
        result: dict[str, Any] = self._json(response)
        return result

    def wait_terminal(self, run_id: str, timeout: float) -> dict[str, Any]:
        """Poll the run until its public state is terminal; raises ``TimeoutError``."""
        deadline = time.monotonic() + timeout
        while True:
            run = self.get_run(run_id)
            if run["state"] in ("SUCCEEDED", "FAILED", "CANCELLED", "TIMED_OUT"):
                return run
            if time.monotonic() > deadline:
                raise TimeoutError(f"run {run_id} still {run['state']} after {timeout:.0f}s")
            time.sleep(0.25)
