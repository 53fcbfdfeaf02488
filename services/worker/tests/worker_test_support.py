"""Test support: a fake callback API and real HTTP servers on loopback.

The fake API records every callback and answers from per-phase scripts (then a default), so a
test decides exactly what the worker hears. Servers are uvicorn on 127.0.0.1 with an
ephemeral port, each in a background thread.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import threading
import uuid
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from arco_envelope import DISPATCH_SECRET_HEADER, callback_task_id, dispatch_id
from arco_testkit.clock import wait_until
from arco_testkit.values import TENANT, WORKSPACE
from arco_worker.app import create_app
from arco_worker.client import RetryPolicy
from arco_worker.registry import TaskRegistry
from arco_worker.service import ServiceOptions, WorkerService
from arco_worker.settings import WorkerSettings, load_settings

SECRET = "s3cret-dispatch-0123456789abcdef0123"
DEFAULT_TIMEOUT = 10.0

# Fast, deterministic knobs: tiny backoff, quick heartbeats, short graces.
FAST_RETRY = RetryPolicy(base_delay_secs=0.002, max_delay_secs=0.02, max_attempts=3)
FAST_OPTIONS = ServiceOptions(
    retry=FAST_RETRY, heartbeat_interval_secs=0.05, completion_flush_secs=3.0
)


def now() -> datetime:
    """The current UTC time."""
    return datetime.now(UTC)


def stamp(value: datetime) -> str:
    """RFC 3339 with Z."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def free_port() -> int:
    """A port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# ---------------------------------------------------------------------------------------
# The fake callback API


@dataclass(frozen=True)
class Scripted:
    """One scripted answer. ``hold`` delays it until the event is set."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    hold: threading.Event | None = None


@dataclass(frozen=True)
class Recorded:
    """One callback the fake API received."""

    phase: str
    task_id: str
    authorization: str | None
    content_type: str | None
    body: dict[str, Any]


def error_body(code: str, message: str = "any text at all") -> dict[str, str]:
    """A callback error payload."""
    return {"error": code, "message": message}


