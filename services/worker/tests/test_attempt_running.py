"""While a handler runs: heartbeats with progress, cancellation through ``shouldCancel``, the
attempt ending server-side (409/410/401 on a heartbeat), transient failures and token refresh."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from services.worker.tests.worker_test_support import (
    FakeCallbackApi,
    Scripted,
    error_body,
    make_envelope,
    now,
    running_worker,
    stamp,
)

from arco_envelope import WorkerDispatchEnvelope
from arco_testkit.clock import wait_until
from arco_worker import TaskContext, Worker
from arco_worker.execution import Timings, heartbeat_interval

CANCEL = {"acknowledged": True, "shouldCancel": True, "cancelReason": "user_requested"}


def _heartbeat_ok(**extra: object) -> Scripted:
    return Scripted(
        body={"acknowledged": True, "shouldCancel": False, "serverTime": stamp(now()), **extra}
    )


def _cancel() -> Scripted:
    return Scripted(body={**CANCEL, "serverTime": stamp(now())})


def test_heartbeats_carry_the_latest_progress_and_message(api: FakeCallbackApi) -> None:
    worker = Worker()

    @worker.task("test.progress")
    async def progress(ctx: TaskContext) -> None:
        ctx.report_progress(10, "loading", phase="load")
        while len(api.requests("heartbeat", ctx.task_id)) < 2:
            await ctx.sleep(0.01)
        ctx.report_progress(70, "writing", phase="write")
        while len(api.requests("heartbeat", ctx.task_id)) < 5:
            await ctx.sleep(0.01)

    envelope = make_envelope(api.base_url, "test.progress")
    with running_worker(worker, api) as running:
        assert running.dispatch(envelope).status_code == 202
        running.wait_idle()
    beats = [r.body for r in api.requests("heartbeat")]
    assert beats[0]["progressPct"] == 10
    assert beats[0]["message"] == "loading"
    assert beats[-1]["progressPct"] == 70
    assert beats[-1]["message"] == "writing"
    for beat in beats:
        assert beat["attempt"] == 1
        assert beat["attemptId"] == envelope["attemptId"]
        assert beat["workerId"] == "worker-test"
        assert "heartbeatAt" in beat
    assert {r.authorization for r in api.requests()} == {"Bearer token-1"}
    assert api.requests("completed")[0].body["outcome"] == "SUCCEEDED"


@pytest.mark.parametrize(
    ("timeout", "expected"), [(None, 60.0), (300, 60.0), (30, 6.0), (3600, 60.0), (100, 20.0)]
)
def test_heartbeat_interval_follows_the_envelope(timeout: int | None, expected: float) -> None:
    envelope = WorkerDispatchEnvelope.from_dict(
        make_envelope("http://api", heartbeatTimeoutSec=timeout)
    )
    assert heartbeat_interval(envelope, Timings()) == expected
    assert heartbeat_interval(envelope, Timings(heartbeat_interval_secs=0.5)) == 0.5


def test_should_cancel_stops_the_handler_and_reports_cancelled(api: FakeCallbackApi) -> None:
    worker = Worker()
    observed: list[str | None] = []

    @worker.task("test.cancellable")
    async def cancellable(ctx: TaskContext) -> None:
        ctx.report_progress(40, "halfway", phase="transform")
        await ctx.cancellation.wait_async(10)
        observed.append(ctx.cancellation.reason)
        ctx.raise_if_cancelled()

    api.script("heartbeat", _heartbeat_ok(), _cancel())
    with running_worker(worker, api) as running:
        assert running.dispatch(make_envelope(api.base_url, "test.cancellable")).status_code == 202
        running.wait_idle()
    assert observed == ["user_requested"]
    completed = api.requests("completed")
    assert len(completed) == 1
    body = completed[0].body
    assert body["outcome"] == "CANCELLED"
    assert body["cancelledDuringPhase"] == "transform"
    assert body["partialProgress"] == {"progressPct": 40, "message": "halfway"}
    assert body["error"]["category"] == "CANCELLED"
    assert body["metrics"]["cpuTimeMs"] >= 0


def test_sync_handler_that_returns_after_cancel_is_reported_cancelled(
    api: FakeCallbackApi,
) -> None:
    worker = Worker()

    @worker.task("test.sync_cancellable")
    def sync_cancellable(ctx: TaskContext) -> dict[str, int]:
        ctx.cancellation.wait(10)
        return {"rowCount": 1}  # stops early, without raising

    api.set_default("heartbeat", _cancel())
    with running_worker(worker, api) as running:
        running.dispatch(make_envelope(api.base_url, "test.sync_cancellable"))
        running.wait_idle()
    body = api.requests("completed")[0].body
    assert body["outcome"] == "CANCELLED"
    assert body["cancelledDuringPhase"] == "running"
    assert body["partialProgress"] == {"progressPct": 0}


def test_handler_ignoring_cancel_is_reported_cancelled_after_the_grace(
    api: FakeCallbackApi,
) -> None:
    worker = Worker()
    release = threading.Event()

    @worker.task("test.stubborn")
    def stubborn(ctx: TaskContext) -> None:
        release.wait(10)  # never looks at the cancellation signal

    api.set_default("heartbeat", _cancel())
    try:
        with running_worker(worker, api, ARCO_WORKER_CANCEL_GRACE_SECS="0.1") as running:
            running.dispatch(make_envelope(api.base_url, "test.stubborn"))
            wait_until(lambda: len(api.requests("completed")) == 1)
            assert not release.is_set()  # reported while the handler still runs
            running.wait_idle()
    finally:
        release.set()
    assert api.requests("completed")[0].body["outcome"] == "CANCELLED"


def test_should_cancel_after_the_handler_finished_keeps_its_result(
    api: FakeCallbackApi,
) -> None:
    worker = Worker()
    finished = threading.Event()
    hold = threading.Event()

    @worker.task("test.quick")
    def quick(ctx: TaskContext) -> dict[str, int]:
        hold.wait(10)
        finished.set()
        return {"rowCount": 5}

    # The heartbeat is answered "cancel" only after the handler has returned.
    api.script("heartbeat", Scripted(body={**CANCEL, "serverTime": stamp(now())}, hold=finished))
    with running_worker(worker, api) as running:
        running.dispatch(make_envelope(api.base_url, "test.quick"))
        wait_until(lambda: len(api.requests("heartbeat")) == 1)
        hold.set()
        running.wait_idle()
    assert api.requests("completed")[0].body["outcome"] == "SUCCEEDED"


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(Scripted(410, {**error_body("task_expired"), "state": "FAILED"}), id="410"),
        pytest.param(Scripted(409, error_body("attempt_mismatch")), id="409"),
        pytest.param(Scripted(401, error_body("invalid_token")), id="401"),
    ],
)
def test_heartbeat_saying_the_attempt_is_over_cancels_the_handler_and_sends_nothing_more(
    api: FakeCallbackApi, answer: Scripted
) -> None:
    worker = Worker()
    cancelled = threading.Event()

    @worker.task("test.long")
    def long(ctx: TaskContext) -> None:
        if ctx.cancellation.wait(10):
            cancelled.set()

    api.script("heartbeat", _heartbeat_ok(), answer)
    with running_worker(worker, api) as running:
        running.dispatch(make_envelope(api.base_url, "test.long"))
        running.wait_idle()
        wait_until(cancelled.is_set, what="the handler's cancellation signal")
    assert [r.phase for r in api.requests()] == ["started", "heartbeat", "heartbeat"]


def test_heartbeat_failures_are_retried_and_never_fail_the_task(api: FakeCallbackApi) -> None:
    worker = Worker()

    @worker.task("test.beats")
    async def beats(ctx: TaskContext) -> dict[str, int]:
        while len(api.requests("heartbeat", ctx.task_id)) < 8:
            await ctx.sleep(0.01)
        return {"rowCount": 1}

    # 3 x 500 exhausts one heartbeat's retries; 404 and 429 are logged and ignored.
    api.script(
        "heartbeat",
        Scripted(500),
        Scripted(500),
        Scripted(500),
        Scripted(503),
        Scripted(404, error_body("task_not_found")),
        Scripted(429, {"code": "RATE_LIMITED", "message": "slow down"}),
    )
    with running_worker(worker, api) as running:
        running.dispatch(make_envelope(api.base_url, "test.beats"))
        running.wait_idle()
    assert api.requests("completed")[0].body["outcome"] == "SUCCEEDED"


def test_empty_heartbeat_body_means_keep_going(api: FakeCallbackApi) -> None:
    worker = Worker()

    @worker.task("test.beats")
    async def beats(ctx: TaskContext) -> None:
        while len(api.requests("heartbeat", ctx.task_id)) < 3:
            await ctx.sleep(0.01)

    api.set_default("heartbeat", Scripted(204))
    with running_worker(worker, api) as running:
        running.dispatch(make_envelope(api.base_url, "test.beats"))
        running.wait_idle()
    assert api.requests("completed")[0].body["outcome"] == "SUCCEEDED"


def test_callback_5xx_then_success(api: FakeCallbackApi) -> None:
    worker = Worker()

    @worker.task("test.beats")
    async def beats(ctx: TaskContext) -> dict[str, int]:
        while len(api.requests("heartbeat", ctx.task_id)) < 3:
            await ctx.sleep(0.01)
        return {"rowCount": 9}

    api.script("heartbeat", Scripted(502), _heartbeat_ok())
    api.script("completed", Scripted(500), Scripted(503), Scripted(502), Scripted(500))
    with running_worker(worker, api) as running:
        running.dispatch(make_envelope(api.base_url, "test.beats"))
        running.wait_idle()
    completed = [r.body for r in api.requests("completed")]
    # /completed is not bounded by max_attempts (3): it is retried until the token expires.
    assert len(completed) == 5
    assert all(body == completed[0] for body in completed)
    assert completed[0]["outcome"] == "SUCCEEDED"
    assert completed[0]["output"] == {"rowCount": 9}


def test_refreshed_token_is_used_by_later_callbacks(api: FakeCallbackApi) -> None:
    worker = Worker()

    @worker.task("test.beats")
    async def beats(ctx: TaskContext) -> None:
        while len(api.requests("heartbeat", ctx.task_id)) < 3:
            await ctx.sleep(0.01)

    later = stamp(now() + timedelta(hours=2))
    api.script("heartbeat", _heartbeat_ok(taskToken="token-2", tokenExpiresAt=later))
    with running_worker(worker, api) as running:
        running.dispatch(make_envelope(api.base_url, "test.beats"))
        running.wait_idle()
    tokens = [(r.phase, r.authorization) for r in api.requests()]
    assert tokens[0] == ("started", "Bearer token-1")
    assert tokens[1] == ("heartbeat", "Bearer token-1")
    assert all(auth == "Bearer token-2" for _, auth in tokens[2:])
    assert tokens[-1][0] == "completed"
