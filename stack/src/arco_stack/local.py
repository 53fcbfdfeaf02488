"""A local stack, optionally running a worker author's own worker in place of the sample
worker: the machinery behind ``arco-stack up`` (and reusable by test tooling).

    with LocalStack(Path(".arco"), worker="mytasks:worker", worker_dir=Path(".")) as stack:
        client = stack.client()
        ...

The user's worker is watched apart from the rest: when it dies the other services keep
running (the author fixes the code and it is restarted, by ``--reload`` or by hand); when
any other service dies the stack stops, as before.
"""

from __future__ import annotations

import fcntl
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from arco_stack.client import ApiClient
from arco_stack.config import (
    Ports,
    ServiceSpec,
    make_data_dir,
    recorded_ports,
    service_specs,
    stack_environment,
    write_ports,
)
from arco_stack.demo import demo_manifest
from arco_stack.processes import Service, Stack, StackError, migrate

WORKER = "worker"
# Folders never watched for changes (virtual environments, caches, the stack's own data).
_UNWATCHED = {".venv", "venv", "__pycache__", "node_modules", ".git", ".arco", ".tox"}


LOCK_FILE = "up.lock"


class PortInUseError(StackError):
    """A port the stack needs is taken; the message names it and what to do."""


class DataDirInUseError(StackError):
    """Another ``arco-stack up`` runs from the same data directory."""


class DataDirLock:
    """An exclusive lock on a data directory, held while its stack runs.

    Two stacks on one data dir would share its SQLite database, and the second would
    overwrite ``ports.env``: once it stopped, every command would point at its dead ports
    while the first stack still ran. The lock is an ``flock`` on ``up.lock`` (released by the
    kernel when the process dies, so a killed ``up`` never leaves a stale lock); the file
    holds the owner's pid for the message.
    """

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir.resolve()
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock or raise :class:`DataDirInUseError` naming the running stack."""
        make_data_dir(self.data_dir)
        path = self.data_dir / LOCK_FILE
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            api = recorded_ports(self.data_dir).api
            raise DataDirInUseError(
                f"a stack already runs from {self.data_dir} (pid {owner}, API "
                f"http://127.0.0.1:{api}): use it, stop it with Ctrl-C in its terminal, "
                "or start another one with --data-dir DIR --free-ports"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def check_ports_free(ports: Ports, host: str = "127.0.0.1") -> None:
    """Raise :class:`PortInUseError` for the first port of ``ports`` something listens on."""
    for name, port in (
        ("api", ports.api),
        ("worker", ports.worker),
        ("dispatcher", ports.dispatcher),
        ("sweeper", ports.sweeper),
    ):
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError:
                raise PortInUseError(
                    f"port {port} ({name}) is already in use: another `arco-stack up` may be "
                    "running (stop it with Ctrl-C), or free the port, or pass --free-ports"
                ) from None


def python_files_state(folder: Path) -> dict[str, int]:
    """Modification times of the ``.py`` files under ``folder`` (virtualenvs, caches and
    hidden folders skipped): compare two states to see whether the code changed."""
    state: dict[str, int] = {}
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if d not in _UNWATCHED and not d.startswith(".")]
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(root, name)
                try:
                    state[path] = os.stat(path).st_mtime_ns
                except OSError:
                    continue
    return state


@dataclass
class WorkerEvent:
    """Something that happened to the user's worker while the stack ran."""

    kind: str  # "exited" or "restarted"
    message: str


