"""Test doubles and test data for code that dispatches: a settable clock, a worker
endpoint on loopback that records what it is sent, a fake Cloud Tasks transport, polling
with a deadline (tests never sleep a fixed time), a valid configuration, and one-transaction
helpers that apply facts the way the API would."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
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
from sqlalchemy import select
from sqlalchemy.orm import Session

from arco_dispatch.settings import FlowSettings
from arco_envelope import WorkerDispatchEnvelope
from arco_orchestration import facts
from arco_orchestration.db import Database
from arco_orchestration.models import DispatchOutbox, Run, Task, TaskEvent
from arco_orchestration.planning import PlannedTask
from arco_orchestration.scope import Scope

T0 = datetime(2026, 1, 1, tzinfo=UTC)
SCOPE = Scope(tenant_id="tenant-a", workspace_id="workspace-b")
CALLBACK_BASE_URL = "https://api.example"
# Test values, not credentials.
DISPATCH_SECRET = "dispatch-secret-0123456789abcdef0123"  # noqa: S105
TOKEN_SECRET = "task-secret-0123456789abcdef0123456789"  # noqa: S105
RUN_TOKEN = "run-token-0123456789abcdef0123456789ab"  # noqa: S105
TOKEN_ISSUER = "https://issuer.task"  # noqa: S105
TOKEN_AUDIENCE = "arco-worker-callback"  # noqa: S105

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


def _task(session: Session, run_id: str, key: str) -> Task:
    task = facts.get_task(session, SCOPE, run_id, key)
    if task is None:
        raise LookupError(f"no task {run_id}/{key}")
    return task


def _locked(session: Session, run_id: str, key: str) -> tuple[Run, Task]:
    run = facts.lock_run(session, SCOPE, run_id)
    if run is None:
        raise LookupError(f"no run {run_id}")
    return run, _task(session, run_id, key)


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
        "task_token_secret": TOKEN_SECRET,
        "run_token": RUN_TOKEN,
        "task_token_issuer": TOKEN_ISSUER,
        "task_token_audience": TOKEN_AUDIENCE,
    }
    values.update(overrides)
    return values


def flow_settings(**overrides: Any) -> FlowSettings:
    """Valid shared settings with ``overrides``."""
    return FlowSettings(**settings_values(**overrides))


def planned(
    key: str,
    *depends_on: str,
    partition_key: str | None = None,
    max_attempts: int = 3,
    heartbeat_timeout_sec: int = 300,
) -> PlannedTask:
    """A planned task keyed by its asset key, as the API plans them."""
    return PlannedTask(
        key=key,
        asset_key=key,
        depends_on=tuple(depends_on),
        partition_key=partition_key,
        max_attempts=max_attempts,
        heartbeat_timeout_sec=heartbeat_timeout_sec,
    )


def trigger(db: Database, run_id: str, tasks: list[PlannedTask], *, now: datetime = T0) -> None:
    """RunTriggered and PlanCreated of ``tasks`` at ``now``."""
    with db.transaction() as session:
        facts.trigger_run(
            session,
            SCOPE,
            run_id=run_id,
            plan_id=f"plan-{run_id}",
            tasks=tasks,
            now=now,
            triggered_by="test",
        )


def start(db: Database, run_id: str, key: str, *, now: datetime) -> None:
    """TaskStarted for the task's current attempt (what the API's /started applies)."""
    with db.transaction() as session:
        run, task = _locked(session, run_id, key)
        facts.apply_started(session, run, task, worker_id="worker-1", now=now)


def complete(
    db: Database,
    run_id: str,
    key: str,
    *,
    now: datetime,
    outcome: str = "SUCCEEDED",
    retryable: bool = True,
) -> None:
    """A completion of the task's current attempt (what the API's /completed applies)."""
    with db.transaction() as session:
        run, task = _locked(session, run_id, key)
        completion = facts.Completion(
            outcome=outcome,
            worker_id="worker-1",
            error_message=None if outcome == "SUCCEEDED" else "boom",
            retryable=retryable,
        )
        facts.apply_completion(session, run, task, completion, now=now)


def heartbeat(db: Database, run_id: str, key: str, *, now: datetime) -> None:
    """A heartbeat of the task's current attempt at ``now``."""
    with db.transaction() as session:
        facts.apply_heartbeat(
            session, _task(session, run_id, key), now=now, progress_pct=None, message=None
        )


def task_row(db: Database, run_id: str, key: str) -> Task:
    """The task row as stored now."""
    with db.transaction() as session:
        return _task(session, run_id, key)


def run_row(db: Database, run_id: str) -> Run:
    """The run row as stored now."""
    with db.transaction() as session:
        run = session.get(Run, run_id)
        if run is None:
            raise LookupError(f"no run {run_id}")
        return run


def outbox_rows(db: Database, run_id: str | None = None) -> list[DispatchOutbox]:
    """Every outbox row (of ``run_id``), by dispatch id."""
    with db.transaction() as session:
        stmt = select(DispatchOutbox).order_by(DispatchOutbox.dispatch_id)
        if run_id is not None:
            stmt = stmt.where(DispatchOutbox.run_id == run_id)
        return list(session.scalars(stmt))


def outbox_row(db: Database, dispatch_id: str) -> DispatchOutbox | None:
    """One outbox row, or ``None`` when it is gone."""
    with db.transaction() as session:
        return session.get(DispatchOutbox, dispatch_id)


def events(db: Database, run_id: str, key: str, kind: str | None = None) -> list[TaskEvent]:
    """The task's history (of one ``kind``), oldest first."""
    with db.transaction() as session:
        stmt = (
            select(TaskEvent)
            .where(TaskEvent.run_id == run_id, TaskEvent.task_key == key)
            .order_by(TaskEvent.id)
        )
        if kind is not None:
            stmt = stmt.where(TaskEvent.kind == kind)
        return list(session.scalars(stmt))


def age(db: Database, run_id: str, key: str, **columns: timedelta) -> None:
    """Move a task's time columns into the past (``ready_at=timedelta(minutes=6)`` means
    READY since six minutes before T0)."""
    with db.transaction() as session:
        task = _task(session, run_id, key)
        for column, delta in columns.items():
            setattr(task, column, T0 - delta)


def is_postgres(db: Database) -> bool:
    """Whether ``db`` is PostgreSQL (else SQLite)."""
    return db.engine.dialect.name == "postgresql"


def wait_until(
    predicate: Callable[[], bool], *, timeout: float = 15.0, interval: float = 0.01
) -> None:
    """Poll ``predicate`` until it holds; ``AssertionError`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, start: datetime) -> None:
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, delta: timedelta) -> datetime:
        with self._lock:
            self._now += delta
            return self._now


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
