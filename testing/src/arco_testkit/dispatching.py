"""Test doubles and data for code that dispatches: a valid configuration, a worker endpoint on
loopback that records what it is sent, and a fake Cloud Tasks transport."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from google.api_core import exceptions as google_errors
from google.api_core import gapic_v1
from google.auth.credentials import AnonymousCredentials
from google.cloud import tasks_v2
from google.cloud.tasks_v2.services.cloud_tasks.transports.base import (
    DEFAULT_CLIENT_INFO,
    CloudTasksTransport,
)

from arco_dispatch.settings import FlowSettings
from arco_envelope import WorkerDispatchEnvelope
from arco_testkit.values import (
    CALLBACK_BASE_URL,
    DISPATCH_SECRET,
    RUN_TOKEN,
    SCOPE,
    TASK_AUDIENCE,
    TASK_ISSUER,
    TASK_SECRET,
)

CANONICAL_ENVELOPE_KEYS = [
    "tenantId",
    "workspaceId",
    "taskId",
    "taskKey",
    "runId",
    "attempt",
    "attemptId",
    "dispatchId",
    "partitionKey",
    "heartbeatTimeoutSec",
    "workerQueue",
    "callbackBaseUrl",
    "taskToken",
    "tokenExpiresAt",
    "traceparent",
    "payload",
]
"""The keys of every envelope the dispatcher writes for a partitioned task, in wire order
(it never sets ``executionLocationId``)."""


def settings_values(
    target_url: str = "http://127.0.0.1:9/dispatch", **overrides: Any
) -> dict[str, Any]:
    """A valid configuration (field names), with ``overrides``."""
    values: dict[str, Any] = {
        "tenant_id": SCOPE.tenant_id,
        "workspace_id": SCOPE.workspace_id,
        "dispatch_target_url": target_url,
        "callback_base_url": CALLBACK_BASE_URL,
        "worker_dispatch_secret": DISPATCH_SECRET,
        "task_token_secret": TASK_SECRET,
        "run_token": RUN_TOKEN,
        "task_token_issuer": TASK_ISSUER,
        "task_token_audience": TASK_AUDIENCE,
    }
    values.update(overrides)
    return values


def flow_settings(**overrides: Any) -> FlowSettings:
    """Valid shared settings with ``overrides``."""
    return FlowSettings(**settings_values(**overrides))


@dataclass(frozen=True)
class ReceivedDispatch:
    """One request the worker endpoint received; header names are lowercased."""

    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def envelope(self) -> WorkerDispatchEnvelope:
        return WorkerDispatchEnvelope.from_json(self.body)


@dataclass(frozen=True)
class Answer:
    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()


Responder = Callable[[ReceivedDispatch], Answer]


class RecordingWorker:
    """A worker's ``/dispatch`` endpoint served over real HTTP on 127.0.0.1. Each request
    is handled in its own thread by ``responder`` (default: 200), which may block to play
    a synchronous worker."""

    def __init__(self, responder: Responder | None = None) -> None:
        self.responder: Responder = responder or (lambda _: Answer())
        self._lock = threading.Lock()
        self.received: list[ReceivedDispatch] = []
        self.ok_answers: Counter[str] = Counter()  # dispatchId -> 2xx answers given
        worker = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                request = ReceivedDispatch(
                    path=self.path,
                    headers={name.lower(): value for name, value in self.headers.items()},
                    body=self.rfile.read(length),
                )
                with worker._lock:
                    worker.received.append(request)
                answer = worker.responder(request)
                if 200 <= answer.status < 300:
                    with worker._lock:
                        worker.ok_answers[request.envelope.dispatch_id] += 1
                self.send_response(answer.status)
                for name, value in answer.headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *_: Any) -> None:
                """Quiet."""

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        # A short poll makes stop() quick (shutdown waits for the serve loop's next poll).
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/dispatch"

    def start(self) -> RecordingWorker:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def requests(self) -> list[ReceivedDispatch]:
        with self._lock:
            return list(self.received)

    def dispatch_ids(self) -> list[str]:
        return [request.envelope.dispatch_id for request in self.requests()]


class FakeCloudTasksTransport(CloudTasksTransport):
    """Stands in for the Cloud Tasks API behind a real ``CloudTasksClient``: records every
    CreateTaskRequest, answers ALREADY_EXISTS for a task name it has seen (as Cloud Tasks
    does), and raises the errors queued in ``errors`` first."""

    # google-auth and google-api-core carry few annotations, hence the ignores below.
    def __init__(self) -> None:
        super().__init__(credentials=AnonymousCredentials())  # type: ignore[no-untyped-call]
        self.requests: list[tasks_v2.CreateTaskRequest] = []
        self.errors: list[google_errors.GoogleAPICallError] = []
        self._names: set[str] = set()
        self._prep_wrapped_messages(DEFAULT_CLIENT_INFO)

    def _prep_wrapped_messages(self, client_info: gapic_v1.client_info.ClientInfo) -> None:
        self._wrapped_methods = {
            self.create_task: gapic_v1.method.wrap_method(  # type: ignore[no-untyped-call]
                self.create_task, client_info=client_info
            )
        }

    @property
    def create_task(self) -> Callable[..., tasks_v2.Task]:
        return self._create_task

    def _create_task(self, request: tasks_v2.CreateTaskRequest, **_: Any) -> tasks_v2.Task:
        self.requests.append(request)
        if self.errors:
            raise self.errors.pop(0)
        if request.task.name in self._names:
            raise google_errors.AlreadyExists(  # type: ignore[no-untyped-call]
                f"task {request.task.name} already exists"
            )
        self._names.add(request.task.name)
        return tasks_v2.Task(name=request.task.name)

    def close(self) -> None:
        """Nothing to close."""

    @property
    def kind(self) -> str:
        return "fake"


def client_with(transport: FakeCloudTasksTransport) -> tasks_v2.CloudTasksClient:
    """A real Cloud Tasks client whose transport is ``transport``."""
    return tasks_v2.CloudTasksClient(transport=transport)


def names_of(requests: Sequence[tasks_v2.CreateTaskRequest]) -> list[str]:
    """The short task names (``d_...``) of CreateTask requests."""
    return [request.task.name.rsplit("/", 1)[-1] for request in requests]
