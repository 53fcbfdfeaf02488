"""The suite's dispatcher side: builds real envelopes with real task tokens, delivers them to
the worker under test as a queue would, and gives scenarios their waiting helpers."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from arco_envelope import (
    DISPATCH_SECRET_HEADER,
    attempt_id,
    callback_task_id,
    dispatch_id,
    format_timestamp,
)
from arco_envelope.tokens import TaskTokenConfig
from arco_stack.conformance.callback_api import CallbackApi, TrackedAttempt

# The smallest heartbeatTimeoutSec a worker must accept: heartbeats every 30 / 5 = 6 s, so
# the scenarios that need heartbeats stay short.
HEARTBEAT_TIMEOUT_SECS = 30
HEARTBEAT_INTERVAL_SECS = 6.0
# Lateness allowed on anything timed (scheduling on a loaded machine, HTTP round trips).
DEFAULT_TOLERANCE_SECS = 2.0
# How long the suite watches for callbacks that must not come.
QUIET_SECS = 2.0
DELIVERY_TIMEOUT_SECS = 60.0
REDELIVERY_DEADLINE_SECS = 45.0
MAX_RETRY_AFTER_SECS = 5.0


@dataclass(frozen=True)
class SuiteConfig:
    """What the suite needs to know about the worker under test."""

    worker_url: str
    dispatch_secret: str
    tenant: str
    workspace: str
    # True when the worker was configured with the suite's callback API URL, so the
    # callbackBaseUrl pinning scenario can run.
    pinned: bool = False
    only: tuple[str, ...] = ()
    tolerance_secs: float = DEFAULT_TOLERANCE_SECS

    @property
    def dispatch_url(self) -> str:
        """``--worker-url`` may be the worker's root or its ``/dispatch`` URL."""
        url = self.worker_url.rstrip("/")
        return url if url.endswith("/dispatch") else f"{url}/dispatch"


@dataclass
class Delivery:
    """One ``POST /dispatch`` and its answer (``status`` None: no answer at all)."""

    sent_at: float
    answered_at: float
    status: int | None
    body: str
    retry_after: str | None = None

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    def describe(self) -> str:
        if self.status is None:
            return f"no answer ({self.body})"
        text = " ".join(self.body.split())
        return f"{self.status} {text[:160]}" if text else str(self.status)

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


