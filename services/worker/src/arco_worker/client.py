"""Typed client for the worker callbacks ``/started``, ``/heartbeat`` and ``/completed``
(arco-contract sections 4 and 5).

Each call authenticates with ``Authorization: Bearer <taskToken>``. Network errors, 5xx and
429 (the API's per-tenant rate limit, which heartbeats can exhaust) are retried with jittered
exponential backoff; any other answer is final and raised as :class:`CallbackRejectedError`
carrying the JSON ``error`` code, which is the only stable part of an error body: the
``message`` text is not (arco-contract section 10, item 7).
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import structlog
from pydantic import ValidationError

from arco_envelope import (
    ATTEMPT_OVER_CODES,
    HeartbeatRequest,
    HeartbeatResponse,
    TaskCompletedRequest,
    TaskStartedRequest,
    WorkerDispatchEnvelope,
    format_timestamp,
)
from arco_worker.transport import Reply, Transport, TransportError, as_transport

log = structlog.get_logger(__name__)

Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The current time as an aware UTC datetime."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff for transient callback failures.

    The n-th retry waits between half and all of ``min(max_delay, base_delay * 2**n)``
    (equal jitter: always some backoff, never a synchronized thundering herd), or the
    server's ``Retry-After`` when that is longer (capped by ``max_delay``). ``max_attempts``
    bounds ``/started`` and ``/heartbeat``; ``/completed`` is retried until its deadline.
    """

    base_delay_secs: float = 0.25
    max_delay_secs: float = 5.0
    max_attempts: int = 4

    def delay(self, retry: int, rng: Callable[[], float], retry_after: float | None) -> float:
        """Seconds to wait before retry number ``retry`` (0-based)."""
        ceiling = min(self.max_delay_secs, self.base_delay_secs * 2.0**retry)
        delay = ceiling / 2 + rng() * ceiling / 2
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.max_delay_secs))
        return delay


class CallbackError(Exception):
    """A callback that did not succeed. ``status`` is None when no HTTP answer arrived."""

    def __init__(
        self,
        phase: str,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        attempts: int = 1,
    ) -> None:
        super().__init__(f"/{phase} failed: {message}")
        self.phase = phase
        self.message = message
        self.status = status
        self.code = code
        self.attempts = attempts


class CallbackUnavailableError(CallbackError):
    """Network errors, 5xx or 429 persisted through every retry: try again later."""


class CallbackRejectedError(CallbackError):
    """The API answered a final non-2xx status (4xx other than 429)."""

    @property
    def attempt_over(self) -> bool:
        """409 with a finished-attempt code, or 410 (heartbeat on a terminal task): the attempt
        is over and nothing more must be sent for it."""
        if self.status == 410:
            return True
        return self.status == 409 and self.code in ATTEMPT_OVER_CODES

    @property
    def token_rejected(self) -> bool:
        """401: the task token is not valid for this attempt (or expired)."""
        return self.status == 401


def _error_body(response: Reply) -> tuple[str | None, str]:
    """The JSON ``error`` code and a human message from an error response."""
    text = response.text
    try:
        data: Any = json.loads(text) if text.strip() else None
    except ValueError:
        data = None
    if isinstance(data, dict):
        code = data.get("error")
        message = data.get("message")
        return (
            code if isinstance(code, str) else None,
            message if isinstance(message, str) else text[:500],
        )
    return None, text[:500] or response.reason


def _retry_after(response: Reply) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff


def _is_transient(status: int) -> bool:
    return status >= 500 or status == 429


def _parse_heartbeat(body: bytes, now: datetime) -> HeartbeatResponse:
    try:
        return HeartbeatResponse.from_http_body(body, server_time=now)
    except ValidationError:
        pass
    # Be lenient about a 2xx body without serverTime (it is informational only), but never
    # lose a shouldCancel or a refreshed token that the body does carry.
    try:
        data: Any = json.loads(body)
        if isinstance(data, dict):
            return HeartbeatResponse.from_dict({"serverTime": format_timestamp(now), **data})
    except (ValueError, ValidationError):
        pass
    log.warning("heartbeat_response_unreadable", body=body[:200].decode(errors="replace"))
    return HeartbeatResponse(server_time=now)


