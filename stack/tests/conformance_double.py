"""A small worker that follows docs/worker-protocol.md, and breaks exactly the rules it is told
to break: the conformance suite's tests run it to show that each scenario can fail.

It is a real HTTP worker (the suite's own little HTTP server, httpx for callbacks) serving the
three conformance tasks. Each entry of ``breaks`` names the scenario whose rule it violates.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from pydantic import ValidationError

from arco_envelope import WorkerDispatchEnvelope
from arco_stack.conformance.http_server import HttpServer, Request, Response

ATTEMPT_OVER_CODES = (
    "task_already_terminal",
    "attempt_already_completed",
    "attempt_mismatch",
    "attempt_id_mismatch",
)
# Building a TLS context reads the CA bundle (~0.1 s of a blocked loop): the doubles, which
# only speak plain HTTP, share one.
_TLS = ssl.create_default_context()
SNAKE_KEYS = ("tenant_id", "workspace_id", "task_key", "run_id", "callback_base_url")


def _json(status: int, body: dict[str, Any], retry_after: int | None = None) -> Response:
    headers = {} if retry_after is None else {"retry-after": str(retry_after)}
    return Response(status, json.dumps(body).encode(), headers)


def _normal(url: str) -> str:
    return url.strip().lower().rstrip("/")


@dataclass
class _Attempt:
    envelope: WorkerDispatchEnvelope
    token: str
    cancel: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class DoubleWorker:
    """The protocol-following worker; ``breaks`` lists the scenarios it must fail."""

    secret: str
    tenant: str
    workspace: str
    api_url: str | None = None
    breaks: frozenset[str] = frozenset()
    first_heartbeat_secs: float = 0.5
    _server: HttpServer | None = None
    _http: httpx.AsyncClient | None = None
    _dispatches: dict[str, str] = field(default_factory=dict)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def start(self) -> str:
        self._http = httpx.AsyncClient(timeout=10.0, verify=_TLS)
        self._server = await HttpServer(self.handle).start()
        return self._server.url

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.close()
        if self._http is not None:
            await self._http.aclose()

    def broken(self, rule: str) -> bool:
        return rule in self.breaks

    # --- POST /dispatch --------------------------------------------------------------------

    def _authorized(self, headers: dict[str, str]) -> bool:
        given = headers.get("x-arco-dispatch-secret")
        if given is None and not self.broken("dispatch-bearer-secret"):
            scheme, _, token = headers.get("authorization", "").partition(" ")
            given = token if scheme.lower() == "bearer" else None
        if given is None:
            return self.broken("dispatch-without-secret")
        return given.strip() == self.secret or self.broken("dispatch-wrong-secret")

    async def handle(self, request: Request) -> Response:
        if request.method != "POST" or request.path != "/dispatch":
            return _json(404, {"error": "not_found"})
        if not self._authorized(request.headers):
            return _json(401, {"error": "unauthorized"})
        try:
            envelope = WorkerDispatchEnvelope.from_json(request.body)
        except ValidationError as exc:
            if self.broken("envelope-invalid"):
                return _json(400, {"error": "bad request"})
            names = [".".join(str(p) for p in e["loc"]) for e in exc.errors()]
            return _json(400, {"error": "invalid_envelope", "fields": names})
        raw = json.loads(request.body)
        if self.broken("envelope-legacy-snake-case") and any(k in raw for k in SNAKE_KEYS):
            return _json(400, {"error": "invalid_envelope", "message": "camelCase only"})
        if problems := self._problems(envelope):
            return _json(400, {"error": "invalid_envelope", "fields": problems})
        state = self._dispatches.get(envelope.dispatch_id)
        if state is not None and not self.broken("dispatch-id-dedupe"):
            if state == "running":
                return _json(503, {"error": "dispatch_in_flight"}, retry_after=1)
            return _json(200, {"status": "duplicate"})
        self._dispatches[envelope.dispatch_id] = "running"
        return await self._admit(_Attempt(envelope, envelope.task_token))

    def _problems(self, envelope: WorkerDispatchEnvelope) -> list[str]:
        problems = []
        if envelope.token_expires_at <= datetime.now(UTC) and not self.broken(
            "envelope-token-expired"
        ):
            problems.append("tokenExpiresAt")
        timeout = envelope.heartbeat_timeout_sec
        if (
            timeout is not None
            and timeout < 30
            and not self.broken("envelope-heartbeat-timeout-floor")
        ):
            problems.append("heartbeatTimeoutSec")
        if envelope.tenant_id != self.tenant and not self.broken("scope-other-tenant"):
            problems.append("tenantId")
        if envelope.workspace_id != self.workspace and not self.broken("scope-other-workspace"):
            problems.append("workspaceId")
        pinned = self.api_url is not None and not self.broken("callback-base-url-pinned")
        if pinned and _normal(envelope.callback_base_url) != _normal(self.api_url or ""):
            problems.append("callbackBaseUrl")
        return problems

    async def _admit(self, attempt: _Attempt) -> Response:
        envelope = attempt.envelope
        if self.broken("started-first"):
            await self._post(attempt, "heartbeat", self._body(attempt))
        status, answer = await self._post(attempt, "started", self._body(attempt))
        refused = status == 401 and not self.broken("started-401-runs-nothing")
        if refused or self._attempt_over(status, answer):
            self._dispatches[envelope.dispatch_id] = "done"
            return _json(200, {"status": "attempt_over"})
        if status not in (200, 401):
            del self._dispatches[envelope.dispatch_id]
            return _json(502, {"error": "started_rejected"})
        task = asyncio.ensure_future(self._run(attempt))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return _json(202, {"status": "accepted"})

    def _attempt_over(self, status: int | None, answer: dict[str, Any]) -> bool:
        if status != 409:
            return False
        if self.broken("conflict-code-from-json"):
            message = str(answer.get("message", ""))
            return any(code in message for code in ATTEMPT_OVER_CODES)
        code = answer.get("error")
        if code == "task_already_terminal" and self.broken("started-409-runs-nothing"):
            return False
        return code in ATTEMPT_OVER_CODES

    # --- running and reporting ------------------------------------------------------------------

    async def _run(self, attempt: _Attempt) -> None:
        envelope = attempt.envelope
        handler = asyncio.ensure_future(self._handler(attempt))
        timeout = envelope.heartbeat_timeout_sec or 300
        interval = 15.0 if self.broken("heartbeat-cadence") else min(60.0, max(5.0, timeout / 5))
        wait = min(self.first_heartbeat_secs, interval)
        try:
            while True:
                await asyncio.wait({handler}, timeout=wait)
                if handler.done():
                    break
                wait = interval
                status, answer = await self._post(attempt, "heartbeat", self._body(attempt))
                if self._stops(status):
                    handler.cancel()
                    return
                if answer.get("taskToken") and not self.broken("token-refresh"):
                    attempt.token = answer["taskToken"]
                if answer.get("shouldCancel") and not self.broken("cancel"):
                    attempt.cancel.set()
            report = handler.result()
            status, _ = await self._post(attempt, "completed", self._body(attempt, **report))
            if status == 200 and self.broken("one-terminal-report"):
                await self._post(attempt, "completed", self._body(attempt, **report))
        finally:
            self._dispatches[envelope.dispatch_id] = "done"

    def _stops(self, status: int | None) -> bool:
        if status == 409:
            return not self.broken("heartbeat-409-stops")
        if status == 410:
            return not self.broken("heartbeat-410-stops")
        return status == 401

    async def _handler(self, attempt: _Attempt) -> dict[str, Any]:
        key = attempt.envelope.task_key
        if key == "conformance.ok":
            outcome = "FAILED" if self.broken("task-succeeds") else "SUCCEEDED"
            return {"outcome": outcome, "output": {"rowCount": 1}}
        if key == "conformance.fail":
            retryable = self.broken("task-fails")
            error = {"category": "USER_CODE", "message": "fails", "retryable": retryable}
            return {"outcome": "FAILED", "error": error}
        payload = attempt.envelope.payload if isinstance(attempt.envelope.payload, dict) else {}
        seconds = float(payload.get("seconds", 1))
        try:
            await asyncio.wait_for(attempt.cancel.wait(), seconds)
        except TimeoutError:
            return {"outcome": "SUCCEEDED"}
        return {"outcome": "CANCELLED", "cancelledDuringPhase": "sleeping"}

    def _body(self, attempt: _Attempt, **fields: Any) -> dict[str, Any]:
        envelope = attempt.envelope
        return {
            "attempt": envelope.attempt,
            "attemptId": envelope.attempt_id,
            "workerId": "double",
            **fields,
        }

    async def _post(
        self, attempt: _Attempt, phase: str, body: dict[str, Any]
    ) -> tuple[int | None, dict[str, Any]]:
        """POST a callback; transient failures are retried with the same body."""
        assert self._http is not None
        base = attempt.envelope.callback_base_url
        if not self.broken("callback-url"):
            base = base.rstrip("/")
        url = f"{base}/api/v1/tasks/{attempt.envelope.task_id}/{phase}"
        content = json.dumps(body)
        for _ in range(20):
            headers = {
                "Authorization": f"Bearer {attempt.token}",
                "Content-Type": "application/json",
            }
            try:
                response = await self._http.post(url, content=content, headers=headers)
            except httpx.TransportError:
                if self.broken("retry-connection-reset"):
                    return None, {}
                await asyncio.sleep(0.2)
                continue
            status = response.status_code
            if (status == 503 and self.broken("retry-503")) or (
                status == 429 and self.broken("retry-429")
            ):
                return status, {}
            if status >= 500 or status == 429:
                await asyncio.sleep(float(response.headers.get("retry-after", "0.2")))
                continue
            try:
                answer = response.json() if response.content else {}
            except ValueError:
                answer = {}
            return status, answer if isinstance(answer, dict) else {}
        return None, {}
