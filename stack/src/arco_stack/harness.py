"""A whole stack around a worker under test, for test suites (the pytest plugin's
``arco_stack`` fixture): api, dispatcher and sweeper as real processes on free ports, the
worker started as ``arco-worker --worker MODULE:ATTR`` (or one already running anywhere),
SQLite in a temporary folder, or PostgreSQL from a URL or a testcontainers container."""

from __future__ import annotations

import importlib
import os
import sys
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx

from arco_stack.client import ApiClient, user_token
from arco_stack.config import QUICK_REPAIR_OVERRIDES, Ports, service_specs, stack_environment
from arco_stack.containers import ContainerError, postgres_container
from arco_stack.processes import Stack, migrate, tail
from arco_stack.worker_manifest import manifest_of
from arco_worker import Worker

LOG_TAIL_LINES = 30
NEXT_CURSOR_HEADER = "x-arco-next-cursor"


class HarnessError(RuntimeError):
    """The stack around the worker could not be set up; the message says why."""


@dataclass(frozen=True)
class HarnessOptions:
    """Where the worker and the database come from."""

    worker: str | None = None  # MODULE:ATTR, started like `arco-stack up --worker`
    worker_url: str | None = None  # a worker already running (any language)
    database_url: str | None = None
    postgres_container: bool = False
    import_path: Path | None = None  # put on the worker's PYTHONPATH (the project root)


def load_worker(spec: str) -> Worker:
    """Import ``MODULE:ATTR`` and return that :class:`Worker`."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise HarnessError(f"a worker is named MODULE:ATTR, not {spec!r}")
    try:
        found = getattr(importlib.import_module(module_name), attribute, None)
    except ImportError as exc:
        raise HarnessError(f"cannot import {module_name!r}: {exc}") from None
    if not isinstance(found, Worker):
        raise HarnessError(f"{spec!r} is not an arco_worker.Worker")
    return found


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
        self._worker: Worker | None = None
        self._exits = ExitStack()
        self._stack: Stack | None = None
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
            if options.import_path is not None and str(options.import_path) not in sys.path:
                sys.path.insert(0, str(options.import_path))
            self._worker = load_worker(options.worker)
        database_url = options.database_url
        if options.postgres_container:
            try:
                database_url = self._exits.enter_context(postgres_container())
            except ContainerError as exc:
                raise HarnessError(str(exc)) from None
        ports = Ports.free()
        self.env = stack_environment(
            self.data_dir, ports=ports, database_url=database_url, overrides=self._overrides()
        )
        migrate(self.env)
        specs = {spec.name: spec for spec in service_specs(ports)}
        if options.worker is not None:
            specs["worker"] = replace(specs["worker"], args=("--worker", options.worker))
        else:
            del specs["worker"]
        self._stack = Stack(self.data_dir, self.env)
        self._stack.start_all(specs.values())
        self._client = ApiClient.of_stack(self.env)

    def _overrides(self) -> dict[str, str]:
        overrides = {**QUICK_REPAIR_OVERRIDES, "ARCO_WORKER_SAMPLE_TASKS": "false"}
        if self.options.import_path is not None:
            paths = [str(self.options.import_path), os.environ.get("PYTHONPATH", "")]
            overrides["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
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
        if self._stack is not None:
            self._stack.stop()
        self._exits.close()

    # --- the API -----------------------------------------------------------------------------

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
            manifest = manifest_of(self._worker)
        return self.client.deploy_manifest(manifest)

    def trigger(
        self,
        *keys: str,
        partition: str | None = None,
        wait: bool = True,
        timeout: float = 60.0,
    ) -> dict[str, Any]:
        """Trigger a run of ``keys``; with ``wait``, return the run once it ended (or raise
        ``TimeoutError``), else as created. The run document is the API's."""
        if not keys:
            raise ValueError("trigger() needs at least one task key")
        body: dict[str, Any] = {"selection": list(keys)}
        if partition is not None:
            body["partitionKey"] = partition
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
        url = f"{self.api_url}/api/v1/workspaces/{self.env['ARCO_WORKSPACE_ID']}/runs/{run_id}/logs"
        headers = {"Authorization": f"Bearer {self.token()}"}
        pages: list[str] = []
        params: dict[str, str] = {"limit": "200"}
        while True:
            response = httpx.get(url, headers=headers, params=params, timeout=30.0)
            if response.status_code == 404 and not pages:
                return ""  # nothing uploaded (yet)
            response.raise_for_status()
            pages.append(response.text)
            cursor = response.headers.get(NEXT_CURSOR_HEADER)
            if cursor is None:
                return "".join(pages)
            params["cursor"] = cursor

    def cancel(self, run_id: str, reason: str = "cancelled by a test") -> dict[str, Any]:
        return self.client.cancel_run(run_id, reason)

    # --- diagnostics -------------------------------------------------------------------------

    def service_logs(self, lines: int = LOG_TAIL_LINES) -> dict[str, str]:
        """The last ``lines`` lines of each service's log."""
        logs = self.data_dir / "logs"
        return {
            path.stem: tail(path, lines) for path in sorted(logs.glob("*.log")) if path.is_file()
        }
