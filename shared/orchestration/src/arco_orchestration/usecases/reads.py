"""The read side of the run API: run list and detail, task views (design D3).

Bodies are built by :mod:`arco_orchestration.queries`; these functions add the transaction,
the query-parameter rules and the 404s.
"""

from __future__ import annotations

from typing import Any

from arco_orchestration import queries
from arco_orchestration.db import Database
from arco_orchestration.scope import Scope
from arco_orchestration.states import PublicRunState
from arco_orchestration.usecases.errors import bad_request, not_found

MAX_PAGE = 200


def list_runs(
    db: Database, scope: Scope, *, limit: int, cursor: str | None, state: str | None
) -> dict[str, Any]:
    """A page of runs, newest first; ``state`` filters by public state."""
    if not 1 <= limit <= MAX_PAGE:
        raise bad_request(f"limit must be between 1 and {MAX_PAGE}")
    wanted: PublicRunState | None = None
    if state is not None:
        try:
            wanted = PublicRunState(state)
        except ValueError:
            raise bad_request(f"invalid state filter: {state}") from None
    with db.transaction() as session:
        try:
            return queries.list_runs(session, scope, limit=limit, cursor=cursor, state=wanted)
        except queries.InvalidCursor:
            raise bad_request("invalid cursor") from None


def run_detail(db: Database, scope: Scope, run_id: str) -> dict[str, Any]:
    with db.transaction() as session:
        found = queries.run_detail(session, scope, run_id)
    if found is None:
        raise not_found(f"run not found: {run_id}")
    return found


def run_tasks(db: Database, scope: Scope, run_id: str) -> dict[str, Any]:
    """Every task of a run with its stored state, history and delivery."""
    with db.transaction() as session:
        found = queries.list_task_details(session, scope, run_id)
    if found is None:
        raise not_found(f"run not found: {run_id}")
    return {"runId": run_id, "tasks": found}


def task_detail(db: Database, scope: Scope, run_id: str, task_key: str) -> dict[str, Any]:
    with db.transaction() as session:
        found = queries.get_task_detail(session, scope, run_id, task_key)
    if found is None:
        raise not_found(f"task not found: {run_id}/{task_key}")
    return found
