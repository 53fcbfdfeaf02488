"""Graceful shutdown: stop accepting (503), let running handlers finish within the grace,
then report the rest as FAILED / INFRASTRUCTURE, retryable."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
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
from arco_worker.serving import REPEATED_SIGNAL_WINDOW_SECS


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


# --- issue 15 finding 10: one SIGTERM seen twice ---------------------------------------------

REPO_ROOT = Path(__file__).resolve().parents[3]
UV = REPO_ROOT / ".tools" / "bin" / "uv"


class WorkerProcess:
    """``command`` serving the sample tasks, in a process group of its own."""

    def __init__(
        self, command: list[str], api: FakeCallbackApi, log_path: Path, grace: str
    ) -> None:
        self.port = free_port()
        env = {
            **os.environ,
            **worker_env(
                api.base_url,
                ARCO_HTTP_PORT=str(self.port),
                ARCO_WORKER_SAMPLE_TASKS="true",
                ARCO_WORKER_SHUTDOWN_GRACE_SECS=grace,
            ),
        }
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(  # noqa: S603 - our own console script
            command,
            env=env,
            cwd=REPO_ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=5)

        def healthy() -> bool:
            try:
                return self.http.get("/health").status_code == 200
            except httpx.TransportError:
                return False

        wait_until(healthy, timeout=60, what="the worker to serve")

    def start_long_task(self, api: FakeCallbackApi) -> dict[str, Any]:
        envelope = make_envelope(api.base_url, "demo.long", payload={"seconds": 60})
        response = self.http.post(
            "/dispatch", json=envelope, headers={DISPATCH_SECRET_HEADER: SECRET}
        )
        assert response.status_code == 202, response.text
        return envelope

    def signal_group(self, sig: signal.Signals = signal.SIGTERM) -> None:
        os.killpg(self.process.pid, sig)

    def events(self) -> list[str]:
        lines = self.log_path.read_text().splitlines()
        return [json.loads(line).get("event", "") for line in lines if line.startswith("{")]

    def close(self) -> None:
        self.http.close()
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self._log.close()


def _reported_failed_infrastructure(api: FakeCallbackApi, envelope: dict[str, Any]) -> None:
    (failed,) = _completed(api, envelope)
    assert failed["outcome"] == "FAILED"
    assert failed["error"]["category"] == "INFRASTRUCTURE"
    assert failed["error"]["retryable"] is True


def test_two_sigterms_50ms_apart_keep_draining(api: FakeCallbackApi, tmp_path: Path) -> None:
    """The second of two SIGTERMs 50 ms apart forced the exit and the running attempt was never
    reported; now it is the same request and the drain goes on."""
    worker = WorkerProcess(console_script(), api, tmp_path / "worker.log", grace="1.0")
    try:
        envelope = worker.start_long_task(api)
        worker.signal_group()
        time.sleep(0.05)
        worker.signal_group()
        assert worker.process.wait(timeout=30) == 0
    finally:
        worker.close()
    _reported_failed_infrastructure(api, envelope)
    events = worker.events()
    assert "shutdown_signal_repeated" in events
    assert "shutdown_forced" not in events


@pytest.mark.skipif(not UV.exists(), reason="uv is installed by `make sync`")
def test_sigterm_to_a_uv_run_process_group_reports_the_running_attempt(
    api: FakeCallbackApi, tmp_path: Path
) -> None:
    """Under `uv run arco-worker`, a SIGTERM to the process group reaches the worker twice (once
    directly, once forwarded by uv): the running attempt must still be reported."""
    command = [str(UV), "run", "--frozen", "arco-worker"]
    worker = WorkerProcess(command, api, tmp_path / "worker.log", grace="1.0")
    try:
        envelope = worker.start_long_task(api)
        worker.signal_group()
        worker.process.wait(timeout=30)
    finally:
        worker.close()
    _reported_failed_infrastructure(api, envelope)
    assert "shutdown_forced" not in worker.events()


def test_a_second_signal_after_the_window_forces_the_exit(
    api: FakeCallbackApi, tmp_path: Path
) -> None:
    worker = WorkerProcess(console_script(), api, tmp_path / "worker.log", grace="30")
    try:
        worker.start_long_task(api)
        worker.signal_group()
        wait_until(lambda: "worker_stop_accepting" in worker.events(), what="the drain")
        time.sleep(REPEATED_SIGNAL_WINDOW_SECS + 0.2)
        forced_at = time.monotonic()
        worker.signal_group()
        worker.process.wait(timeout=20)
        assert time.monotonic() - forced_at < 10  # well before the 30 s grace
    finally:
        worker.close()
    assert "shutdown_forced" in worker.events()
