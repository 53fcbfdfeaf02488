"""The API never runs more blocking database calls at once than its pool keeps connections
for, so a burst of callbacks waits for a thread rather than opening overflow connections."""

from __future__ import annotations

from anyio import to_thread
from fastapi import FastAPI
from fastapi.testclient import TestClient
from services.api.tests.api_test_support import sqlite_only

from arco_orchestration.db import Database


async def _default_thread_tokens() -> float:
    return to_thread.current_default_thread_limiter().total_tokens


@sqlite_only
def test_the_thread_pool_is_as_large_as_the_connection_pool(
    app: FastAPI, database: Database
) -> None:
    assert database.pool_size is not None
    with TestClient(app) as client:
        portal = client.portal
        assert portal is not None
        assert portal.call(_default_thread_tokens) == database.pool_size


def test_a_database_without_a_sized_pool_has_no_pool_size() -> None:
    assert Database.from_url("sqlite:///:memory:").pool_size is None