@dataclass
class LocalStack:
    """api, dispatcher, sweeper and a worker (the sample one, or ``worker``) on one data dir.

    ``worker`` is ``MODULE:ATTR`` of an ``arco_worker.Worker``, imported from ``worker_dir``
    (default: the current folder). ``reload`` restarts only the worker when a ``.py`` file
    under ``worker_dir`` changes (see :meth:`poll`).
    """

    data_dir: Path
    worker: str | None = None
    worker_dir: Path | None = None
    reload: bool = False
    demo: bool = False
    database_url: str | None = None
    ports: Ports = field(default_factory=Ports)
    overrides: dict[str, str] = field(default_factory=dict)
    ready_timeout: float = 120.0
    env: dict[str, str] = field(init=False, default_factory=dict)
    _stack: Stack | None = field(init=False, default=None)
    _watched: dict[str, int] = field(init=False, default_factory=dict)
    _worker_down_reported: bool = field(init=False, default=False)
    _pending: list[WorkerEvent] = field(init=False, default_factory=list)
    _lock: DataDirLock | None = field(init=False, default=None)

    @property
    def api_url(self) -> str:
        return self.env["ARCO_FLOW_CALLBACK_BASE_URL"]

    @property
    def worker_folder(self) -> Path:
        return (self.worker_dir or Path.cwd()).resolve()

    def specs(self) -> list[ServiceSpec]:
        specs = service_specs(self.ports)
        if self.worker is None:
            return specs
        return [
            ServiceSpec(
                WORKER,
                "arco-worker",
                spec.port,
                ("--worker", self.worker, "--worker-dir", str(self.worker_folder)),
                cwd=self.worker_folder,
            )
            if spec.name == WORKER
            else spec
            for spec in specs
        ]

    def start(self, on_ready: Callable[[Service], None] | None = None) -> None:
        """Check the ports, migrate, start every service and wait until each is ready; on
        failure stop what was started and raise :class:`StackError`."""
        lock = DataDirLock(self.data_dir)
        if self.data_dir.is_dir():
            # A stack already running from this folder is named before its ports are.
            lock.acquire()
        try:
            check_ports_free(self.ports)
            if not lock.held:
                lock.acquire()  # only now: a taken port leaves no data dir behind
            self._start_services(on_ready)
        except BaseException:
            lock.release()
            raise
        self._lock = lock

    def _start_services(self, on_ready: Callable[[Service], None] | None) -> None:
        overrides = dict(self.overrides)
        if self.worker is not None:
            # The author's tasks alone: a sample handler would hide a missing registration.
            overrides.setdefault("ARCO_WORKER_SAMPLE_TASKS", "false")
        self.env = stack_environment(
            self.data_dir, ports=self.ports, database_url=self.database_url, overrides=overrides
        )
        migrate(self.env)
        write_ports(self.data_dir.resolve(), self.ports)
        stack = self._stack = Stack(self.data_dir.resolve(), self.env)
        try:
            # Start everything at once (each needs only the migrated database), then wait
            # for each in the runbook's deploy order.
            for service in [stack.start(spec) for spec in self.specs()]:
                try:
                    stack.wait_ready(service, timeout=self.ready_timeout)
                except StackError as exc:
                    if service.spec.name != WORKER or self.worker is None:
                        raise
                    self._worker_down_reported = True
                    self._pending.append(WorkerEvent("exited", self._down_message(str(exc))))
                    continue
                if on_ready is not None:
                    on_ready(service)
        except BaseException:
            stack.stop()
            self._stack = None
            raise
        if self.reload:
            self._watched = python_files_state(self.worker_folder)
        if self.demo:
            with self.client() as client:
                client.deploy_manifest(demo_manifest())

    def client(self) -> ApiClient:
        """A run-API client with a user token of this stack."""
        return ApiClient.of_stack(self.env)

    @property
    def stack(self) -> Stack:
        if self._stack is None:
            raise StackError("the stack is not started")
        return self._stack

    def worker_log(self) -> Path:
        return self.data_dir.resolve() / "logs" / f"{WORKER}.log"

    def poll(self) -> list[WorkerEvent]:
        """Watch the services once: raise :class:`StackError` when a service other than the
        user's worker died; report the user's worker exiting (once) and, with ``reload``,
        restart it when its code changed."""
        stack = self.stack
        events, self._pending = self._pending, []
        for service in list(stack.services):
            reason = service.failure()
            if reason is None:
                continue
            if service.spec.name != WORKER or self.worker is None:
                raise StackError(reason)
            if not self._worker_down_reported:
                self._worker_down_reported = True
                events.append(WorkerEvent("exited", self._down_message(reason)))
        if self.reload:
            state = python_files_state(self.worker_folder)
            if state != self._watched:
                self._watched = state
                events.append(self.restart_worker())
        return events

    def _down_message(self, reason: str) -> str:
        hint = (
            "save a .py file to restart it"
            if self.reload
            else "fix it, then restart `arco-stack up` (or use --reload)"
        )
        return f"{reason}\nthe other services keep running; {hint}"

    def restart_worker(self) -> WorkerEvent:
        """Restart the worker alone and wait until it serves (or report why it did not)."""
        stack = self.stack
        service = stack.restart(WORKER)
        self._worker_down_reported = False
        try:
            stack.wait_ready(service, timeout=30)
        except StackError as exc:
            self._worker_down_reported = True
            return WorkerEvent("exited", self._down_message(str(exc)))
        return WorkerEvent("restarted", "worker restarted with the changed code")

    def stop(self) -> None:
        if self._stack is not None:
            self._stack.stop()
            self._stack = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> LocalStack:
        self.start()
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        self.stop()
