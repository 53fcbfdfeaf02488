"""What the console's buttons do: trigger, cancel, rerun from failure.

Each action is a request to the run API of this same application, in process (no socket),
with the signed-in user's JWT as its bearer token. The console therefore obeys exactly the
rules, limits, idempotency and error messages of the API, and cannot drift from them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import Request

from arco_api.console.session import ConsoleSession

PARTITION_LINES = 64


class FormError(ValueError):
    """A form value the console cannot turn into an API request (shown next to the form)."""


@dataclass(frozen=True)
class ApiAnswer:
    status: int
    body: dict[str, Any]

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def message(self) -> str:
        return str(self.body.get("message") or f"the API answered {self.status}")


def parse_partitions(text: str) -> list[dict[str, str]]:
    """``key=value`` lines (blank lines ignored) as the API's ``partitions`` list."""
    partitions = []
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) > PARTITION_LINES:
        raise FormError(f"at most {PARTITION_LINES} partition lines")
    for line in lines:
        key, sep, value = line.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise FormError(f"partition line {line!r} is not key=value")
        partitions.append({"key": key.strip(), "value": value.strip()})
    return partitions


def trigger_body(
    selection: list[str], partitions: str, run_key: str, *, include_upstream: bool = False
) -> dict[str, Any]:
    if not selection:
        raise FormError("select at least one asset")
    body: dict[str, Any] = {"selection": selection}
    if include_upstream:
        body["includeUpstream"] = True
    if parsed := parse_partitions(partitions):
        body["partitions"] = parsed
    if run_key.strip():
        body["runKey"] = run_key.strip()
    return body


async def call_api(
    request: Request, session: ConsoleSession, path: str, body: dict[str, Any]
) -> ApiAnswer:
    """POST ``body`` to ``path`` under the caller's workspace, through this application."""
    workspace = session.principal.workspace_id
    transport = httpx.ASGITransport(app=request.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://console.local") as client:
        response = await client.post(
            f"/api/v1/workspaces/{workspace}{path}",
            content=json.dumps(body),
            headers={
                "authorization": f"Bearer {session.token}",
                "content-type": "application/json",
                "x-request-id": str(getattr(request.state, "request_id", "") or ""),
            },
        )
    try:
        answer = response.json()
    except ValueError:
        answer = {"message": response.text[:500]}
    return ApiAnswer(response.status_code, answer if isinstance(answer, dict) else {})
