"""A whole stack of real processes (api, worker, dispatcher, sweeper) per backend, started by
the same launcher as ``arco-stack up``, with timeouts shortened so repairs happen in seconds."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from arco_orchestration.db import normalise_url
from arco_stack.client import ApiClient, user_token
from arco_stack.config import Ports, ServiceSpec, service_specs, stack_environment
from arco_stack.processes import Stack, migrate

from .e2e_handlers import e2e_manifest

REPO_ROOT = Path(__file__).resolve().parents[2]
PG_E2E_DATABASE = "arco_e2e"
# Short timeouts: a silent worker is reaped 30 s (the planned heartbeat timeout floor) + 1 s
# after its last heartbeat, and retries wait about a second.
E2E_OVERRIDES = {
    "ARCO_TASK_HEARTBEAT_TIMEOUT_SECS": "30",
    "ARCO_FLOW_SWEEP_HEARTBEAT_GRACE_SECS": "1",
    "ARCO_FLOW_SWEEP_INTERVAL_SECS": "1",
    "ARCO_RETRY_BACKOFF_BASE_SECS": "1",
    "ARCO_FLOW_DISPATCH_INTERVAL_MS": "200",
    "ARCO_WORKER_CANCEL_GRACE_SECS": "5",
    "ARCO_WORKER_SHUTDOWN_GRACE_SECS": "1",
}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _postgres_url() -> str:
    configured = os.environ.get("ARCO_TEST_DATABASE_URL", "").strip()
    if not configured:
        pytest.skip("PostgreSQL end-to-end tests need ARCO_TEST_DATABASE_URL")
    admin_url = make_url(normalise_url(configured))
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f"DROP DATABASE IF EXISTS {PG_E2E_DATABASE} WITH (FORCE)"))
        connection.execute(text(f"CREATE DATABASE {PG_E2E_DATABASE}"))
    admin.dispose()
    return admin_url.set(database=PG_E2E_DATABASE).render_as_string(hide_password=False)


@dataclass
class RunningStack:
    stack: Stack
    specs: dict[str, ServiceSpec]
    client: ApiClient

    def kill(self, name: str) -> None:
        """SIGKILL one service and forget it."""
        service = self.stack.service(name)
        service.process.kill()
        service.process.wait()
        service.log_file.close()
        self.stack.services.remove(service)

    def restart(self, name: str) -> None:
        self.stack.wait_ready(self.stack.start(self.specs[name]))


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def e2e(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningStack]:
    data_dir = tmp_path_factory.mktemp(f"stack-{request.param}")
    database_url = _postgres_url() if request.param == "postgres" else None
    ports = Ports(
        api=_free_port(), dispatcher=_free_port(), sweeper=_free_port(), worker=_free_port()
    )
    overrides = {**E2E_OVERRIDES, "PYTHONPATH": str(REPO_ROOT)}
    env = stack_environment(data_dir, ports=ports, database_url=database_url, overrides=overrides)
    migrate(env)
    specs = {spec.name: spec for spec in service_specs(ports)}
    specs["worker"] = replace(specs["worker"], args=("--worker", "tests.e2e.e2e_handlers:worker"))
    stack = Stack(data_dir, env)
    try:
        services = [stack.start(spec) for spec in specs.values()]
        for service in services:
            stack.wait_ready(service, timeout=120)
        token = user_token(env["ARCO_JWT_SECRET"], env["ARCO_TENANT_ID"], env["ARCO_WORKSPACE_ID"])
        client = ApiClient(env["ARCO_FLOW_CALLBACK_BASE_URL"], token, env["ARCO_WORKSPACE_ID"])
        client.deploy_manifest(e2e_manifest())
        yield RunningStack(stack, specs, client)
        client.close()
    finally:
        stack.stop()
