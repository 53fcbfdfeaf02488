"""Conditions on a set of keys whose SQL text is the same for any number of keys.

A list of values rendered into ``IN (...)`` makes a new statement text for every length: the
driver parses each text again (psycopg caches only texts it has seen) and PostgreSQL never
gets to prepare it. On PostgreSQL the keys go as arrays instead (``= ANY(:ids)``, and pairs
as the rows of ``unnest(:run_ids, :task_keys)``); SQLite, which has no arrays and no
prepared statements to gain, keeps an expanding ``IN``. Statements using these conditions
are built once per dialect (see ``store._RUN_WITH_TASK``) and run with :func:`key_params`
and :func:`pair_params`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ARRAY, ColumnElement, String, any_, bindparam, func, select, tuple_
from sqlalchemy.orm import QueryableAttribute

Column = ColumnElement[str] | QueryableAttribute[str]

DIALECTS = ("postgresql", "sqlite")


def _texts(name: str) -> Any:
    return bindparam(name, type_=ARRAY(String))


def key_match(column: Column) -> dict[str, ColumnElement[bool]]:
    """Per dialect: ``column`` is one of the keys bound by :func:`key_params`."""
    return {
        "postgresql": column == any_(_texts("keys")),
        "sqlite": column.in_(bindparam("keys", expanding=True)),
    }


def key_params(keys: Sequence[str]) -> dict[str, Any]:
    return {"keys": list(keys)}


def pair_match(run_id: Column, task_key: Column) -> dict[str, ColumnElement[bool]]:
    """Per dialect: ``(run_id, task_key)`` is one of the pairs bound by :func:`pair_params`."""
    pairs = (
        func.unnest(_texts("run_ids"), _texts("task_keys"))
        .table_valued("run_id", "task_key")
        .render_derived(name="pairs")
    )
    return {
        "postgresql": tuple_(run_id, task_key).in_(select(pairs.c.run_id, pairs.c.task_key)),
        "sqlite": tuple_(run_id, task_key).in_(bindparam("pairs", expanding=True)),
    }


def pair_params(dialect: str, pairs: Sequence[tuple[str, str]]) -> dict[str, Any]:
    if dialect == "postgresql":
        return {
            "run_ids": [run_id for run_id, _ in pairs],
            "task_keys": [task_key for _, task_key in pairs],
        }
    return {"pairs": list(pairs)}
