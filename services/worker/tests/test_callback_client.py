"""The callback client: Bearer token, retries of network errors / 5xx / 429 with jittered
backoff and a stop, typed errors carrying the JSON ``error`` code."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import TypeVar

import httpx
import pytest
from services.worker.tests.worker_test_support import (
    FakeCallbackApi,
    Scripted,
    error_body,
    free_port,
    make_envelope,
    now,
)

from arco_envelope import (
    HeartbeatRequest,
    TaskCompletedRequest,
    TaskStartedRequest,
    WorkerDispatchEnvelope,
    WorkerOutcome,
)
from arco_worker import CallbackClient, CallbackRejectedError, CallbackUnavailableError, RetryPolicy
from arco_worker.transport import AiohttpTransport, HttpxTransport, Transport

T = TypeVar("T")


class FakeTime:
    """A clock that only moves when the client sleeps: retries take no real time."""

    def __init__(self) -> None:
        self.current = now()
        self.sleeps: list[float] = []

    def clock(self) -> datetime:
        return self.current

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.current += timedelta(seconds=seconds)


@pytest.fixture(params=["aiohttp", "httpx"])
def transport(request: pytest.FixtureRequest) -> str:
    """Every test runs through the service's transport and through an httpx client."""
    kind: str = request.param
    return kind


def _open(transport: str) -> Transport:
    if transport == "aiohttp":
        return AiohttpTransport(timeout_secs=5)
    return HttpxTransport(httpx.AsyncClient(timeout=5))


def _call(
    api_url: str,
    use: Callable[[CallbackClient, WorkerDispatchEnvelope], Awaitable[T]],
    *,
    transport: str,
    time: FakeTime | None = None,
    retry: RetryPolicy | None = None,
) -> T:
    envelope = WorkerDispatchEnvelope.from_dict(make_envelope(api_url))
    fake = time or FakeTime()

    async def main() -> T:
        http = _open(transport)
        try:
            client = CallbackClient(
                http,
                retry=retry or RetryPolicy(base_delay_secs=1, max_delay_secs=8, max_attempts=4),
                sleep=fake.sleep,
                clock=fake.clock,
                rng=lambda: 0.5,
            )
            return await use(client, envelope)
        finally:
            await http.aclose()

    return asyncio.run(main())


def _started(envelope: WorkerDispatchEnvelope) -> TaskStartedRequest:
    return TaskStartedRequest(attempt=1, attempt_id=envelope.attempt_id, worker_id="w")


async def _send_started(client: CallbackClient, envelope: WorkerDispatchEnvelope) -> None:
    await client.started(envelope, _started(envelope), token="tok")


def test_sends_the_bearer_token_and_camel_case_json(api: FakeCallbackApi, transport: str) -> None:
    _call(api.base_url, _send_started, transport=transport)
    (request,) = api.requests("started")
    assert request.authorization == "Bearer tok"
    assert request.content_type == "application/json"
    assert set(request.body) == {"attempt", "attemptId", "workerId"}


def test_5xx_is_retried_with_jittered_exponential_backoff(
    api: FakeCallbackApi, transport: str
) -> None:
    api.script("started", Scripted(500), Scripted(502), Scripted(503))
    time = FakeTime()
    _call(api.base_url, _send_started, time=time, transport=transport)
    assert len(api.requests("started")) == 4
    # rng=0.5: three quarters of min(8, 1 * 2**n)
    assert time.sleeps == [0.75, 1.5, 3.0]


def test_retries_stop_after_max_attempts_with_a_typed_error(
    api: FakeCallbackApi, transport: str
) -> None:
    api.set_default("started", Scripted(503, {"error": "unavailable", "message": "down"}))
    with pytest.raises(CallbackUnavailableError) as caught:
        _call(api.base_url, _send_started, transport=transport)
    assert caught.value.status == 503
    assert caught.value.code == "unavailable"
    assert caught.value.attempts == 4
    assert len(api.requests("started")) == 4


def test_network_errors_are_retried_then_raised(transport: str) -> None:
    time = FakeTime()
    with pytest.raises(CallbackUnavailableError) as caught:
        _call(f"http://127.0.0.1:{free_port()}", _send_started, time=time, transport=transport)
    assert caught.value.status is None
    # httpx: ConnectError, aiohttp: ClientConnectorError
    assert "Connect" in caught.value.message
    assert len(time.sleeps) == 3


