"""The chaos suite's PostgreSQL server and stacks of real processes on it."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from arco_stack.client import ApiClient
from arco_stack.config import ENV_FILE, ServiceSpec, free_port
from arco_stack.harness import ArcoStack, HarnessOptions
from arco_stack.processes import Stack

from .chaos_handlers import EXECUTIONS_ENV, TASKS_ENV
from .postgres_server import PostgresServer, find_bindir

REPO_ROOT = Path(__file__).resolve().parents[2]
WORKER = "tests.chaos.chaos_handlers:worker"


def _setting(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


@dataclass(frozen=True)
class ChaosSize:
    """``ARCO_CHAOS_TASKS`` (tasks in the run), ``ARCO_CHAOS_KILLS`` (service kills),
    ``ARCO_CHAOS_SEED``: CI runs the defaults; raise them for a longer soak."""

    tasks: int = _setting(TASKS_ENV, 200)
    kills: int = _setting("ARCO_CHAOS_KILLS", 8)
    seed: int = _setting("ARCO_CHAOS_SEED", 20261127)


@pytest.fixture(scope="module")
def chaos_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server of the suite's own, so crashing it disturbs no other test."""
    if not os.environ.get("ARCO_TEST_DATABASE_URL", "").strip():
        pytest.skip("the chaos suite runs on PostgreSQL: set ARCO_TEST_DATABASE_URL (CI does)")
    bindir = find_bindir()
    if bindir is None:
        pytest.fail("the chaos suite needs the PostgreSQL server binaries (initdb, pg_ctl)")
    server = PostgresServer.create(bindir, free_port())
    try:
        server.start()
        yield server
    finally:
        server.destroy()


@dataclass
class StackHandle:
    """One stack of the four services (started by the plugin's harness), and what a test
    needs to drive and check it."""

    arco: ArcoStack

    @property
    def stack(self) -> Stack:
        return self.arco.processes

    @property
    def specs(self) -> dict[str, ServiceSpec]:
        return self.arco.specs()

    @property
    def client(self) -> ApiClient:
        return self.arco.client

    @property
    def api_log(self) -> Path:
        return self.arco.data_dir / "logs" / "api.log"

    def stop(self) -> None:
        self.arco.stop()


def start_stack(
    data_dir: Path, database_url: str, executions: Path, *, tasks: int, worker_concurrency: int
) -> StackHandle:
    """Start api, worker (the chaos handlers), dispatcher and sweeper on free ports, as the
    pytest plugin does (with its quick repairs). Stacks started in data directories holding
    the same ``stack.env`` share their secrets."""
    overrides = {
        EXECUTIONS_ENV: str(executions),
        TASKS_ENV: str(tasks),
        "ARCO_WORKER_CONCURRENCY": str(worker_concurrency),
        "ARCO_LOG_LEVEL": "info",
        # The sweeper's safety nets within a minute, so the run ends within the test's time
        # even if a crash strands a task where only a repair can reach it.
        "ARCO_FLOW_SWEEP_STUCK_READY_SECS": "30",
        "ARCO_FLOW_SWEEP_STUCK_DISPATCHED_SECS": "60",
    }
    options = HarnessOptions(
        worker=WORKER, worker_dir=REPO_ROOT, database_url=database_url, overrides=overrides
    )
    return StackHandle(ArcoStack(options, data_dir).start())


def share_secrets(source: Path, target: Path) -> None:
    """Give the stack of ``target`` the secrets of the stack of ``source``."""
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy2(source / ENV_FILE, target / ENV_FILE)
