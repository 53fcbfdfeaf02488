"""The worker's edge (issue 15 finding 7): a bounded ``/dispatch`` body (413 with the JSON
error body, decided from Content-Length before reading, or as a chunked body grows past the
limit) and access log lines without query strings."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from services.worker.tests.worker_test_support import (
    SECRET,
    FakeCallbackApi,
    RunningWorker,
    console_script,
    free_port,
    make_envelope,
    running_worker,
    worker_env,
)

from arco_envelope import DISPATCH_SECRET_HEADER
from arco_testkit.clock import wait_until
from arco_worker import Worker

LIMIT = 4096


@pytest.fixture
def small(api: FakeCallbackApi) -> Iterator[RunningWorker]:
    worker = Worker()
    worker.add("test.ok", lambda ctx: None)
    with running_worker(worker, api, ARCO_WORKER_MAX_BODY_BYTES=str(LIMIT)) as running:
        yield running


def _too_large(response: httpx.Response) -> None:
    assert response.status_code == 413, response.text
    assert response.json() == {
        "error": "payload_too_large",
        "message": f"dispatch body exceeds {LIMIT} bytes (ARCO_WORKER_MAX_BODY_BYTES)",
    }


def test_a_body_over_the_limit_is_413(small: RunningWorker, api: FakeCallbackApi) -> None:
    envelope = make_envelope(api.base_url, payload={"blob": "x" * LIMIT})
    _too_large(small.dispatch(envelope))
    assert api.requests() == []


def test_a_chunked_body_growing_past_the_limit_is_413(
    small: RunningWorker, api: FakeCallbackApi
) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(16):
            yield b" " * 1024  # JSON whitespace: only the size matters

    response = small.http.post(
        "/dispatch", content=chunks(), headers={DISPATCH_SECRET_HEADER: SECRET}
    )
    assert "content-length" not in response.request.headers
    _too_large(response)


def test_a_body_within_the_limit_is_dispatched(small: RunningWorker, api: FakeCallbackApi) -> None:
    envelope = make_envelope(api.base_url, payload={"blob": "x" * 100})
    assert len(json.dumps(envelope)) < LIMIT
    assert small.dispatch(envelope).status_code == 202
    small.wait_idle()


def test_content_length_over_the_limit_is_refused_before_the_body_is_sent(
    small: RunningWorker,
) -> None:
    """Headers announcing 20 MB get their 413 at once: the worker never waits for the body."""
    host, port = small.server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as connection:
        connection.sendall(
            (
                f"POST /dispatch HTTP/1.1\r\nHost: {host}\r\n{DISPATCH_SECRET_HEADER}: {SECRET}\r\n"
                "Content-Type: application/json\r\nContent-Length: 20000000\r\n\r\n"
            ).encode()
        )
        answer = ""
        while '"}' not in answer:  # the headers and the JSON body may come in two packets
            received = connection.recv(65536).decode()
            assert received, answer
            answer += received
    assert answer.startswith("HTTP/1.1 413 ")
    assert '"error":"payload_too_large"' in answer


def test_the_secret_is_checked_before_the_size(small: RunningWorker, api: FakeCallbackApi) -> None:
    envelope = make_envelope(api.base_url, payload={"blob": "x" * LIMIT})
    assert small.dispatch(envelope, headers={}).status_code == 401


def test_access_lines_carry_no_query_string(api: FakeCallbackApi, tmp_path: Path) -> None:
    """A secret sent as ``?secret=`` by mistake was written to the access log."""
    port = free_port()
    env = {
        **os.environ,
        **worker_env(api.base_url, ARCO_HTTP_PORT=str(port), ARCO_WORKER_SAMPLE_TASKS="true"),
    }
    log_path = tmp_path / "worker.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(  # noqa: S603 - our own console script
            console_script(), env=env, stdout=log_file, stderr=subprocess.STDOUT
        )
        try:
            url = f"http://127.0.0.1:{port}"

            def healthy() -> bool:
                try:
                    return httpx.get(f"{url}/health?secret=hunter2-leak", timeout=5).is_success
                except httpx.TransportError:
                    return False

            wait_until(healthy, timeout=30, what="the worker to serve")
            httpx.post(f"{url}/dispatch?token=hunter2-leak", timeout=5)
            deadline = time.monotonic() + 10
            while "/dispatch" not in log_path.read_text():
                assert time.monotonic() < deadline, log_path.read_text()
                time.sleep(0.05)
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
    text = log_path.read_text()
    assert "hunter2-leak" not in text
    events = [json.loads(line)["event"] for line in text.splitlines() if line.strip()]
    access = [event for event in events if ' HTTP/1.1" ' in event]
    assert any('"GET /health HTTP/1.1" 200' in event for event in access), text
    assert any('"POST /dispatch HTTP/1.1" 401' in event for event in access), text
    assert all("?" not in event for event in access)
