"""Engine setup: on PostgreSQL each service's connections carry its name, so an operator
reading ``pg_stat_activity`` sees which service holds which connection."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text, update

from arco_orchestration.db import Database
from arco_orchestration.models import Run
from arco_testkit.facts import load_run, planned, trigger


@pytest.mark.postgres
def test_connections_carry_the_services_name_unless_the_url_names_one(postgres_url: str) -> None:
    named = Database.from_url(postgres_url, application_name="arco-dispatcher")
    own = Database.from_url(f"{postgres_url}?application_name=mine", application_name="arco-api")
    unnamed = Database.from_url(postgres_url)
    try:
        with named.transaction() as session:
            assert session.scalar(text("SHOW application_name")) == "arco-dispatcher"
        with own.transaction() as session:
            assert session.scalar(text("SHOW application_name")) == "mine"
        with unnamed.transaction() as session:
            assert session.scalar(text("SHOW application_name")) != "arco-dispatcher"
    finally:
        for db in (named, own, unnamed):
            db.dispose()


def test_sqlite_ignores_the_name(tmp_path: Path) -> None:
    db = Database.from_url(f"sqlite:///{tmp_path}/arco.db", application_name="arco-api")
    try:
        with db.transaction() as session:
            assert session.scalar(text("SELECT 1")) == 1
    finally:
        db.dispose()


def test_a_bare_connection_commits_or_rolls_back_as_a_transaction(database: Database) -> None:
    """``Database.connection`` (Core statements, no session) is one transaction as well:
    committed when the block ends, rolled back when it raises."""
    trigger(database, "run1", [planned("a")])
    with database.connection() as connection:
        connection.execute(update(Run).where(Run.run_id == "run1").values(cancel_reason="kept"))

    def abort() -> None:
        with database.connection() as connection:
            connection.execute(update(Run).where(Run.run_id == "run1").values(cancel_reason="lost"))
            raise RuntimeError("abort")

    with pytest.raises(RuntimeError):
        abort()
    assert load_run(database, "run1").cancel_reason == "kept"
