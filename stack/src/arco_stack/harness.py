"""A whole stack around a worker under test, for test suites (the pytest plugin's
``arco_stack`` fixture): api, dispatcher and sweeper as real processes on free ports, the
worker started as ``arco-stack up --worker MODULE:ATTR`` starts it (or one already running
anywhere), SQLite in a temporary folder, or PostgreSQL from a URL or a testcontainers
container."""

from __future__ import annotations

import os
from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from arco_stack.client import ApiClient, user_token
from arco_stack.config import QUICK_REPAIR_OVERRIDES, Ports, ServiceSpec
from arco_stack.containers import ContainerError, postgres_container
from arco_stack.local import WORKER, LocalStack
from arco_stack.manifests import manifest_from_worker
from arco_stack.processes import Stack, tail
from arco_worker.errors import RegistrationError
from arco_worker.registry import TaskRegistry
from arco_worker.serving import load_worker

LOG_TAIL_LINES = 30


class HarnessError(RuntimeError):
    """The stack around the worker could not be set up; the message says why."""


@dataclass(frozen=True)
class HarnessOptions:
    """Where the worker and the database come from."""

    worker: str | None = None  # MODULE:ATTR, started like `arco-stack up --worker`
    worker_url: str | None = None  # a worker already running (any language)
    database_url: str | None = None
    postgres_container: bool = False
    worker_dir: Path | None = None  # where MODULE is imported from (the project root)
    # Environment for every service, over the defaults and the quick repairs (a test that
    # needs the sample handlers too sets ARCO_WORKER_SAMPLE_TASKS=true here).
    overrides: Mapping[str, str] = field(default_factory=dict)


@dataclass
class _ExternalWorkerStack(LocalStack):
    """A local stack whose worker runs elsewhere (``--arco-worker-url``)."""

    def specs(self) -> list[ServiceSpec]:
        return [spec for spec in super().specs() if spec.name != WORKER]


