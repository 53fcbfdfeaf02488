"""A whole stack of real processes (api, worker, dispatcher, sweeper) per backend, started by
the same launcher as ``arco-stack up``, with timeouts shortened so repairs happen in seconds."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from arco_stack.client import ApiClient
from arco_stack.config import (
    QUICK_REPAIR_OVERRIDES,
    Ports,
    ServiceSpec,
    service_specs,
    stack_environment,
)
from arco_stack.databases import drop_postgres_database, recreate_postgres_database
from arco_stack.processes import Stack, migrate

from .e2e_handlers import e2e_manifest

REPO_ROOT = Path(__file__).resolve().parents[2]
PG_E2E_DATABASE = f"arco_e2e_{os.getpid()}"  # per session, as the root conftest's


def _postgres_url() -> str:
    configured = os.environ.get("ARCO_TEST_DATABASE_URL", "").strip()
    if not configured:
        pytest.skip("PostgreSQL end-to-end tests need ARCO_TEST_DATABASE_URL")
    return recreate_postgres_database(configured, PG_E2E_DATABASE)


@dataclass
class RunningStack:
    stack: Stack
    specs: dict[str, ServiceSpec]
    client: ApiClient

    def kill(self, name: str) -> None:
        """SIGKILL one service and forget it."""
        self.stack.kill(name)

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
    ports = Ports.free()
    overrides = {**QUICK_REPAIR_OVERRIDES, "PYTHONPATH": str(REPO_ROOT)}
    env = stack_environment(data_dir, ports=ports, database_url=database_url, overrides=overrides)
    migrate(env)
    specs = {spec.name: spec for spec in service_specs(ports)}
    specs["worker"] = replace(specs["worker"], args=("--worker", "tests.e2e.e2e_handlers:worker"))
    stack = Stack(data_dir, env)
    try:
        stack.start_all(specs.values())
        client = ApiClient.of_stack(env)
        client.deploy_manifest(e2e_manifest())
        yield RunningStack(stack, specs, client)
        client.close()
    finally:
        stack.stop()
        if database_url is not None:
            drop_postgres_database(os.environ["ARCO_TEST_DATABASE_URL"], PG_E2E_DATABASE)
