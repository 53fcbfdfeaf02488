"""The pool's check of a PostgreSQL connection at checkout (``db._check_out_live_connections``,
in place of ``pool_pre_ping``): a live idle connection is handed out again without a round
trip, one the server ended is replaced before any statement fails on it."""

from __future__ import annotations

import os
import select
import time
from typing import Any

import psycopg
import pytest
from sqlalchemy import event, text

from arco_orchestration.db import Database

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.parametrize("database_url", ["postgres"], indirect=True),
]


def _backend_pid(database: Database) -> int:
    with database.transaction() as session:
        return int(session.execute(text("SELECT pg_backend_pid()")).scalar_one())


def _pinged(database: Database) -> list[object]:
    pings: list[object] = []
    original = database.engine.dialect.do_ping

    def counting(dbapi_connection: Any) -> bool:
        pings.append(dbapi_connection)
        return original(dbapi_connection)

    database.engine.dialect.do_ping = counting  # type: ignore[method-assign]
    return pings


def test_a_live_idle_connection_is_reused_without_a_ping(database: Database) -> None:
    pings = _pinged(database)
    first = _backend_pid(database)
    assert _backend_pid(database) == first
    assert pings == []


def test_a_connection_the_server_ended_is_replaced_at_checkout(database: Database) -> None:
    pings = _pinged(database)
    checkouts: list[object] = []
    event.listen(database.engine, "checkout", lambda *args: checkouts.append(args[0]))
    ended = _backend_pid(database)
    url = database.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (ended,))
    # The server's goodbye reaches the idle pooled connection's socket.
    (pooled,) = set(checkouts)
    deadline = time.monotonic() + 10
    while not select.select([pooled.fileno()], [], [], 0.05)[0]:  # type: ignore[attr-defined]
        assert time.monotonic() < deadline, "the terminated connection never became readable"

    assert _backend_pid(database) != ended  # no error: a new connection served it
    assert len(pings) == 1


def test_the_check_works_on_descriptors_above_select_s_limit(database_url: str) -> None:
    """A busy server holds more than 1,024 descriptors (client connections): the check must
    not use select(), which refuses descriptors from 1,024 on."""
    filler: list[int] = []
    try:
        while len(filler) < 1100:
            filler.append(os.open(os.devnull, os.O_RDONLY))
        database = Database.from_url(database_url)
        try:
            first = _backend_pid(database)
            pooled = database.engine.raw_connection()
            try:
                assert pooled.dbapi_connection is not None
                assert pooled.dbapi_connection.fileno() >= 1024
            finally:
                pooled.close()
            assert _backend_pid(database) == first
        finally:
            database.dispose()
    finally:
        for fd in filler:
            os.close(fd)
