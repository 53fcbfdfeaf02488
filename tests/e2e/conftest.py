"""A whole stack of real processes (api, worker, dispatcher, sweeper) per backend, started by
the pytest plugin we ship (``arco_stack_factory``) around the suite's own worker, with the
sweeper's quick repairs so a lost task is repaired in seconds."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from arco_stack.databases import drop_postgres_database, recreate_postgres_database
from arco_stack.harness import ArcoStack
from arco_stack.pytest_plugin import ArcoStackFactory

from .e2e_handlers import e2e_manifest

REPO_ROOT = Path(__file__).resolve().parents[2]
WORKER = "tests.e2e.e2e_handlers:worker"
PG_E2E_DATABASE = f"arco_e2e_{os.getpid()}"  # per session, as the root conftest's
# The verification checklist runs the demo's tasks: serve the sample handlers beside ours.
OVERRIDES = {"ARCO_WORKER_SAMPLE_TASKS": "true"}


def _postgres_url() -> str:
    configured = os.environ.get("ARCO_TEST_DATABASE_URL", "").strip()
    if not configured:
        pytest.skip("PostgreSQL end-to-end tests need ARCO_TEST_DATABASE_URL")
    return recreate_postgres_database(configured, PG_E2E_DATABASE)


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def e2e(
    request: pytest.FixtureRequest, arco_stack_factory: ArcoStackFactory
) -> Iterator[ArcoStack]:
    database_url = _postgres_url() if request.param == "postgres" else None
    try:
        stack = arco_stack_factory(
            worker=WORKER, worker_dir=REPO_ROOT, database_url=database_url, overrides=OVERRIDES
        )
        stack.deploy(e2e_manifest())
        yield stack
        stack.stop()
    finally:
        if database_url is not None:
            drop_postgres_database(os.environ["ARCO_TEST_DATABASE_URL"], PG_E2E_DATABASE)