def test_retry_after_is_honoured_up_to_the_cap(api: FakeCallbackApi, transport: str) -> None:
    api.script(
        "started",
        Scripted(429, {"code": "RATE_LIMITED"}, headers={"Retry-After": "5"}),
        Scripted(503, headers={"Retry-After": "60"}),
    )
    time = FakeTime()
    _call(api.base_url, _send_started, time=time, transport=transport)
    assert time.sleeps == [5.0, 8.0]


@pytest.mark.parametrize(
    ("status", "code", "over", "token"),
    [
        (409, "task_already_terminal", True, False),
        (409, "attempt_already_completed", True, False),
        (409, "attempt_mismatch", True, False),
        (409, "attempt_id_mismatch", True, False),
        (409, "something_else", False, False),
        (410, "task_expired", True, False),
        (401, "invalid_token", False, True),
        (404, "task_not_found", False, False),
        (400, "invalid_argument", False, False),
    ],
)
def test_4xx_is_final_and_carries_the_json_error_code(
    api: FakeCallbackApi, transport: str, status: int, code: str, over: bool, token: bool
) -> None:
    api.script("started", Scripted(status, error_body(code, "free text")))
    with pytest.raises(CallbackRejectedError) as caught:
        _call(api.base_url, _send_started, transport=transport)
    assert caught.value.status == status
    assert caught.value.code == code
    assert caught.value.message == "free text"
    assert caught.value.attempt_over is over
    assert caught.value.token_rejected is token
    assert len(api.requests("started")) == 1


def test_error_without_json_body_has_no_code(api: FakeCallbackApi, transport: str) -> None:
    api.script("started", Scripted(422))
    with pytest.raises(CallbackRejectedError) as caught:
        _call(api.base_url, _send_started, transport=transport)
    assert caught.value.code is None


def test_completed_is_retried_until_give_up_at(api: FakeCallbackApi, transport: str) -> None:
    api.set_default("completed", Scripted(500))
    time = FakeTime()
    give_up_at = time.current + timedelta(seconds=30)

    async def send(client: CallbackClient, envelope: WorkerDispatchEnvelope) -> None:
        body = TaskCompletedRequest(
            attempt=1, attempt_id="a", worker_id="w", outcome=WorkerOutcome.SUCCEEDED
        )
        await client.completed(envelope, body, token="tok", give_up_at=give_up_at)

    with pytest.raises(CallbackUnavailableError):
        _call(api.base_url, send, time=time, transport=transport)
    # Far more than max_attempts, and never past the deadline.
    assert len(api.requests("completed")) > 4
    assert time.current <= give_up_at
    assert max(time.sleeps) == 8 * 0.75


def test_heartbeat_response_is_parsed(api: FakeCallbackApi, transport: str) -> None:
    later = (now() + timedelta(hours=1)).isoformat()
    api.script(
        "heartbeat",
        Scripted(
            body={
                "acknowledged": True,
                "shouldCancel": True,
                "taskToken": "t2",
                "tokenExpiresAt": later,
            }
        ),
        Scripted(204),
    )

    async def beat(client: CallbackClient, envelope: WorkerDispatchEnvelope) -> list[object]:
        body = HeartbeatRequest(attempt=1, attempt_id="a", worker_id="w", progress_pct=5)
        first = await client.heartbeat(envelope, body, token="tok")
        second = await client.heartbeat(envelope, body, token="tok")
        return [first.should_cancel, first.task_token, second.should_cancel, second.acknowledged]

    # The first body lacks serverTime: read leniently rather than losing shouldCancel.
    assert _call(api.base_url, beat, transport=transport) == [True, "t2", False, True]


def test_retry_policy_delay_bounds() -> None:
    policy = RetryPolicy(base_delay_secs=1, max_delay_secs=4)
    assert policy.delay(0, lambda: 0.0, None) == 0.5
    assert policy.delay(0, lambda: 1.0, None) == 1.0
    assert policy.delay(5, lambda: 1.0, None) == 4.0
    assert policy.delay(0, lambda: 0.0, 3.0) == 3.0
    assert policy.delay(0, lambda: 0.0, 100.0) == 4.0
