"""Graceful shutdown: stop accepting (503), let running handlers finish within the grace,
then report the rest as FAILED / INFRASTRUCTURE, retryable."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import threading
from pathlib import Path
from typing import Any

import httpx
from services.worker.tests.worker_test_support import (
    FAST_OPTIONS,
    SECRET,
    FakeCallbackApi,
    console_script,
    free_port,
    make_envelope,
    make_settings,
    worker_env,
)

from arco_envelope import DISPATCH_SECRET_HEADER, WorkerDispatchEnvelope
from arco_testkit.clock import wait_until
from arco_worker import TaskContext, Worker
from arco_worker.service import WorkerService


def _completed(api: FakeCallbackApi, envelope: dict[str, Any]) -> list[dict[str, Any]]:
    return [r.body for r in api.requests("completed", envelope["taskId"])]


def test_shutdown_lets_handlers_finish_then_fails_the_rest(api: FakeCallbackApi) -> None:
    worker = Worker()
    stuck_signal: list[str | None] = []
    release = threading.Event()

    @worker.task("test.quick")
    async def quick(ctx: TaskContext) -> dict[str, int]:
        await asyncio.sleep(0.05)
        return {"rowCount": 1}

    @worker.task("test.stuck")
    def stuck(ctx: TaskContext) -> None:
        ctx.cancellation.wait(10)
        stuck_signal.append(ctx.cancellation.reason)
        release.wait(10)

    quick_env = make_envelope(api.base_url, "test.quick")
    stuck_env = make_envelope(api.base_url, "test.stuck")
    late_env = make_envelope(api.base_url, "test.quick")

    async def scenario() -> int:
        settings = make_settings(api.base_url, ARCO_WORKER_SHUTDOWN_GRACE_SECS="0.3")
        service = WorkerService(settings, worker, options=FAST_OPTIONS)
        await service.start()
        try:
            for envelope in (quick_env, stuck_env):
                admission = await service.dispatch(WorkerDispatchEnvelope.from_dict(envelope))
                assert admission.status == 202
            shutdown = asyncio.ensure_future(service.shutdown())
            await asyncio.sleep(0)
            late = await service.dispatch(WorkerDispatchEnvelope.from_dict(late_env))
            await shutdown
            return late.status
        finally:
            release.set()
            await service.aclose()

    assert asyncio.run(scenario()) == 503
    assert [body["outcome"] for body in _completed(api, quick_env)] == ["SUCCEEDED"]
    (failed,) = _completed(api, stuck_env)
    assert failed["outcome"] == "FAILED"
    assert failed["error"]["category"] == "INFRASTRUCTURE"
    assert failed["error"]["retryable"] is True
    assert "metrics" in failed
    assert stuck_signal == ["worker_shutdown"]
    assert api.requests(task_id=late_env["taskId"]) == []


def test_sigterm_with_a_running_task_reports_failed_infrastructure(
    api: FakeCallbackApi, tmp_path: Path
) -> None:
    port = free_port()
    env = {
        **os.environ,
        **worker_env(
            api.base_url,
            ARCO_HTTP_PORT=str(port),
            ARCO_WORKER_SAMPLE_TASKS="true",
            ARCO_WORKER_SHUTDOWN_GRACE_SECS="1.5",
        ),
    }
    log_path = tmp_path / "worker.log"
    url = f"http://127.0.0.1:{port}"
    long_env = make_envelope(api.base_url, "demo.long", payload={"seconds": 60})
    sleep_env = make_envelope(api.base_url, "demo.sleep", payload={"seconds": 0.5})
    headers = {DISPATCH_SECRET_HEADER: SECRET}
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(  # noqa: S603 - our own console script
            console_script(), env=env, stdout=log_file, stderr=subprocess.STDOUT
        )
        try:
            with httpx.Client(base_url=url, timeout=5) as http:

                def healthy() -> bool:
                    try:
                        return http.get("/health").status_code == 200
                    except httpx.TransportError:
                        return False

                wait_until(healthy, timeout=30, what="the worker to serve")
                assert http.post("/dispatch", json=long_env, headers=headers).status_code == 202
                assert http.post("/dispatch", json=sleep_env, headers=headers).status_code == 202
                process.send_signal(signal.SIGTERM)

                def refusing() -> bool:
                    fresh = make_envelope(api.base_url, "demo.sleep")
                    return http.post("/dispatch", json=fresh, headers=headers).status_code == 503

                wait_until(refusing, what="503 while draining")
            assert process.wait(timeout=30) == 0
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert [body["outcome"] for body in _completed(api, sleep_env)] == ["SUCCEEDED"]
    (failed,) = _completed(api, long_env)
    assert failed["outcome"] == "FAILED"
    assert failed["error"]["category"] == "INFRASTRUCTURE"
    assert failed["error"]["retryable"] is True
    # The service logs JSON lines.
    events = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    assert "shutdown_signal" in {event.get("event") for event in events}
