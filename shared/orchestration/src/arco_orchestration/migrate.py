"""Schema migrations: upgrade to head, and the startup check that the schema is current."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
MIGRATE_COMMAND = "arco-orchestration migrate"


class SchemaNotCurrent(RuntimeError):  # noqa: N818 - reads as a sentence
    """The database schema is not at the head revision."""


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(_config()).get_current_head()
    if head is None:
        raise RuntimeError("no migrations found")
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Upgrade the database to ``revision`` (default: head)."""
    config = _config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def schema_problem(engine: Engine) -> str | None:
    """Why the schema is not usable, or ``None`` when it is at head."""
    try:
        current = current_revision(engine)
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready", with its reason
        return f"database unreachable: {type(exc).__name__}: {exc}"
    head = head_revision()
    if current != head:
        return f"schema at revision {current or 'none'}, expected {head}: run `{MIGRATE_COMMAND}`"
    return None


def require_current_schema(engine: Engine) -> None:
    """Refuse to start unless the schema is at head; the message names the command to run."""
    if problem := schema_problem(engine):
        raise SchemaNotCurrent(problem)
