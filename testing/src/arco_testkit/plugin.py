"""The pytest plugin of the workspace (entry point ``pytest11``): a migrated database per test,
on SQLite and, when ``ARCO_TEST_DATABASE_URL`` names a PostgreSQL server, on PostgreSQL too;
the fake ``clock`` and the recording ``worker`` endpoint. A suite's conftest may override any
of them (the api suite has a faster PostgreSQL reset). Without that variable but with a Docker
engine, the PostgreSQL cases run on a server in a container."""

from __future__ import annotations

import os
import shutil
import sys
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TextIO

import pytest
import structlog
from sqlalchemy import text

from arco_orchestration.db import Database, make_engine
from arco_orchestration.migrate import upgrade
from arco_orchestration.models import Base
from arco_stack.containers import ContainerError, docker_engine_problem, postgres_container
from arco_stack.databases import drop_postgres_database, recreate_postgres_database
from arco_testkit.clock import T0, FakeClock
from arco_testkit.dispatching import RecordingWorker

PG_URL_ENV = "ARCO_TEST_DATABASE_URL"
_CONTAINER = pytest.StashKey[ExitStack]()


def pytest_configure(config: pytest.Config) -> None:
    """Without ``ARCO_TEST_DATABASE_URL`` but with a Docker engine, the PostgreSQL cases run on
    a server in a container (testcontainers, image ``$ARCO_TEST_POSTGRES_IMAGE``, default
    ``postgres:16``), as the pytest plugin's ``--arco-postgres container`` does."""
    if os.environ.get(PG_URL_ENV, "").strip() or docker_engine_problem() is not None:
        return
    stack = ExitStack()
    try:
        os.environ[PG_URL_ENV] = stack.enter_context(postgres_container())
    except ContainerError as exc:
        stack.close()
        # Not a warning: the suite turns warnings into errors, and SQLite still runs.
        sys.stderr.write(f"conftest: no PostgreSQL container, its cases are skipped: {exc}\n")
        return
    config.stash[_CONTAINER] = stack


@pytest.fixture(scope="session")
def _log_stream() -> Iterator[TextIO]:
    """A file object of the tests' own over standard output's descriptor (so pytest still
    captures what it receives)."""
    stream = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    yield stream
    stream.close()


@pytest.fixture(autouse=True)
def _structlog_apart_from_pytest_capture(_log_stream: TextIO) -> None:
    """In-process servers (the worker's loop, callback APIs) go on logging from their threads
    after a test body returns, while pytest reads and truncates its capture file object. On
    Python 3.11 one file object written and truncated from two threads can crash the
    interpreter (a segfault in CI, cpython gh-119506), so structlog writes to a file object of
    its own. A test may still configure structlog as it needs (``capture_logs`` and the like)."""
    structlog.configure(
        logger_factory=structlog.PrintLoggerFactory(_log_stream), cache_logger_on_first_use=False
    )


def pytest_unconfigure(config: pytest.Config) -> None:
    stack = config.stash.get(_CONTAINER, None)
    if stack is not None:
        os.environ.pop(PG_URL_ENV, None)
        stack.close()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated once; each test gets a copy."""
    path = tmp_path_factory.mktemp("sqlite-template") / "arco.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    engine.dispose()
    return path


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL database of this session's own on the server of
    ``ARCO_TEST_DATABASE_URL``, migrated once and dropped at the end. Named after the process,
    so sessions running side by side on one server (a developer's and CI's) never meet."""
    with _migrated_postgres(f"arco_pytest_{os.getpid()}") as url:
        yield url


@contextmanager
def _migrated_postgres(name: str) -> Iterator[str]:
    """Database ``name`` created and migrated on the server of ``ARCO_TEST_DATABASE_URL``
    (the test is skipped without it), dropped afterwards; yields its URL."""
    server = os.environ.get(PG_URL_ENV, "").strip()
    if not server:
        pytest.skip(f"PostgreSQL tests need {PG_URL_ENV} (CI sets it; .ci/run starts the server)")
    url = recreate_postgres_database(server, name)
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    try:
        yield url
    finally:
        drop_postgres_database(server, name)


@contextmanager
def own_postgres_database(prefix: str) -> Iterator[Database]:
    """A migrated PostgreSQL database of the caller's own, dropped afterwards: for what the
    session's shared one cannot promise, such as tables PostgreSQL has never analyzed."""
    with _migrated_postgres(f"{prefix}_{uuid.uuid4().hex[:12]}") as url:
        database = Database.from_url(url)
        try:
            yield database
        finally:
            database.dispose()


def without_autovacuum(database: Database) -> None:
    """Keep autovacuum off every table of ``database`` (its own, see above), so that no
    statistics appear while a test relies on their absence."""
    with database.engine.begin() as connection:
        for table in Base.metadata.sorted_tables:
            connection.execute(text(f'ALTER TABLE "{table.name}" SET (autovacuum_enabled = off)'))


def flush_table_counts(database: Database) -> None:
    """Make the row counts of writes made on ``database``'s pooled connection visible in
    ``pg_stat_user_tables`` now: a backend sends them at most once a second, or ten seconds
    later when idle. A single-threaded test's writes all go through that one connection."""
    with database.engine.connect() as connection:
        connection.execute(text("SELECT pg_stat_force_next_flush()"))


def _truncate_all(db: Database) -> None:
    tables = ", ".join(table.name for table in Base.metadata.sorted_tables)
    with db.engine.begin() as connection:
        connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path) -> str:
    """The URL of an empty, migrated database: a fresh SQLite file, or the session's
    PostgreSQL database with every table emptied."""
    if request.param == "sqlite":
        path = tmp_path / "arco.db"
        shutil.copy(sqlite_template, path)
        return f"sqlite:///{path}"
    url: str = request.getfixturevalue("postgres_url")
    db = Database.from_url(url)
    _truncate_all(db)
    db.dispose()
    return url


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    db = Database.from_url(database_url)
    yield db
    db.dispose()


@pytest.fixture
def clock() -> FakeClock:
    """A clock at ``T0`` that moves only when the test says so."""
    return FakeClock(T0)


@pytest.fixture
def worker() -> Iterator[RecordingWorker]:
    """A worker endpoint on loopback answering 200 unless a test sets ``responder``."""
    server = RecordingWorker().start()
    yield server
    server.stop()
