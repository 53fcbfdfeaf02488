"""The runs page: newest first, a state filter, search by run-id prefix or run key, counts
per state, keyset pagination.

Pages are keyset pages over ``(triggered_at, run_id)`` descending, which the index
``(tenant_id, workspace_id, triggered_at, run_id)`` serves by a backward scan, and with a state
filter the index ``(tenant_id, workspace_id, state, triggered_at, run_id)`` (migration 0003):
a page costs the same at the 100,000th run as at the first. The state filter maps each
public state to stored states in SQL; the public state of each row is then computed as the
API does, and the rare run whose required output is not yet visible (its public state differs
from the stored one) is dropped from a filtered page rather than shown under the wrong state.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, and_, func, or_, select, tuple_
from sqlalchemy.orm import Session

from arco_envelope import format_timestamp, parse_timestamp
from arco_orchestration import queries
from arco_orchestration.models import Run, RunKey, key_scope
from arco_orchestration.scope import Scope
from arco_orchestration.states import PublicRunState, RunState

PAGE_SIZE = 50
SEARCH_LIMIT = 512
SEARCH_IDS = 500
FILTERABLE_STATES = tuple(
    state for state in PublicRunState if state is not PublicRunState.TIMED_OUT
)
_NOT_TERMINAL = (RunState.TRIGGERED.value, RunState.RUNNING.value)


class ConsoleInputError(ValueError):
    """A query parameter of a page that cannot be used (answered 400 with the reason)."""


@dataclass(frozen=True)
class RunsQuery:
    state: PublicRunState | None = None
    search: str = ""
    after: tuple[datetime, str] | None = None


@dataclass(frozen=True)
class RunRow:
    run_id: str
    state: str
    created_at: str
    completed_at: str | None
    task_count: int
    tasks_succeeded: int
    tasks_failed: int
    run_key: str | None
    parent_run_id: str | None


@dataclass(frozen=True)
class RunsPage:
    query: RunsQuery
    rows: tuple[RunRow, ...]
    counts: tuple[tuple[str, int], ...]
    total: int
    next_cursor: str | None

    @property
    def first_page(self) -> bool:
        return self.query.after is None

    @property
    def any_live(self) -> bool:
        """Whether a row can still change, so the live refresh has something to show."""
        return any(not PublicRunState(row.state).is_terminal for row in self.rows)


def encode_cursor(at: datetime, run_id: str) -> str:
    raw = f"{format_timestamp(at)}|{run_id}".encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at, run_id = raw.split("|", 1)
        return parse_timestamp(at), run_id
    except (ValueError, UnicodeDecodeError, binascii.Error):
        raise ConsoleInputError("invalid page cursor; start again from the newest runs") from None


def parse_runs_query(params: Mapping[str, str]) -> RunsQuery:
    """The page's query string: ``state``, ``q`` (run-id prefix or run key), ``after``."""
    state: PublicRunState | None = None
    if raw_state := params.get("state", "").strip():
        try:
            state = PublicRunState(raw_state.upper())
        except ValueError:
            raise ConsoleInputError(f"unknown state filter: {raw_state}") from None
    search = params.get("q", "").strip()
    if len(search) > SEARCH_LIMIT or "\x00" in search:
        raise ConsoleInputError("search text is too long or holds a NUL character")
    after = decode_cursor(params["after"]) if params.get("after") else None
    return RunsQuery(state=state, search=search, after=after)


def _state_condition(state: PublicRunState) -> ColumnElement[bool]:
    if state is PublicRunState.PENDING:
        return and_(Run.state == RunState.TRIGGERED.value, Run.cancel_requested.is_(False))
    if state is PublicRunState.RUNNING:
        return and_(Run.state == RunState.RUNNING.value, Run.cancel_requested.is_(False))
    if state is PublicRunState.CANCELLING:
        return and_(Run.state.in_(_NOT_TERMINAL), Run.cancel_requested.is_(True))
    return Run.state == state.value


