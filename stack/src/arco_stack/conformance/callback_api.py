"""The suite's callback API: the worker under test calls it back as it would call arco's API.

Every attempt the suite dispatches is registered here with a script of answers per phase; the
API records each call (when, what, with which token) and answers the next scripted answer, or
the normal 200 body. Requests are checked as the real API checks them: ``Bearer`` task token
(signature, expiry, ``taskId`` and attempt scope), JSON content type and the camelCase body.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ValidationError

from arco_envelope import (
    HeartbeatRequest,
    TaskCompletedRequest,
    TaskStartedRequest,
    format_timestamp,
)
from arco_envelope.tokens import (
    InvalidTaskToken,
    TaskTokenConfig,
    mint_task_token,
    verify_task_token,
)
from arco_stack.conformance.http_server import Request, Response

CALLBACK_PATH = re.compile(r"^(?P<prefix>.*)/api/v1/tasks/(?P<task>[^/]+)/(?P<phase>[a-z]+)$")
LOGS_PATH = re.compile(r"/api/v1/workspaces/(?P<workspace>[^/]+)/runs/(?P<run>[^/]+)/logs$")
BODY_MODELS: dict[str, type[BaseModel]] = {
    "started": TaskStartedRequest,
    "heartbeat": HeartbeatRequest,
    "completed": TaskCompletedRequest,
}


@dataclass(frozen=True)
class Answer:
    """One scripted answer. A non-2xx status carries the JSON ``{"error", "message"}`` body
    of section 3; ``reset`` drops the connection without answering."""

    status: int = 200
    error: str | None = None
    message: str | None = None
    state: str | None = None
    retry_after: int | None = None
    reset: bool = False
    should_cancel: bool = False
    refresh_token: bool = False

    def describe(self) -> str:
        if self.reset:
            return "connection reset"
        text = str(self.status)
        if self.error is not None:
            text += f" {self.error}"
        if self.message is not None:
            text += f" {self.message!r}"
        if self.should_cancel:
            text += " shouldCancel"
        if self.refresh_token:
            text += " +taskToken"
        return text


@dataclass
class Call:
    """One request the worker sent about an attempt, and what it got back."""

    phase: str
    at: float
    path: str
    headers: dict[str, str]
    body: bytes
    token_index: int | None  # which of the attempt's tokens it carried; None: another one
    answered: str
    problem: str | None = None  # why the API refused the request itself

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None


@dataclass
class TrackedAttempt:
    """An attempt the suite dispatched: its identity, tokens, script and calls."""

    run_id: str
    task_key: str
    task_id: str
    attempt: int
    attempt_id: str
    tokens: list[str]
    script: dict[str, deque[Answer]] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)

    def on(self, phase: str, *answers: Answer) -> TrackedAttempt:
        """Answer the next calls of ``phase`` with ``answers``, in order (then the default)."""
        self.script.setdefault(phase, deque()).extend(answers)
        return self

    def of(self, phase: str) -> list[Call]:
        return [call for call in self.calls if call.phase == phase]

    def count(self, phase: str) -> int:
        return len(self.of(phase))

    @property
    def started(self) -> bool:
        """Whether a /started of this attempt was acknowledged."""
        return any(call.answered.startswith("2") for call in self.of("started"))

    def first_answered(self, phase: str, answer: Answer) -> Call | None:
        """The first call of ``phase`` that got ``answer``."""
        described = answer.describe()
        return next((c for c in self.of(phase) if c.answered == described), None)

    def callbacks(self) -> list[Call]:
        """The calls to /started, /heartbeat and /completed (not log uploads)."""
        return [call for call in self.calls if call.phase in BODY_MODELS]

    def phases(self) -> list[str]:
        return [call.phase for call in self.callbacks()]

    def summary(self) -> str:
        """The callbacks in order, e.g. ``started 200, heartbeat 200, completed 200``."""
        if not self.calls:
            return "no callbacks"
        return ", ".join(f"{call.phase} -> {call.answered}" for call in self.calls)


class CallbackApi:
    """Routes callbacks to their tracked attempt and answers them (see the module docstring)."""

    def __init__(
        self, tokens: TaskTokenConfig, tenant: str, workspace: str, clock: Callable[[], float]
    ) -> None:
        self.tokens = tokens
        self._tenant = tenant
        self._workspace = workspace
        self._clock = clock  # monotonic seconds
        self.changed = asyncio.Condition()  # notified after every recorded call
        self._by_task: dict[str, TrackedAttempt] = {}
        self._by_run: dict[str, TrackedAttempt] = {}
        self.strays: list[str] = []

    def track(self, attempt: TrackedAttempt) -> None:
        self._by_task[attempt.task_id] = attempt
        self._by_run[attempt.run_id] = attempt

    def attempts(self) -> list[TrackedAttempt]:
        return list(self._by_task.values())

    def mint(self, attempt: TrackedAttempt, now: datetime | None = None) -> tuple[str, datetime]:
        """A new scoped task token for ``attempt``."""
        return mint_task_token(
            self.tokens,
            task_id=attempt.task_id,
            tenant_id=self._tenant,
            workspace_id=self._workspace,
            run_id=attempt.run_id,
            attempt=attempt.attempt,
            attempt_id=attempt.attempt_id,
            now=now,
        )

    def _fresh_token(self, attempt: TrackedAttempt) -> tuple[str, datetime]:
        """A token unlike the attempt's earlier ones: claims have whole seconds, so one minted
        within the envelope's second would be the very same string."""
        moment = datetime.now(UTC)
        while True:
            token, expires = self.mint(attempt, now=moment)
            if token not in attempt.tokens:
                return token, expires
            moment += timedelta(seconds=1)

    async def handle(self, request: Request) -> Response:
        try:
            return self._route(request)
        finally:
            async with self.changed:
                self.changed.notify_all()

    def _route(self, request: Request) -> Response:
        path = request.path.split("?", 1)[0]
        if match := LOGS_PATH.search(path):
            attempt = self._by_run.get(match["run"])
            return self._answer(request, attempt, "logs")
        match = CALLBACK_PATH.match(path)
        if match is None or match["phase"] not in BODY_MODELS:
            self.strays.append(f"{request.method} {request.path}")
            return _error(404, "not_found", f"no route {request.method} {path}")
        return self._answer(request, self._by_task.get(match["task"]), match["phase"])

    def _answer(self, request: Request, attempt: TrackedAttempt | None, phase: str) -> Response:
        if attempt is None:
            self.strays.append(f"{request.method} {request.path}")
            return _error(404, "task_not_found", "task_not_found: no such task")
        call = Call(
            phase=phase,
            at=self._clock(),
            path=request.path,
            headers=request.headers,
            body=request.body,
            token_index=None,
            answered="",
        )
        attempt.calls.append(call)
        refused = self._refusal(request, attempt, call)
        if refused is not None:
            call.answered = f"{refused.status} ({call.problem})"
            return refused
        queued = attempt.script.get(phase)
        # Heartbeat scripts start once /started was acknowledged: a heartbeat sent too early is
        # another rule's business (started-first), and must not use up this scenario's answer.
        scripted = bool(queued) and (phase != "heartbeat" or attempt.started)
        answer = queued.popleft() if scripted and queued else Answer()
        call.answered = answer.describe()
        return self._respond(answer, attempt, phase, call)

    def _refusal(self, request: Request, attempt: TrackedAttempt, call: Call) -> Response | None:
        if request.method != "POST":
            call.problem = f"method {request.method}"
            return _error(405, "method_not_allowed", "only POST")
        authorization = request.headers.get("authorization", "")
        token = authorization.removeprefix("Bearer ") if authorization.startswith("Bearer ") else ""
        if token in attempt.tokens:
            call.token_index = attempt.tokens.index(token)
        if call.phase not in BODY_MODELS:
            return None  # a log upload: the run API's, recorded as information only
        try:
            claims = verify_task_token(self.tokens, token)
        except InvalidTaskToken as exc:
            call.problem = f"token refused: {exc.reason}"
            return _error(401, "invalid_token", f"invalid_token: {exc.reason}")
        if claims.task_id != attempt.task_id or claims.attempt != attempt.attempt:
            call.problem = "token refused: task_id_mismatch"
            return _error(401, "invalid_token", "invalid_token: task_id_mismatch")
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            call.problem = f"content-type {content_type or 'missing'}"
            return _error(415, "unsupported_media_type", "expected application/json")
        model = BODY_MODELS.get(call.phase)
        if model is None:
            return None
        try:
            body = model.model_validate_json(request.body, by_name=False, by_alias=True)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "body"
            call.problem = f"body invalid: {where}: {first['msg']}"
            return _error(422, "invalid_request", f"invalid_request: {where}: {first['msg']}")
        if getattr(body, "attempt_id", None) != attempt.attempt_id:
            call.problem = "attemptId mismatch"
            return _error(409, "attempt_id_mismatch", "attempt_id_mismatch")
        return None

    def _respond(self, answer: Answer, attempt: TrackedAttempt, phase: str, call: Call) -> Response:
        if answer.reset:
            return Response(reset=True)
        if answer.status >= 300:
            headers = {} if answer.retry_after is None else {"retry-after": str(answer.retry_after)}
            return _error(
                answer.status,
                answer.error or "unavailable",
                answer.message or f"{answer.error}",
                state=answer.state,
                headers=headers,
            )
        now = format_timestamp(datetime.now(UTC))
        body: dict[str, Any] = {"acknowledged": True, "serverTime": now}
        if phase == "heartbeat":
            body["shouldCancel"] = answer.should_cancel
            if answer.should_cancel:
                body["cancelReason"] = "user_requested"
            if answer.refresh_token:
                token, expires = self._fresh_token(attempt)
                attempt.tokens.append(token)
                body["taskToken"] = token
                body["tokenExpiresAt"] = format_timestamp(expires)
        elif phase == "completed":
            body["finalState"] = (call.json() or {}).get("outcome")
        elif phase == "logs":
            return Response(201, json.dumps({"path": f"logs/{attempt.run_id}"}).encode())
        return Response(answer.status, json.dumps(body).encode())


def _error(
    status: int,
    code: str,
    message: str,
    *,
    state: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    body: dict[str, Any] = {"error": code, "message": message}
    if state is not None:
        body["state"] = state
    return Response(status, json.dumps(body).encode(), headers or {})