@dataclass
class Suite:
    """The context every scenario runs in."""

    config: SuiteConfig
    api: CallbackApi
    callback_base_url: str
    http: httpx.AsyncClient
    clock: Callable[[], float] = time.monotonic
    _background: set[asyncio.Task[Any]] = field(default_factory=set)

    @property
    def tolerance(self) -> float:
        """Seconds of lateness allowed on anything timed."""
        return self.config.tolerance_secs

    def attempt(self, scenario: str, task_key: str) -> TrackedAttempt:
        """A new attempt (its own run) tracked by the callback API."""
        run_id = f"conformance-{scenario}-{secrets.token_hex(4)}"
        dispatch = dispatch_id(run_id, task_key, 1)
        tracked = TrackedAttempt(
            run_id=run_id,
            task_key=task_key,
            task_id=callback_task_id(run_id, task_key),
            attempt=1,
            attempt_id=attempt_id(dispatch),
            tokens=[],
        )
        self.api.track(tracked)
        return tracked

    def envelope(
        self,
        attempt: TrackedAttempt,
        *,
        payload: Any = None,
        token_age: timedelta = timedelta(0),
        **overrides: Any,
    ) -> dict[str, Any]:
        """The canonical camelCase envelope of ``attempt``; ``overrides`` replace fields."""
        token, expires = self.api.mint(attempt, now=datetime.now(UTC) - token_age)
        attempt.tokens.append(token)
        envelope: dict[str, Any] = {
            "tenantId": self.config.tenant,
            "workspaceId": self.config.workspace,
            "taskId": attempt.task_id,
            "taskKey": attempt.task_key,
            "runId": attempt.run_id,
            "attempt": attempt.attempt,
            "attemptId": attempt.attempt_id,
            "dispatchId": dispatch_id(attempt.run_id, attempt.task_key, attempt.attempt),
            "heartbeatTimeoutSec": HEARTBEAT_TIMEOUT_SECS,
            "workerQueue": "default-queue",
            "callbackBaseUrl": self.callback_base_url,
            "taskToken": token,
            "tokenExpiresAt": format_timestamp(expires),
            "payload": payload if payload is not None else {},
        }
        envelope.update(overrides)
        return envelope

    def secret_headers(self) -> dict[str, str]:
        return {DISPATCH_SECRET_HEADER: self.config.dispatch_secret}

    async def send(self, body: Any, headers: dict[str, str] | None = None) -> Delivery:
        """One ``POST /dispatch`` with the dispatch secret unless ``headers`` are given."""
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        chosen = self.secret_headers() if headers is None else headers
        sent = {"Content-Type": "application/json", **chosen}
        started = self.clock()
        try:
            response = await self.http.post(
                self.config.dispatch_url,
                content=content,
                headers=sent,
                timeout=DELIVERY_TIMEOUT_SECS,
            )
        except httpx.HTTPError as exc:
            return Delivery(started, self.clock(), None, f"{type(exc).__name__}: {exc}")
        return Delivery(
            started,
            self.clock(),
            response.status_code,
            response.text,
            response.headers.get("retry-after"),
        )

    async def deliver(self, body: Any, headers: dict[str, str] | None = None) -> list[Delivery]:
        """Deliver as a queue does: redeliver after 429 and 5xx (waiting ``Retry-After``,
        at most 5 s) until any other answer or the deadline."""
        deliveries: list[Delivery] = []
        deadline = self.clock() + REDELIVERY_DEADLINE_SECS
        while True:
            delivery = await self.send(body, headers)
            deliveries.append(delivery)
            transient = delivery.status is None or delivery.status == 429 or delivery.status >= 500
            if not transient or self.clock() >= deadline:
                return deliveries
            await asyncio.sleep(_retry_after(delivery.retry_after))

    def deliver_in_background(
        self, body: Any, headers: dict[str, str] | None = None
    ) -> asyncio.Task[list[Delivery]]:
        """:meth:`deliver` without waiting: a worker may answer only when the task ends."""
        task = asyncio.ensure_future(self.deliver(body, headers))
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Wait until ``predicate`` (of the recorded calls) holds (True) or ``timeout`` seconds
        pass (False); it is re-checked after every call the API records."""
        async with self.api.changed:
            try:
                await asyncio.wait_for(self.api.changed.wait_for(predicate), timeout)
            except TimeoutError:
                return predicate()
        return True

    async def wait_calls(
        self, attempt: TrackedAttempt, phase: str, count: int = 1, timeout: float = 10.0
    ) -> bool:
        """Wait until ``attempt`` has seen ``count`` calls of ``phase``."""
        return await self.wait_for(lambda: attempt.count(phase) >= count, timeout)

    async def outcome_of(
        self, delivery: asyncio.Task[list[Delivery]], timeout: float = 10.0
    ) -> list[Delivery] | None:
        """The deliveries of a background delivery, or None if still unanswered."""
        done, _ = await asyncio.wait({delivery}, timeout=timeout)
        return delivery.result() if done else None

    async def aclose(self) -> None:
        """Stop waiting for answers nobody needs any more."""
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)


def _retry_after(value: str | None) -> float:
    try:
        seconds = float(value) if value is not None else 1.0
    except ValueError:
        seconds = 1.0
    return min(MAX_RETRY_AFTER_SECS, max(0.2, seconds))


def new_token_config() -> TaskTokenConfig:
    """Signing settings of one suite run: a fresh random secret."""
    return TaskTokenConfig(
        secret=secrets.token_urlsafe(32),
        issuer="arco-conformance",
        audience="arco-worker-callback",
        ttl_seconds=3600,
    )
