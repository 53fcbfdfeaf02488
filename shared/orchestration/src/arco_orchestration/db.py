"""Engine and session setup for SQLite (embedded default) and PostgreSQL."""

from __future__ import annotations

import os
import select
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, QueuePool, create_engine, event, make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import Session, sessionmaker

DEFAULT_DATA_DIR = Path(".arco")
SQLITE_BUSY_TIMEOUT_MS = 30_000


def default_database_url(data_dir: Path | None = None) -> str:
    """A SQLite file in the data directory (``ARCO_DATA_DIR``, default ``./.arco``)."""
    directory = data_dir or Path(os.environ.get("ARCO_DATA_DIR", str(DEFAULT_DATA_DIR)))
    return f"sqlite:///{directory / 'arco.db'}"


def database_url_from_env() -> str:
    """``ARCO_DATABASE_URL``, or the embedded SQLite default."""
    return os.environ.get("ARCO_DATABASE_URL", "").strip() or default_database_url()


def normalise_url(url: str) -> str:
    """Use psycopg 3 for PostgreSQL URLs given without a driver."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take over transaction control from the sqlite3 module so BEGIN IMMEDIATE below is
        # the only BEGIN: writers then queue on the busy timeout instead of failing on upgrade.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def make_engine(
    url: str | None = None, *, application_name: str | None = None, **kwargs: Any
) -> Engine:
    """Create the engine for ``url`` (default: ``ARCO_DATABASE_URL`` or embedded SQLite);
    on PostgreSQL its connections carry ``application_name`` (a service's name)."""
    url = normalise_url(url or database_url_from_env())
    if url.startswith("sqlite"):
        path = url.split("///", 1)[1] if "///" in url else ""
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}, **kwargs
        )
        _configure_sqlite(engine)
        return engine
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    if application_name and "application_name" not in make_url(url).query:
        # pg_stat_activity then says which service holds a connection (a URL's own wins).
        kwargs.setdefault("connect_args", {}).setdefault("application_name", application_name)
    engine = create_engine(url, **kwargs)
    if not kwargs.get("pool_pre_ping"):
        _check_out_live_connections(engine)
    return engine


def _check_out_live_connections(engine: Engine) -> None:
    """Hand out only live pooled connections, as ``pool_pre_ping`` would, without its round
    trip at every checkout (one per transaction, a good part of a short one's cost). An idle
    connection has nothing to read: a server that ended it (a restart, an administrator)
    has sent its goodbye and closed the socket, which is then readable. Only then is the
    connection pinged; a failed ping makes the pool replace it."""

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        if not (dbapi_connection.closed or dbapi_connection.broken):
            # poll, not select: select fails on descriptors above 1023, which a busy server
            # (many client connections) reaches.
            poller = select.poll()
            poller.register(dbapi_connection.fileno(), select.POLLIN)
            if not poller.poll(0):
                return
            try:
                if engine.dialect.do_ping(dbapi_connection):
                    return
            except engine.dialect.loaded_dbapi.Error:
                pass
        raise DisconnectionError("pooled connection closed by the server")


def is_postgres(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"


class Database:
    """An engine plus a session factory; ``transaction()`` is the unit of work."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @classmethod
    def from_url(cls, url: str | None = None, *, application_name: str | None = None) -> Database:
        return cls(make_engine(url, application_name=application_name))

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """One transaction: committed on success, rolled back on any exception."""
        with self._sessions() as session, session.begin():
            yield session

    @contextmanager
    def connection(self) -> Iterator[Connection]:
        """One transaction on a bare connection, for Core statements only (no ORM objects):
        committed on success, rolled back on any exception. It skips the session's own
        set-up, bookkeeping and teardown, about a third of a short transaction's CPU,
        which counts for the delivery pump's several small transactions per delivery."""
        with self.engine.begin() as connection:
            yield connection

    @property
    def pool_size(self) -> int | None:
        """How many connections the pool keeps open (``None``: not a sized pool). A server
        that runs more transactions at once than this opens overflow connections, and closes
        them again as soon as the pool has this many idle: a PostgreSQL backend started and
        ended per transaction under load."""
        pool = self.engine.pool
        return pool.size() if isinstance(pool, QueuePool) else None

    def dispose(self) -> None:
        self.engine.dispose()