def logs_url(envelope: WorkerDispatchEnvelope) -> str:
    """``{callbackBaseUrl}/api/v1/workspaces/{workspaceId}/runs/{runId}/logs``."""
    base = envelope.callback_base_url.rstrip("/")
    return f"{base}/api/v1/workspaces/{envelope.workspace_id}/runs/{envelope.run_id}/logs"


class CallbackClient:
    """Sends one attempt's callbacks. One instance serves every attempt; the token is passed
    per call because a heartbeat may refresh it (design D8). ``http`` is a
    :class:`~arco_worker.transport.Transport`, or an ``httpx.AsyncClient`` to send through."""

    def __init__(
        self,
        http: httpx.AsyncClient | Transport,
        *,
        retry: RetryPolicy | None = None,
        sleep: Sleep = asyncio.sleep,
        rng: Callable[[], float] = random.random,
        clock: Clock = utc_now,
    ) -> None:
        self._http = as_transport(http)
        self._retry = retry or RetryPolicy()
        self._sleep = sleep
        self._rng = rng
        self._clock = clock

    async def started(
        self, envelope: WorkerDispatchEnvelope, body: TaskStartedRequest, *, token: str
    ) -> None:
        """POST ``/started``; raises :class:`CallbackError` unless it was acknowledged."""
        await self._post(envelope, "started", body.to_json(), token)

    async def heartbeat(
        self, envelope: WorkerDispatchEnvelope, body: HeartbeatRequest, *, token: str
    ) -> HeartbeatResponse:
        """POST ``/heartbeat``; an empty 2xx body reads as "acknowledged, keep going"."""
        response = await self._post(envelope, "heartbeat", body.to_json(), token)
        return _parse_heartbeat(response.content, self._clock())

    async def completed(
        self,
        envelope: WorkerDispatchEnvelope,
        body: TaskCompletedRequest,
        *,
        token: str,
        give_up_at: datetime,
    ) -> None:
        """POST ``/completed``, retrying transient failures until ``give_up_at`` (normally the
        token's expiry, after which no retry could be accepted)."""
        await self._post(envelope, "completed", body.to_json(), token, give_up_at=give_up_at)

    async def upload_logs(
        self, envelope: WorkerDispatchEnvelope, *, stdout: str, stderr: str, token: str
    ) -> None:
        """POST the attempt's output to the run's log endpoint (arco-orchestration section
        2.5), authenticated with the attempt's own task token (design D16)."""
        content = json.dumps(
            {
                "taskKey": envelope.task_key,
                "attempt": envelope.attempt,
                "stdout": stdout,
                "stderr": stderr,
            }
        )
        await self._post(envelope, "logs", content, token, url=logs_url(envelope))

    async def _post(
        self,
        envelope: WorkerDispatchEnvelope,
        phase: str,
        content: str,
        token: str,
        *,
        give_up_at: datetime | None = None,
        url: str | None = None,
    ) -> Reply:
        url = url or envelope.callback_url(phase)
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        payload = content.encode()
        attempt = 0
        while True:
            attempt += 1
            retry_after: float | None = None
            try:
                response = await self._http.post(url, payload, headers)
            except TransportError as exc:
                failure: CallbackError = CallbackUnavailableError(phase, str(exc), attempts=attempt)
            else:
                if response.is_success:
                    return response
                code, message = _error_body(response)
                if not _is_transient(response.status):
                    raise CallbackRejectedError(
                        phase, message, status=response.status, code=code, attempts=attempt
                    )
                failure = CallbackUnavailableError(
                    phase, message, status=response.status, code=code, attempts=attempt
                )
                retry_after = _retry_after(response)
            delay = self._retry.delay(attempt - 1, self._rng, retry_after)
            if give_up_at is None:
                if attempt >= self._retry.max_attempts:
                    raise failure
            elif (give_up_at - self._clock()).total_seconds() <= delay:
                raise failure
            log.info(
                "callback_retry",
                phase=phase,
                status=failure.status,
                error=failure.message,
                attempt=attempt,
                delay_secs=round(delay, 3),
            )
            await self._sleep(delay)


__all__ = [
    "CallbackClient",
    "CallbackError",
    "CallbackRejectedError",
    "CallbackUnavailableError",
    "RetryPolicy",
    "utc_now",
]