def _prefix_upper_bound(prefix: str) -> str:
    """The least string greater than every string starting with ``prefix``."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


def _search_condition(session: Session, scope: Scope, search: str) -> ColumnElement[bool]:
    """Runs whose key is ``search``, or whose id starts with it.

    A selective prefix (the usual case: a run id pasted or cut short) is first resolved to its
    few ids through the primary key alone, and the page then reads just those rows: without
    that, SQLite's planner (which has no statistics) prefers the scope index and reads every
    run of the workspace. A short prefix matching many runs stays a range that the
    newest-first scan filters by, which finds a page quickly because such matches are dense.
    """
    by_key = set(
        session.scalars(
            select(RunKey.run_id).where(
                RunKey.tenant_id == scope.tenant_id,
                RunKey.workspace_id == scope.workspace_id,
                RunKey.run_key == search,
            )
        )
    )
    # A range, not LIKE: both databases answer it from the primary key.
    by_prefix = and_(Run.run_id >= search, Run.run_id < _prefix_upper_bound(search))
    prefixed = session.execute(
        select(Run.run_id, Run.tenant_id, Run.workspace_id)
        .where(by_prefix)
        .order_by(Run.run_id)
        .limit(SEARCH_IDS + 1)
    ).all()
    if len(prefixed) > SEARCH_IDS:
        return or_(by_prefix, Run.run_id.in_(sorted(by_key)))
    ids = by_key | {
        run_id
        for run_id, tenant, workspace in prefixed
        if (tenant, workspace) == (scope.tenant_id, scope.workspace_id)
    }
    return Run.run_id.in_(sorted(ids))


def state_counts(session: Session, scope: Scope) -> tuple[tuple[str, int], ...]:
    """Runs per public state (stored state, and cancel requests of unfinished runs)."""
    in_scope = (Run.tenant_id == scope.tenant_id, Run.workspace_id == scope.workspace_id)
    stored: dict[str, int] = dict(
        session.execute(select(Run.state, func.count()).where(*in_scope).group_by(Run.state)).all()
    )
    cancelling: dict[str, int] = dict(
        session.execute(
            select(Run.state, func.count())
            .where(*in_scope, Run.state.in_(_NOT_TERMINAL), Run.cancel_requested.is_(True))
            .group_by(Run.state)
        ).all()
    )
    counts = {
        PublicRunState.PENDING: stored.get(RunState.TRIGGERED.value, 0)
        - cancelling.get(RunState.TRIGGERED.value, 0),
        PublicRunState.RUNNING: stored.get(RunState.RUNNING.value, 0)
        - cancelling.get(RunState.RUNNING.value, 0),
        PublicRunState.CANCELLING: sum(cancelling.values()),
        PublicRunState.SUCCEEDED: stored.get(RunState.SUCCEEDED.value, 0),
        PublicRunState.FAILED: stored.get(RunState.FAILED.value, 0),
        PublicRunState.CANCELLED: stored.get(RunState.CANCELLED.value, 0),
    }
    return tuple((state.value, int(count)) for state, count in counts.items())


def load_runs_page(
    session: Session, scope: Scope, query: RunsQuery, *, limit: int = PAGE_SIZE
) -> RunsPage:
    if query.search:
        # The ids are known and few: read them by primary key (key_scope).
        stmt = select(Run).where(
            _search_condition(session, scope, query.search),
            key_scope(Run, scope.tenant_id, scope.workspace_id),
        )
    else:
        stmt = select(Run).where(
            Run.tenant_id == scope.tenant_id, Run.workspace_id == scope.workspace_id
        )
    if query.state is not None:
        stmt = stmt.where(_state_condition(query.state))
    if query.after is not None:
        stmt = stmt.where(tuple_(Run.triggered_at, Run.run_id) < query.after)
    stmt = stmt.order_by(Run.triggered_at.desc(), Run.run_id.desc()).limit(limit + 1)
    runs = list(session.scalars(stmt))
    more = len(runs) > limit
    runs = runs[:limit]
    publics = queries.public_states(session, runs)
    rows = []
    for run in runs:
        public = publics[run.run_id]
        if query.state is not None and public is not query.state:
            continue
        rows.append(
            RunRow(
                run_id=run.run_id,
                state=public.value,
                created_at=format_timestamp(run.triggered_at),
                completed_at=(
                    format_timestamp(run.completed_at)
                    if run.completed_at is not None and public.is_terminal
                    else None
                ),
                task_count=run.tasks_total,
                tasks_succeeded=run.tasks_succeeded,
                tasks_failed=run.tasks_failed,
                run_key=run.run_key,
                parent_run_id=run.parent_run_id,
            )
        )
    counts = state_counts(session, scope)
    last = runs[-1] if more and runs else None
    return RunsPage(
        query=query,
        rows=tuple(rows),
        counts=counts,
        total=sum(count for _, count in counts),
        next_cursor=encode_cursor(last.triggered_at, last.run_id) if last else None,
    )
