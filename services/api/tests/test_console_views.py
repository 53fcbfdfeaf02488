"""The console's view models, read straight from a real database (SQLite and PostgreSQL)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest
from services.api.tests.api_test_support import DAILY, RAW, Api

from arco_api.console.dag_layout import NODE_WIDTH, layout
from arco_api.console.manifests_view import load_manifests_view
from arco_api.console.run_view import load_run_view
from arco_api.console.runs_view import (
    ConsoleInputError,
    RunsQuery,
    decode_cursor,
    load_runs_page,
    parse_runs_query,
)
from arco_api.console.task_view import load_task_view
from arco_orchestration.db import Database
from arco_orchestration.models import TaskLog
from arco_orchestration.scope import Scope
from arco_orchestration.states import PublicRunState

OTHER = Scope("tenant-other", "workspace-b")


# --- graph layout --------------------------------------------------------------------------


def test_layout_puts_every_edge_left_to_right_and_no_two_nodes_on_one_spot() -> None:
    edges = [("a", "b"), ("a", "c"), ("b", "d"), ("c", "d"), ("a", "d")]
    drawn = layout(["d", "c", "b", "a"], edges)
    place = {node.key: node for node in drawn.nodes}
    assert [place[key].layer for key in "abcd"] == [0, 1, 1, 2]
    for up, down in edges:
        assert place[up].x + NODE_WIDTH < place[down].x
    assert len({(node.x, node.y) for node in drawn.nodes}) == 4
    assert len(drawn.edges) == len(edges)
    assert drawn.width >= place["d"].x + NODE_WIDTH
    assert drawn.height >= max(node.y for node in drawn.nodes)


def test_layout_drops_edges_to_unknown_nodes_and_survives_a_cycle() -> None:
    drawn = layout(["a", "b"], [("a", "b"), ("b", "a"), ("a", "ghost")])
    assert {node.key for node in drawn.nodes} == {"a", "b"}
    assert all(edge.downstream != "ghost" for edge in drawn.edges)


def test_layout_of_five_hundred_tasks_is_quick_and_orders_by_barycenter() -> None:
    keys = [f"l{layer}.t{n:02d}" for layer in range(10) for n in range(50)]
    edges = [
        (f"l{layer - 1}.t{(n * 7 + 3) % 50:02d}", f"l{layer}.t{n:02d}")
        for layer in range(1, 10)
        for n in range(50)
    ]
    started = time.perf_counter()
    drawn = layout(keys, edges)
    assert time.perf_counter() - started < 2.0
    assert drawn.layers == 10
    assert len(drawn.nodes) == 500
    # A long chain stays cheap too (the sweep is linear in the nodes).
    chain = [f"c{n:03d}" for n in range(400)]
    assert layout(chain, list(pairwise(chain))).layers == 400


def test_long_keys_are_shortened_in_the_box_but_kept_whole_as_the_key() -> None:
    key = "namespace." + "x" * 60
    node = layout([key], []).nodes[0]
    assert node.key == key
    assert node.label.startswith("…")
    assert len(node.label) <= 26


# --- runs page -----------------------------------------------------------------------------


def test_parse_runs_query_refuses_unknown_states_bad_cursors_and_nul() -> None:
    assert parse_runs_query({"state": "failed"}).state is PublicRunState.FAILED
    with pytest.raises(ConsoleInputError, match="unknown state"):
        parse_runs_query({"state": "EXPLODED"})
    with pytest.raises(ConsoleInputError, match="cursor"):
        parse_runs_query({"after": "!!!not-a-cursor"})
    with pytest.raises(ConsoleInputError, match="NUL"):
        parse_runs_query({"q": "a\x00b"})


def test_runs_page_is_newest_first_with_keyset_pages_counts_and_filters(
    api: Api, database: Database
) -> None:
    scope = api.scope
    run_ids = [api.run(runKey=f"key-{n}") for n in range(7)]
    failed = api.dispatch(run_ids[2])
    api.fail(failed, retryable=False)
    api.cancel(run_ids[3])
    seen: list[str] = []
    with database.transaction() as session:
        page = load_runs_page(session, scope, RunsQuery(), limit=3)
        while True:
            seen += [row.run_id for row in page.rows]
            if page.next_cursor is None:
                break
            after = RunsQuery(after=decode_cursor(page.next_cursor))
            page = load_runs_page(session, scope, after, limit=3)
        assert seen == list(reversed(run_ids)), "newest first, no run twice or missing"
        counts = dict(page.counts)
        assert counts["FAILED"] == 1
        assert counts["CANCELLED"] == 1
        assert counts["RUNNING"] == 5, counts
        assert page.total == 7
        only_failed = load_runs_page(session, scope, RunsQuery(state=PublicRunState.FAILED))
        assert [row.run_id for row in only_failed.rows] == [run_ids[2]]
        assert only_failed.rows[0].state == "FAILED"
        by_key = load_runs_page(session, scope, RunsQuery(search="key-4"))
        assert [row.run_id for row in by_key.rows] == [run_ids[4]]
        assert by_key.rows[0].run_key == "key-4"
        by_prefix = load_runs_page(session, scope, RunsQuery(search=run_ids[5][:-2]))
        assert run_ids[5] in [row.run_id for row in by_prefix.rows]
        nothing = load_runs_page(session, scope, RunsQuery(search="no-such-run"))
        assert nothing.rows == ()


def test_runs_page_of_another_tenant_shows_none_of_these_runs(api: Api, database: Database) -> None:
    run_id = api.run(runKey="mine")
    with database.transaction() as session:
        theirs = load_runs_page(session, OTHER, RunsQuery())
        assert theirs.rows == ()
        assert theirs.total == 0
        assert load_runs_page(session, OTHER, RunsQuery(search=run_id)).rows == ()
        assert load_runs_page(session, OTHER, RunsQuery(search="mine")).rows == ()


# --- run page ------------------------------------------------------------------------------


def test_run_view_draws_the_graph_by_state_and_a_bar_per_attempt(
    api: Api, database: Database
) -> None:
    run_id = api.run([DAILY], includeUpstream=True)
    first = api.dispatch(run_id, RAW)
    api.succeed(first)
    second = api.dispatch(run_id, DAILY)
    assert api.started(second).status_code == 200
    now = datetime.now(UTC)
    with database.transaction() as session:
        view = load_run_view(session, api.scope, run_id, now)
        assert view is not None
        assert load_run_view(session, OTHER, run_id, now) is None
    assert view.states == {RAW: "SUCCEEDED", DAILY: "RUNNING"}
    assert [edge.upstream for edge in view.dag.edges] == [RAW]
    assert view.state == "RUNNING"
    assert view.can_cancel
    assert not view.can_rerun
    bars = {bar.task_key: bar for bar in view.bars}
    assert bars[RAW].outcome == "SUCCEEDED"
    assert bars[RAW].started_at is not None
    assert bars[RAW].ended_at is not None
    assert bars[DAILY].outcome == "RUNNING"
    assert bars[DAILY].ended_at is None
    assert 0 <= bars[RAW].queued_x <= bars[RAW].running_x <= bars[RAW].end_x <= 1000
    assert dict(view.counts)["SUCCEEDED"] == 1
    assert dict(view.counts)["RUNNING"] == 1


def test_run_view_offers_rerun_after_a_failure_and_no_cancel(api: Api, database: Database) -> None:
    run_id = api.run()
    api.fail(api.dispatch(run_id), retryable=False)
    with database.transaction() as session:
        view = load_run_view(session, api.scope, run_id, datetime.now(UTC))
    assert view is not None
    assert view.state == "FAILED"
    assert view.is_terminal
    assert view.can_rerun
    assert not view.can_cancel


# --- task page -----------------------------------------------------------------------------


def test_task_view_shows_attempts_error_parts_and_logs(api: Api, database: Database) -> None:
    run_id = api.run()
    first = api.retry(api.dispatch(run_id))
    assert api.started(first).status_code == 200
    error = {
        "category": "USER_CODE",
        "message": "division by zero",
        "stackTrace": 'Traceback (most recent call last):\n  File "t.py"\nZeroDivisionError',
        "retryable": False,
    }
    assert api.completed(first, "FAILED", {"error": error}).status_code == 200
    now = datetime.now(UTC)
    with database.transaction() as session:
        following = load_task_view(session, api.scope, run_id, RAW, now)
        session.add(
            TaskLog(
                run_id=run_id,
                task_key=RAW,
                attempt=2,
                tenant_id=api.scope.tenant_id,
                workspace_id=api.scope.workspace_id,
                stdout="hello from attempt 2\n",
                stderr="",
                size_bytes=21,
                created_at=now,
            )
        )
    with database.transaction() as session:
        view = load_task_view(session, api.scope, run_id, RAW, now)
        assert load_task_view(session, OTHER, run_id, RAW, now) is None
        assert load_task_view(session, api.scope, run_id, "no.such_task", now) is None
    assert following is not None
    assert following.following, "a failed task keeps following until its logs arrive"
    assert view is not None
    assert view.state == "FAILED"
    assert [row.attempt for row in view.attempts] == [1, 2]
    assert view.attempts[0].outcome == "RETRY_WAIT"
    assert view.attempts[1].outcome == "FAILED"
    assert [change.state for change in view.attempts[1].changes][-2:] == ["RUNNING", "FAILED"]
    assert view.error is not None
    assert view.error.category == "USER_CODE"
    assert view.error.message == "division by zero"
    assert view.error.stack_trace is not None
    assert "ZeroDivisionError" in view.error.stack_trace
    assert view.error.retryable is False
    assert [log.stdout for log in view.logs] == ["hello from attempt 2\n"]
    assert not view.following, "the last attempt's logs arrived: nothing more to follow"
    later = now + timedelta(minutes=5)
    with database.transaction() as session:
        no_logs = load_task_view(session, api.scope, api.run(), RAW, later)
    assert no_logs is not None
    assert no_logs.following, "an unfinished task is followed"


# --- manifests page ------------------------------------------------------------------------


def test_manifests_view_lists_assets_with_their_graph(api: Api, database: Database) -> None:
    with database.transaction() as session:
        view = load_manifests_view(session, api.scope)
        empty = load_manifests_view(session, OTHER)
    assert view.manifest_id is not None
    assert {asset.key for asset in view.assets} == {RAW, DAILY}
    upstream = {asset.key: asset.upstream for asset in view.assets}
    assert upstream[DAILY] == (RAW,)
    assert [(edge.upstream, edge.downstream) for edge in view.dag.edges] == [(RAW, DAILY)]
    assert view.manifest_count == 1
    assert empty.manifest_id is None
    assert empty.assets == ()
