"""Schema migrations (design D2): ``upgrade`` reaches head on empty SQLite and PostgreSQL
databases, the startup check names ``arco-orchestration migrate``, the console entry works,
and the models match the migrations."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, create_engine, inspect, text
from sqlalchemy.engine import make_url

from arco_orchestration import cli
from arco_orchestration.db import make_engine, normalise_url
from arco_orchestration.migrate import (
    MIGRATE_COMMAND,
    SchemaNotCurrent,
    current_revision,
    head_revision,
    require_current_schema,
    schema_problem,
    upgrade,
)
from arco_orchestration.models import Base

PG_URL_ENV = "ARCO_TEST_DATABASE_URL"


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'data' / 'arco.db'}"


@pytest.fixture
def empty_postgres_url() -> Iterator[str]:
    """A throwaway empty database on the server of ``ARCO_TEST_DATABASE_URL``."""
    configured = os.environ.get(PG_URL_ENV, "").strip()
    if not configured:
        pytest.skip(f"PostgreSQL tests need {PG_URL_ENV}")
    name = f"arco_migrations_{uuid.uuid4().hex[:12]}"
    admin_url = make_url(normalise_url(configured))
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f"CREATE DATABASE {name}"))
        yield admin_url.set(database=name).render_as_string(hide_password=False)
        with admin.connect() as connection:
            connection.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    finally:
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_url(request: pytest.FixtureRequest, sqlite_url: str) -> str:
    if request.param == "sqlite":
        return sqlite_url
    url: str = request.getfixturevalue("empty_postgres_url")
    return url


@pytest.fixture
def engine(empty_url: str) -> Iterator[Engine]:
    created = make_engine(empty_url)
    yield created
    created.dispose()


def table_names(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names())


def test_head_revision_is_the_single_head() -> None:
    assert head_revision() == "0004"


def test_schema_problem_names_the_migrate_command_until_upgraded(engine: Engine) -> None:
    problem = schema_problem(engine)
    assert problem is not None
    assert MIGRATE_COMMAND == "arco-orchestration migrate"
    assert problem == (
        f"schema at revision none, expected {head_revision()}: run `arco-orchestration migrate`"
    )
    with pytest.raises(SchemaNotCurrent, match="arco-orchestration migrate"):
        require_current_schema(engine)
    upgrade(engine)
    assert schema_problem(engine) is None
    require_current_schema(engine)


def test_upgrade_on_an_empty_database_reaches_head(engine: Engine) -> None:
    assert current_revision(engine) is None
    assert table_names(engine) == set()
    upgrade(engine)
    assert current_revision(engine) == head_revision()
    assert table_names(engine) == {table.name for table in Base.metadata.sorted_tables} | {
        "alembic_version"
    }
    upgrade(engine)  # a second upgrade is a no-op
    assert current_revision(engine) == head_revision()


def test_models_match_the_migrations(engine: Engine) -> None:
    upgrade(engine)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, Base.metadata)
    assert differences == []


def test_migrate_console_entry_upgrades_the_database(
    empty_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["migrate", "--database-url", empty_url]) == 0
    assert capsys.readouterr().out == f"database at revision {head_revision()}\n"
    engine = make_engine(empty_url)
    try:
        assert schema_problem(engine) is None
    finally:
        engine.dispose()
    # running it again is harmless
    assert cli.main(["migrate", "--database-url", empty_url]) == 0


def test_migrate_console_entry_reads_arco_database_url(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ARCO_DATABASE_URL", sqlite_url)
    assert cli.main(["migrate"]) == 0
    assert capsys.readouterr().out.endswith(f"{head_revision()}\n")
    engine = make_engine(sqlite_url)
    try:
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()


def test_heads_command_prints_the_head(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["heads"]) == 0
    assert capsys.readouterr().out == f"{head_revision()}\n"


def test_schema_problem_of_an_unreachable_database(tmp_path: Path) -> None:
    directory = tmp_path / "a-directory"
    directory.mkdir()
    engine = make_engine(f"sqlite:///{directory}")
    try:
        problem = schema_problem(engine)
    finally:
        engine.dispose()
    assert problem is not None
    assert problem.startswith("database unreachable: OperationalError")


def test_the_visibility_gating_index_holds_only_unpublished_outputs(engine: Engine) -> None:
    """Migration 0004: a partial index, so the run list's state filter reads the few tasks
    whose required output is not visible, and every other task costs it nothing."""
    upgrade(engine)
    (index,) = [
        found
        for found in inspect(engine).get_indexes("tasks")
        if found["name"] == "ix_tasks_visibility_gating_run_id"
    ]
    assert index["column_names"] == ["run_id"]
    with engine.connect() as connection:
        if engine.dialect.name == "postgresql":
            definition = connection.scalar(
                text("SELECT indexdef FROM pg_indexes WHERE indexname = :name"),
                {"name": index["name"]},
            )
        else:
            definition = connection.scalar(
                text("SELECT sql FROM sqlite_master WHERE name = :name"), {"name": index["name"]}
            )
    assert "WHERE" in str(definition)
    assert "'FAILED'" in str(definition)
    assert "'PENDING'" in str(definition)