class ArcoStack:
    """The running stack; :meth:`deploy`, :meth:`trigger` and friends talk to its API."""

    def __init__(self, options: HarnessOptions, data_dir: Path) -> None:
        if (options.worker is None) == (options.worker_url is None):
            raise HarnessError(
                "name the worker under test: --arco-worker MODULE:ATTR (or the ini key "
                "arco_worker), or --arco-worker-url URL for one already running"
            )
        self.options = options
        self.data_dir = data_dir
        self._worker: TaskRegistry | None = None
        self._exits = ExitStack()
        self._local: LocalStack | None = None
        self._client: ApiClient | None = None
        self.env: dict[str, str] = {}

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> ArcoStack:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        options = self.options
        if options.worker is not None:
            try:
                self._worker = load_worker(options.worker, options.worker_dir)
            except RegistrationError as exc:
                raise HarnessError(str(exc)) from None
        database_url = options.database_url
        if options.postgres_container:
            try:
                database_url = self._exits.enter_context(postgres_container())
            except ContainerError as exc:
                raise HarnessError(str(exc)) from None
        kind = LocalStack if options.worker is not None else _ExternalWorkerStack
        self._local = kind(
            self.data_dir,
            worker=options.worker,
            worker_dir=options.worker_dir,
            database_url=database_url,
            ports=Ports.free(),
            overrides=self._overrides(),
        )
        self._local.start()
        self.env = self._local.env
        # `arco-stack up` keeps the other services running when the author's worker dies;
        # a test cannot run without it.
        for event in self._local.poll():
            if event.kind == "exited":
                raise HarnessError(event.message)
        self._client = self._local.client()

    def _overrides(self) -> dict[str, str]:
        overrides = {**QUICK_REPAIR_OVERRIDES, **self.options.overrides}
        if self.options.worker_url is not None:
            url = self.options.worker_url.rstrip("/")
            overrides["ARCO_FLOW_DISPATCH_TARGET_URL"] = (
                url if url.endswith("/dispatch") else f"{url}/dispatch"
            )
            # A worker started elsewhere knows its secret: the stack uses the same one.
            secret = os.environ.get("ARCO_FLOW_WORKER_DISPATCH_SECRET", "").strip()
            if not secret:
                raise HarnessError(
                    "--arco-worker-url needs ARCO_FLOW_WORKER_DISPATCH_SECRET: the secret the "
                    "worker expects"
                )
            overrides["ARCO_FLOW_WORKER_DISPATCH_SECRET"] = secret
        return overrides

    def stop(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._local is not None:
            self._local.stop()
            self._local = None
        self._exits.close()

    def __enter__(self) -> ArcoStack:
        return self.start()

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- failures on purpose -----------------------------------------------------------------

    @property
    def processes(self) -> Stack:
        """The service processes (``processes.Stack``), for tests that drive them directly."""
        if self._local is None:
            raise HarnessError("the stack is not running")
        return self._local.stack

    def specs(self) -> dict[str, ServiceSpec]:
        """How each service is started (command, port, arguments), by name."""
        if self._local is None:
            raise HarnessError("the stack is not running")
        return {spec.name: spec for spec in self._local.specs()}

    def kill(self, service: str) -> None:
        """SIGKILL one service (``api``, ``worker``, ``dispatcher`` or ``sweeper``), as in a
        crash: no chance to clean up. :meth:`restart` brings it back."""
        try:
            self.processes.kill(service)
        except KeyError:
            raise HarnessError(f"no running service named {service!r}") from None

    def restart(self, service: str, timeout: float = 60.0) -> None:
        """Start ``service`` again (stopping it first when it runs) on the same port and
        environment, and wait until it is ready."""
        if self._local is None:
            raise HarnessError("the stack is not running")
        processes = self._local.stack
        if any(running.spec.name == service for running in processes.services):
            started = processes.restart(service)
        else:
            specs = self.specs()
            if service not in specs:
                raise HarnessError(f"no service named {service!r}; known: {sorted(specs)}")
            started = processes.start(specs[service])
        processes.wait_ready(started, timeout=timeout)

    # --- the API -----------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._local is not None

    @property
    def client(self) -> ApiClient:
        if self._client is None:
            raise HarnessError("the stack is not running")
        return self._client

    @property
    def api_url(self) -> str:
        """The API's root URL."""
        return self.env["ARCO_FLOW_CALLBACK_BASE_URL"]

    def token(self) -> str:
        """A user bearer token for the stack's tenant and workspace."""
        return user_token(
            self.env["ARCO_JWT_SECRET"], self.env["ARCO_TENANT_ID"], self.env["ARCO_WORKSPACE_ID"]
        )

    def deploy(self, manifest: dict[str, Any] | None = None) -> dict[str, Any]:
        """Deploy ``manifest``, or by default one derived from the worker under test."""
        if manifest is None:
            if self._worker is None:
                raise HarnessError(
                    "deploy() derives the manifest from --arco-worker; with --arco-worker-url "
                    "pass one: deploy(manifest_dict)"
                )
            manifest = manifest_from_worker(self._worker, deployed_by="arco-stack pytest plugin")
        return self.client.deploy_manifest(manifest)

    def trigger(
        self,
        *keys: str,
        partition: str | None = None,
        include_upstream: bool = False,
        wait: bool = True,
        timeout: float = 60.0,
    ) -> dict[str, Any]:
        """Trigger a run of ``keys`` (with ``include_upstream``, of what they depend on too);
        with ``wait``, return the run once it ended (or raise ``TimeoutError``), else as
        created. The run document is the API's."""
        if not keys:
            raise ValueError("trigger() needs at least one task key")
        body: dict[str, Any] = {"selection": list(keys)}
        if partition is not None:
            body["partitionKey"] = partition
        if include_upstream:
            body["includeUpstream"] = True
        run = self.client.trigger_run(body)
        if not wait:
            return run
        return self.client.wait_terminal(run["runId"], timeout)

    def run(self, run_id: str) -> dict[str, Any]:
        """The run document as the API returns it."""
        return self.client.get_run(run_id)

    def wait(self, run_id: str, timeout: float = 60.0) -> dict[str, Any]:
        """The run once it ended; raises ``TimeoutError`` after ``timeout`` seconds."""
        return self.client.wait_terminal(run_id, timeout)

    def tasks(self, run_id: str) -> list[dict[str, Any]]:
        """The run's tasks with their states and attempt history."""
        return self.client.run_tasks(run_id)

    def logs(self, run_id: str) -> str:
        """Every log the run's attempts uploaded, as the API serves them ("" when none)."""
        return self.client.run_logs(run_id) or ""

    def cancel(self, run_id: str, reason: str = "cancelled by a test") -> dict[str, Any]:
        return self.client.cancel_run(run_id, reason)

    # --- diagnostics -------------------------------------------------------------------------

    def service_logs(self, lines: int = LOG_TAIL_LINES) -> dict[str, str]:
        """The last ``lines`` lines of each service's log."""
        logs = self.data_dir / "logs"
        return {
            path.stem: tail(path, lines) for path in sorted(logs.glob("*.log")) if path.is_file()
        }
