"""API test fixtures: an app on a fresh migrated database (SQLite and PostgreSQL), a client,
user credentials and task-token minting. The helpers themselves live in
``api_test_support`` so test modules can import them."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from services.api.tests.api_test_support import (
    EXAMPLE_MANIFEST,
    MANIFESTS,
    Api,
    Attempt,
    api_settings,
    user_headers,
)
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from arco_api.app import create_app
from arco_api.settings import ApiSettings
from arco_orchestration import facts
from arco_orchestration.db import Database, make_engine
from arco_orchestration.models import Base
from arco_orchestration.scope import Scope
from arco_testkit.values import TENANT, WORKSPACE


@pytest.fixture
def settings() -> ApiSettings:
    return api_settings()


@pytest.fixture
def app(settings: ApiSettings, database: Database) -> FastAPI:
    return create_app(settings, database)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def scope() -> Scope:
    return Scope(TENANT, WORKSPACE)


@pytest.fixture
def deploy(client: TestClient) -> Callable[..., dict[str, Any]]:
    """Deploy a manifest (the example by default) and return the 201 body."""

    def _deploy(manifest: dict[str, Any] | None = None) -> dict[str, Any]:
        response = client.post(
            MANIFESTS,
            content=json.dumps(manifest or EXAMPLE_MANIFEST),
            headers={**user_headers(), "Content-Type": "application/json"},
        )
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    return _deploy


@pytest.fixture
def dispatch(database: Database, scope: Scope) -> Callable[[str, str], facts.DispatchRequest]:
    """Request dispatch of a READY or RETRY_WAIT task, as the dispatcher's cycle does."""

    def _dispatch(run_id: str, task_key: str) -> facts.DispatchRequest:
        with database.transaction() as session:
            request = facts.request_dispatch(
                session, scope, run_id, task_key, now=datetime.now(UTC)
            )
        assert request is not None, f"{task_key} of {run_id} was not dispatchable"
        return request

    return _dispatch


@pytest.fixture
def api(client: TestClient, database: Database, deploy: Callable[..., dict[str, Any]]) -> Api:
    """The example manifest deployed, and the HTTP helpers."""
    deploy()
    return Api(client, database)


@pytest.fixture
def running(api: Api) -> Attempt:
    """A one-task run (``analytics.raw_orders``) dispatched and started: attempt 1 RUNNING."""
    attempt = api.dispatch(api.run())
    assert api.started(attempt).status_code == 200
    return attempt


@pytest.fixture
def make_client(database: Database) -> Iterator[Callable[..., TestClient]]:
    """Another app on the same database: ``make_client(clock=..., **settings_overrides)``."""
    clients: list[TestClient] = []

    def _make(clock: Callable[[], datetime] | None = None, **overrides: Any) -> TestClient:
        settings = api_settings(**overrides)
        app = (
            create_app(settings, database)
            if clock is None
            else create_app(settings, database, clock=clock)
        )
        test_client = TestClient(app)
        test_client.__enter__()
        clients.append(test_client)
        return test_client

    yield _make
    for test_client in clients:
        test_client.__exit__(None, None, None)


# --- a faster per-test PostgreSQL reset ------------------------------------------------------

_RESET_ENGINES: dict[str, Engine] = {}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path) -> str:
    """The root fixture, made cheaper on PostgreSQL: the suite's tables hold a handful of rows,
    so ``DELETE`` (children first) on one pooled connection is far quicker than ``TRUNCATE
    ... CASCADE`` (an exclusive lock and new files for every table), and the connections skip
    the synchronous commit."""
    if request.param == "sqlite":
        path = tmp_path / "arco.db"
        shutil.copy(sqlite_template, path)
        return f"sqlite:///{path}"
    # Durability is not under test: commits need not wait for the WAL flush.
    base = make_url(request.getfixturevalue("postgres_url"))
    fast = base.update_query_dict({"options": "-c synchronous_commit=off"})
    url: str = fast.render_as_string(hide_password=False)
    engine = _RESET_ENGINES.get(url)
    if engine is None:
        engine = _RESET_ENGINES[url] = make_engine(url, pool_size=1)
    with engine.begin() as connection:
        for table in reversed(Base.metadata.sorted_tables):
            connection.execute(table.delete())
    return url
