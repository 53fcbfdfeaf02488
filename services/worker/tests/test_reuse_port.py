"""``ARCO_WORKER_REUSE_PORT=true``: several worker processes listen on one port and the
kernel spreads the dispatcher's connections over them; without it a second process cannot
bind the port."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from services.worker.tests.worker_test_support import (
    SECRET,
    FakeCallbackApi,
    console_script,
    free_port,
    make_envelope,
    worker_env,
)

from arco_envelope import DISPATCH_SECRET_HEADER
from arco_testkit.clock import wait_until


@pytest.fixture
def port() -> int:
    return free_port()


def _start(
    api: FakeCallbackApi, port: int, worker_id: str, log: Path, **extra: str
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        **worker_env(
            api.base_url,
            ARCO_HTTP_PORT=str(port),
            ARCO_WORKER_SAMPLE_TASKS="true",
            ARCO_WORKER_ID=worker_id,
            **extra,
        ),
    }
    with log.open("wb") as log_file:
        return subprocess.Popen(  # noqa: S603 - our own console script
            console_script(), env=env, stdout=log_file, stderr=subprocess.STDOUT
        )


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait()


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=5).status_code == 200
    except httpx.TransportError:
        return False


def test_two_processes_share_one_port(
    api: FakeCallbackApi, port: int, processes: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    for name in ("worker-a", "worker-b"):
        processes.append(
            _start(api, port, name, tmp_path / f"{name}.log", ARCO_WORKER_REUSE_PORT="true")
        )
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: _healthy(url), timeout=30, what="the workers to serve")

    def both_served() -> bool:
        assert all(process.poll() is None for process in processes)
        # A new connection per dispatch: the kernel picks a process per connection.
        envelope = make_envelope(api.base_url, "demo.sleep", payload={"seconds": 0})
        answer = httpx.post(
            f"{url}/dispatch", json=envelope, headers={DISPATCH_SECRET_HEADER: SECRET}, timeout=5
        )
        assert answer.status_code == 202
        return {r.body["workerId"] for r in api.requests("started")} == {"worker-a", "worker-b"}

    wait_until(both_served, timeout=30, what="dispatches served by both processes")


def test_without_reuse_port_a_second_process_cannot_bind(
    api: FakeCallbackApi, port: int, processes: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    processes.append(_start(api, port, "worker-a", tmp_path / "a.log"))
    wait_until(lambda: _healthy(f"http://127.0.0.1:{port}"), timeout=30, what="the worker")
    second = _start(api, port, "worker-b", tmp_path / "b.log")
    processes.append(second)
    assert second.wait(timeout=30) != 0
    assert "address already in use" in (tmp_path / "b.log").read_text().lower()
