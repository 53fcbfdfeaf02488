"""Planner statistics for the busy tables of a new PostgreSQL database.

PostgreSQL plans from what ``ANALYZE`` last saw, and autovacuum analyzes a table at most once
per ``autovacuum_naptime`` (a minute by default). In a database that was just created (a new
deployment, CI, a benchmark) the busy tables fill from empty with no statistics, and each
prepared statement keeps the generic plan it chose while they were a few pages: sequential
scans of every task for each held check, claim and lookup, a cost that grows with the table
until autovacuum's first visit replaces the plans.

:func:`refresh_stale` analyzes a busy table once the rows changed since its last analysis
outnumber what the planner believes it holds (and at least ``MIN_CHANGED_ROWS``): about at
each doubling, so a table growing from empty is analyzed a few times in its first minutes,
and one that autovacuum keeps (it analyzes after a tenth changed) practically never. Each
``ANALYZE`` makes the plans that use the table plan again at their next execution.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, Engine, bindparam, text

# The tables every task writes, and the ones its facts read by key.
BUSY_TABLES = ("dispatch_outbox", "runs", "task_dependencies", "task_events", "tasks")
# Below this many changed rows a table is left to autovacuum: its plans barely differ.
MIN_CHANGED_ROWS = 500

_STALE = text(
    """
    SELECT s.relname
    FROM pg_stat_user_tables AS s
    JOIN pg_class AS c ON c.oid = s.relid
    WHERE s.schemaname = current_schema()
      AND s.relname IN :tables
      AND s.n_mod_since_analyze >= GREATEST(:min_changed, c.reltuples)
      -- Only its owner may analyze a table (PostgreSQL 16 and older); others are skipped.
      AND pg_has_role(c.relowner, 'USAGE')
    ORDER BY s.relname
    """
).bindparams(bindparam("tables", expanding=True))


def stale_tables(engine: Engine, tables: Sequence[str] = BUSY_TABLES) -> list[str]:
    """The busy tables whose statistics are out of date by the rule above; none on other
    databases than PostgreSQL."""
    if engine.dialect.name != "postgresql":
        return []
    with engine.connect() as connection:
        return _stale(connection, tables)


def _stale(connection: Connection, tables: Sequence[str]) -> list[str]:
    found = connection.execute(
        _STALE, {"tables": list(tables), "min_changed": MIN_CHANGED_ROWS}
    ).scalars()
    return [str(name) for name in found]


def refresh_stale(engine: Engine, tables: Sequence[str] = BUSY_TABLES) -> list[str]:
    """``ANALYZE`` each stale busy table; returns the tables analyzed. ``ANALYZE`` reads a
    bounded sample (300 x ``default_statistics_target`` rows) and takes no lock that blocks
    reads or writes. One connection for the check and the analyses, in autocommit mode: each
    table's new statistics are published as soon as it is analyzed."""
    if engine.dialect.name != "postgresql":
        return []
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        stale = _stale(connection, tables)
        for table in stale:
            # A name from the fixed list above, never from input.
            connection.execute(text(f'ANALYZE "{table}"'))
    return stale
