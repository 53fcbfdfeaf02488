"""Each attempt's stdout, stderr and log records are captured apart from every other attempt
(sync handlers in threads, async handlers on the loop, running at the same time) and uploaded
to the run's log endpoint with the attempt's own task token, before ``/completed``."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from services.worker.tests.worker_test_support import (
    FakeCallbackApi,
    ServedApp,
    make_envelope,
    running_worker,
)
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from arco_worker import TaskContext, Worker
from arco_worker.capture import MAX_CAPTURED_CHARS, TRUNCATED_MARK, capture_context


class LoggingApi(FakeCallbackApi):
    """The fake callback API plus the run log endpoint, recording uploads in arrival order
    with the callbacks."""

    def __init__(self) -> None:
        super().__init__()
        self.uploads: list[tuple[str, str | None, dict[str, Any]]] = []
        self.events: list[str] = []
        self.log_status = 201
        self.app.router.routes.append(
            Route("/api/v1/workspaces/{ws}/runs/{run_id}/logs", self._logs, methods=["POST"])
        )

    async def _callback(self, request: Request) -> Response:
        self.events.append(request.path_params["phase"])
        return await super()._callback(request)

    async def _logs(self, request: Request) -> Response:
        self.events.append("logs")
        body = json.loads(await request.body())
        self.uploads.append(
            (request.path_params["run_id"], request.headers.get("authorization"), body)
        )
        return JSONResponse({"path": "p", "sizeBytes": 1}, status_code=self.log_status)


@pytest.fixture
def logging_api() -> Iterator[LoggingApi]:
    api = LoggingApi()
    server = ServedApp(api.app).start()
    api.base_url = server.url
    yield api
    server.stop()


def _two_task_worker(gate: threading.Barrier) -> Worker:
    worker = Worker()
    log = logging.getLogger("mytasks")

    @worker.task("test.sync")
    def sync_task(ctx: TaskContext) -> None:
        gate.wait(10)  # both attempts run at the same time
        print(f"threaded hello from {ctx.run_id}")
        print("threaded complaint", file=sys.stderr)
        log.warning("threaded record %s", ctx.run_id)

    @worker.task("test.async")
    async def async_task(ctx: TaskContext) -> None:
        await asyncio.get_running_loop().run_in_executor(None, gate.wait, 10)
        print(f"looped hello from {ctx.run_id}")
        log.error("looped record")

    return worker


def test_concurrent_attempts_upload_their_own_output(logging_api: LoggingApi) -> None:
    gate = threading.Barrier(2)
    with running_worker(_two_task_worker(gate), logging_api) as running:
        sync_env = make_envelope(logging_api.base_url, "test.sync", taskToken="token-sync")
        async_env = make_envelope(logging_api.base_url, "test.async", taskToken="token-async")
        assert running.dispatch(sync_env).status_code == 202
        assert running.dispatch(async_env).status_code == 202
        running.wait_idle()
    by_key = {body["taskKey"]: (run, auth, body) for run, auth, body in logging_api.uploads}
    assert set(by_key) == {"test.sync", "test.async"}

    run, auth, body = by_key["test.sync"]
    assert (run, auth, body["attempt"]) == (sync_env["runId"], "Bearer token-sync", 1)
    assert body["stdout"] == f"threaded hello from {run}\n"
    assert "threaded complaint\n" in body["stderr"]
    assert f"WARNING mytasks: threaded record {run}" in body["stderr"]
    assert "looped hello" not in body["stdout"]
    assert "looped record" not in body["stderr"]

    run, auth, body = by_key["test.async"]
    assert (run, auth) == (async_env["runId"], "Bearer token-async")
    assert body["stdout"] == f"looped hello from {run}\n"
    assert "ERROR mytasks: looped record" in body["stderr"]
    assert "threaded hello" not in body["stdout"]
    assert "threaded record" not in body["stderr"]
    assert "complaint" not in body["stderr"]
    # The worker's own logs (structlog, httpx) are not the task's output.
    assert "attempt_started" not in body["stdout"] + body["stderr"]


def test_logs_go_up_before_the_completion_and_failures_change_nothing(
    logging_api: LoggingApi,
) -> None:
    worker = Worker()

    @worker.task("test.fails")
    def fails(ctx: TaskContext) -> None:
        print("about to fail")
        raise ValueError("boom")

    logging_api.log_status = 409  # e.g. already uploaded: best effort, the report still goes
    with running_worker(worker, logging_api) as running:
        assert (
            running.dispatch(make_envelope(logging_api.base_url, "test.fails")).status_code == 202
        )
        running.wait_idle()
    assert logging_api.events == ["started", "logs", "completed"]
    assert logging_api.uploads[0][2]["stdout"] == "about to fail\n"
    completed = logging_api.requests("completed")
    assert completed[0].body["outcome"] == "FAILED"
    # The traceback ends the uploaded stderr, as Python prints an uncaught exception.
    stderr = logging_api.uploads[0][2]["stderr"]
    assert stderr.startswith("Traceback (most recent call last):"), stderr
    assert 'raise ValueError("boom")' in stderr
    assert stderr.endswith("ValueError: boom\n")
    assert stderr == completed[0].body["error"]["stackTrace"]


def test_a_silent_failure_uploads_its_traceback(logging_api: LoggingApi) -> None:
    worker = Worker()

    @worker.task("test.silent_failure")
    def silent_failure(ctx: TaskContext) -> None:
        raise KeyError("rows")

    with running_worker(worker, logging_api) as running:
        envelope = make_envelope(logging_api.base_url, "test.silent_failure")
        assert running.dispatch(envelope).status_code == 202
        running.wait_idle()
    assert logging_api.events == ["started", "logs", "completed"]
    body = logging_api.uploads[0][2]
    assert body["stdout"] == ""
    assert body["stderr"].endswith("KeyError: 'rows'\n")


def test_a_silent_attempt_uploads_nothing(logging_api: LoggingApi) -> None:
    worker = Worker()

    @worker.task("test.quiet")
    def quiet(ctx: TaskContext) -> None:
        return None

    with running_worker(worker, logging_api) as running:
        assert (
            running.dispatch(make_envelope(logging_api.base_url, "test.quiet")).status_code == 202
        )
        running.wait_idle()
    assert logging_api.uploads == []
    assert logging_api.events == ["started", "completed"]


def test_uploading_can_be_turned_off(logging_api: LoggingApi) -> None:
    worker = Worker()

    @worker.task("test.chatty")
    def chatty(ctx: TaskContext) -> None:
        print("hello")

    with running_worker(worker, logging_api, ARCO_WORKER_UPLOAD_LOGS="false") as running:
        assert (
            running.dispatch(make_envelope(logging_api.base_url, "test.chatty")).status_code == 202
        )
        running.wait_idle()
    assert logging_api.uploads == []


def test_long_output_keeps_its_end() -> None:
    context, output = capture_context()
    chunk = "x" * 1000 + "\n"

    def chatter() -> None:
        for _ in range(MAX_CAPTURED_CHARS // 500):
            sys.stdout.write(chunk)
        sys.stdout.write("the end\n")

    context.run(chatter)
    text = output.stdout
    assert text.startswith(TRUNCATED_MARK)
    assert text.endswith("the end\n")
    assert len(text) <= MAX_CAPTURED_CHARS + len(TRUNCATED_MARK)
    # Outside the context nothing is captured.
    print("not captured")
    assert "not captured" not in output.stdout