class FakeCallbackApi:
    """Records callbacks and answers from scripts; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._scripts: dict[str, deque[Scripted]] = {}
        self._defaults: dict[str, Scripted] = {}
        self._requests: list[Recorded] = []
        self.app = Starlette(
            routes=[Route("/api/v1/tasks/{task_id}/{phase}", self._callback, methods=["POST"])]
        )
        self.base_url = ""

    def reset(self) -> None:
        """Forget scripts, defaults and recorded requests."""
        with self._lock:
            self._scripts.clear()
            self._defaults.clear()
            self._requests.clear()

    def script(self, phase: str, *responses: Scripted) -> None:
        """Answer the next calls of ``phase`` with ``responses``, in order."""
        with self._lock:
            self._scripts.setdefault(phase, deque()).extend(responses)

    def set_default(self, phase: str, response: Scripted) -> None:
        """Answer ``phase`` with ``response`` once its script is used up."""
        with self._lock:
            self._defaults[phase] = response

    def requests(self, phase: str | None = None, task_id: str | None = None) -> list[Recorded]:
        """Recorded callbacks, optionally of one phase and/or task."""
        with self._lock:
            return [
                r
                for r in self._requests
                if (phase is None or r.phase == phase) and (task_id is None or r.task_id == task_id)
            ]

    def _default(self, phase: str, body: dict[str, Any]) -> Scripted:
        server_time = stamp(now())
        if phase == "heartbeat":
            return Scripted(
                body={"acknowledged": True, "shouldCancel": False, "serverTime": server_time}
            )
        if phase == "completed":
            return Scripted(
                body={
                    "acknowledged": True,
                    "finalState": body.get("outcome"),
                    "serverTime": server_time,
                }
            )
        return Scripted(body={"acknowledged": True, "serverTime": server_time})

    async def _callback(self, request: Request) -> Response:
        phase = request.path_params["phase"]
        raw = await request.body()
        body = json.loads(raw) if raw else {}
        with self._lock:
            self._requests.append(
                Recorded(
                    phase=phase,
                    task_id=request.path_params["task_id"],
                    authorization=request.headers.get("authorization"),
                    content_type=request.headers.get("content-type"),
                    body=body,
                )
            )
            queue = self._scripts.get(phase)
            scripted = (
                queue.popleft()
                if queue
                else self._defaults.get(phase) or self._default(phase, body)
            )
        if scripted.hold is not None:
            await anyio.to_thread.run_sync(scripted.hold.wait, DEFAULT_TIMEOUT)
        if scripted.body is None:
            return Response(status_code=scripted.status, headers=scripted.headers)
        return JSONResponse(scripted.body, status_code=scripted.status, headers=scripted.headers)


# ---------------------------------------------------------------------------------------
# Serving apps for real


class _QuickServer(uvicorn.Server):
    """uvicorn checks for shutdown every 100 ms; tests stop many servers, so check often."""

    async def main_loop(self) -> None:
        counter = 0
        while not await self.on_tick(counter):
            counter = (counter + 1) % 864000
            await asyncio.sleep(0.005)


class ServedApp:
    """An ASGI app served by uvicorn on 127.0.0.1 (ephemeral port) in a thread."""

    def __init__(self, app: ASGIApp) -> None:
        config = uvicorn.Config(
            app, host="127.0.0.1", port=0, log_level="warning", lifespan="on", ws="none"
        )
        self.server = _QuickServer(config)
        self._thread = threading.Thread(target=self.server.run, daemon=True)
        self.url = ""

    def start(self) -> ServedApp:
        """Start serving and wait until the port is bound."""
        self._thread.start()
        wait_until(lambda: self.server.started, what="server start")
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    def stop(self) -> None:
        """Shut down (running the app's lifespan shutdown) and wait for the thread."""
        self.server.should_exit = True
        self._thread.join(DEFAULT_TIMEOUT)


@contextmanager
def served(app: ASGIApp) -> Iterator[ServedApp]:
    """Serve ``app`` for the duration of the block."""
    server = ServedApp(app).start()
    try:
        yield server
    finally:
        server.stop()


def console_script() -> list[str]:
    """The command of ``arco-worker`` in this environment."""
    script = Path(sys.executable).with_name("arco-worker")
    return [str(script)] if script.exists() else [sys.executable, "-m", "arco_worker.cli"]


def worker_env(api_url: str, **overrides: str) -> dict[str, str]:
    """The environment of a test worker."""
    env = {
        "ARCO_FLOW_WORKER_DISPATCH_SECRET": SECRET,
        "ARCO_FLOW_TENANT_ID": TENANT,
        "ARCO_FLOW_WORKSPACE_ID": WORKSPACE,
        "ARCO_FLOW_API_URL": api_url,
        "ARCO_WORKER_ID": "worker-test",
        "ARCO_WORKER_CANCEL_GRACE_SECS": "0.3",
        "ARCO_WORKER_SHUTDOWN_GRACE_SECS": "0.2",
    }
    env.update(overrides)
    return env


def make_settings(api_url: str, **overrides: str) -> WorkerSettings:
    """Validated settings of a test worker."""
    return load_settings(worker_env(api_url, **overrides))


class RunningWorker:
    """A worker app served over HTTP, with helpers to dispatch to it."""

    def __init__(self, server: ServedApp, service: WorkerService) -> None:
        self.server = server
        self.service = service
        self.http = httpx.Client(base_url=server.url, timeout=DEFAULT_TIMEOUT)

    def dispatch(
        self, envelope: dict[str, Any] | bytes, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        """POST /dispatch with the secret header (unless ``headers`` replaces it)."""
        sent = {DISPATCH_SECRET_HEADER: SECRET} if headers is None else headers
        if isinstance(envelope, bytes):
            return self.http.post("/dispatch", content=envelope, headers=sent)
        return self.http.post("/dispatch", json=envelope, headers=sent)

    def wait_idle(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Wait until no dispatch is in flight."""
        wait_until(lambda: self.service.running == 0, timeout, what="the worker to go idle")


@contextmanager
def running_worker(
    worker: TaskRegistry,
    api: FakeCallbackApi,
    *,
    options: ServiceOptions = FAST_OPTIONS,
    **env: str,
) -> Iterator[RunningWorker]:
    """Serve ``worker`` configured against ``api`` for the duration of the block."""
    app = create_app(make_settings(api.base_url, **env), worker, options=options)
    with served(app) as server:
        running = RunningWorker(server, app.state.service)
        try:
            yield running
        finally:
            running.http.close()


def make_envelope(api_url: str, task_key: str = "test.ok", **overrides: Any) -> dict[str, Any]:
    """A canonical camelCase envelope for a fresh run, valid for an hour."""
    run_id = f"run-{uuid.uuid4().hex[:12]}"
    attempt = overrides.pop("attempt", 1)
    envelope: dict[str, Any] = {
        "tenantId": TENANT,
        "workspaceId": WORKSPACE,
        "taskId": callback_task_id(run_id, task_key),
        "taskKey": task_key,
        "runId": run_id,
        "attempt": attempt,
        "attemptId": f"att-{uuid.uuid4().hex[:8]}",
        "dispatchId": dispatch_id(run_id, task_key, attempt),
        "heartbeatTimeoutSec": 300,
        "workerQueue": "default-queue",
        "callbackBaseUrl": api_url,
        "taskToken": "token-1",
        "tokenExpiresAt": stamp(now() + timedelta(hours=1)),
        "payload": {},
    }
    envelope.update(overrides)
    return envelope
