"""Fresh PostgreSQL databases for stacks under test or benchmark."""

from __future__ import annotations

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from arco_orchestration.db import normalise_url


def _administer(server_url: str, name: str, *, create: bool) -> str:
    admin_url = make_url(normalise_url(server_url))
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            quoted = admin.dialect.identifier_preparer.quote(name)
            connection.execute(text(f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)"))
            if create:
                connection.execute(text(f"CREATE DATABASE {quoted}"))
    finally:
        admin.dispose()
    return admin_url.set(database=name).render_as_string(hide_password=False)


def recreate_postgres_database(server_url: str, name: str) -> str:
    """Drop (closing its connections) and create database ``name`` on the server of
    ``server_url``; returns the URL of the new database."""
    return _administer(server_url, name, create=True)


def drop_postgres_database(server_url: str, name: str) -> None:
    """Drop database ``name`` (closing its connections) if it exists."""
    _administer(server_url, name, create=False)
