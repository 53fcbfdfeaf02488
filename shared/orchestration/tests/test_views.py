"""Read views: run detail, run list with its cursor, public states with required-output
visibility, and design D3's task detail (arco-orchestration 1.4 and 6; section 8 item 43)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from arco_envelope import callback_task_id, format_timestamp
from arco_orchestration import facts, queries
from arco_orchestration.db import Database
from arco_orchestration.queries import InvalidCursor
from arco_orchestration.scope import Scope
from arco_orchestration.states import PublicRunState
from arco_testkit.clock import T0, at
from arco_testkit.facts import (
    cancel_run,
    complete,
    dispatch,
    enqueue,
    failed,
    finish,
    planned,
    run_task,
    succeeded,
    trigger,
)
from arco_testkit.values import OTHER_WORKSPACE, SCOPE


def ts(seconds: float) -> str:
    return format_timestamp(at(seconds))


def detail(database: Database, run_id: str, scope: Scope = SCOPE) -> dict[str, Any]:
    with database.transaction() as session:
        found = queries.run_detail(session, scope, run_id)
    assert found is not None
    return found


def list_runs(
    database: Database,
    *,
    limit: int,
    cursor: str | None = None,
    state: PublicRunState | None = None,
    scope: Scope = SCOPE,
) -> dict[str, Any]:
    with database.transaction() as session:
        return queries.list_runs(session, scope, limit=limit, cursor=cursor, state=state)


def ids(page: dict[str, Any]) -> list[str]:
    return [item["runId"] for item in page["runs"]]


def task_view(database: Database, run_id: str, key: str) -> dict[str, Any]:
    with database.transaction() as session:
        found = queries.get_task_detail(session, SCOPE, run_id, key)
    assert found is not None
    return found


def visibility_run(
    database: Database, output: dict[str, Any] | None, *, requires_visible_output: bool = True
) -> None:
    trigger(database, "run-1", [planned("a", requires_visible_output=requires_visible_output)])
    finish(database, "run-1", "a", succeeded(output), now=at(10))


# --- run detail (6.2) -----------------------------------------------------------------------


def test_run_detail_fields_summaries_and_counts(database: Database) -> None:
    trigger(
        database,
        "run-1",
        [planned("a"), planned("b", "a"), planned("c"), planned("d"), planned("e", "c")],
        labels={"team": "x", "arco.parent_run_id": "run-0", "arco.rerun.kind": "SUBSET"},
        rerun_reason="subset_selection",
    )
    finish(database, "run-1", "d", failed(message="flaky"), now=at(3))  # RETRY_WAIT
    run_task(database, "run-1", "c", now=at(5))  # RUNNING
    output = {"deltaTable": "t.a", "deltaVersion": 4, "materializationId": "m-1"}
    finish(database, "run-1", "a", succeeded(output), now=at(10))
    dispatch(database, "run-1", "b", now=at(12))  # DISPATCHED
    view = detail(database, "run-1")
    assert view == {
        "runId": "run-1",
        "workspaceId": SCOPE.workspace_id,
        "planId": "plan-run-1",
        "state": "RUNNING",
        "createdAt": format_timestamp(T0),
        "startedAt": ts(3),
        "tasks": [
            {
                "taskKey": "a",
                "assetKey": "a",
                "state": "SUCCEEDED",
                "attempt": 1,
                "startedAt": ts(10),
                "completedAt": ts(10),
                "executionLineageRef": (
                    '{"runId":"run-1","taskKey":"a","attempt":1,"materializationId":"m-1",'
                    '"deltaTable":"t.a","deltaVersion":4}'
                ),
                "deltaTable": "t.a",
                "deltaVersion": 4,
            },
            {"taskKey": "b", "assetKey": "b", "state": "QUEUED", "attempt": 1},
            {"taskKey": "c", "assetKey": "c", "state": "RUNNING", "attempt": 1, "startedAt": ts(5)},
            {
                "taskKey": "d",
                "assetKey": "d",
                "state": "PENDING",
                "attempt": 1,
                "startedAt": ts(3),
                "errorMessage": "flaky",
            },
            {"taskKey": "e", "assetKey": "e", "state": "PENDING", "attempt": 0},
        ],
        "taskCounts": {
            "total": 5,
            "pending": 2,
            "queued": 1,
            "running": 1,
            "succeeded": 1,
            "failed": 0,
            "skipped": 0,
            "cancelled": 0,
        },
        "labels": {"team": "x", "arco.parent_run_id": "run-0", "arco.rerun.kind": "SUBSET"},
        "parentRunId": "run-0",
        "rerunKind": "SUBSET",
        "rerunReason": "subset_selection",
    }


def test_run_detail_of_a_finished_run_has_completed_at(database: Database) -> None:
    trigger(database, "run-1", [planned("a")])
    finish(database, "run-1", "a", failed(retryable=False), now=at(7))
    view = detail(database, "run-1")
    assert (view["state"], view["completedAt"]) == ("FAILED", ts(7))
    assert view["taskCounts"]["failed"] == 1
    assert view["labels"] == {}
    assert "parentRunId" not in view
    assert "rerunReason" not in view


def test_run_detail_of_a_retried_task_has_retry_attribution(database: Database) -> None:
    trigger(database, "run-1", [planned("a")])
    finish(database, "run-1", "a", failed(message="first"), now=at(0))
    finish(database, "run-1", "a", failed(message="second"), now=at(40))
    dispatch(database, "run-1", "a", now=at(200))
    (summary,) = detail(database, "run-1")["tasks"]
    assert summary["attempt"] == 3
    assert summary["state"] == "QUEUED"
    assert summary["retryAttribution"] == {"retries": 2, "reason": "prior_attempt_failed"}
    assert summary["errorMessage"] == "second"


def test_run_detail_is_scoped(database: Database) -> None:
    trigger(database, "run-1", [planned("a")])
    with database.transaction() as session:
        assert queries.run_detail(session, OTHER_WORKSPACE, "run-1") is None
        assert queries.run_detail(session, SCOPE, "run-404") is None


@pytest.mark.parametrize("first", ["a", "b"])
def test_scenario_75_skip_attribution_is_deterministic(database: Database, first: str) -> None:
    """c depends on a and b, both fail at the same server time; d depends on c."""
    trigger(
        database,
        "run-1",
        [
            planned("a", max_attempts=1),
            planned("b", max_attempts=1),
            planned("c", "a", "b"),
            planned("d", "c"),
        ],
    )
    second = "b" if first == "a" else "a"
    finish(database, "run-1", first, failed(), now=at(10))
    finish(database, "run-1", second, failed(), now=at(10))
    tasks = {summary["taskKey"]: summary for summary in detail(database, "run-1")["tasks"]}
    assert tasks["c"]["skipAttribution"] == {"upstreamTaskKey": "a", "upstreamResolution": "FAILED"}
    assert tasks["d"]["skipAttribution"] == {
        "upstreamTaskKey": "c",
        "upstreamResolution": "SKIPPED",
    }
    assert "completedAt" not in tasks["c"]
    assert "skipAttribution" not in tasks["a"]
    view = detail(database, "run-1")
    assert view["taskCounts"] == {
        "total": 4,
        "pending": 0,
        "queued": 0,
        "running": 0,
        "succeeded": 0,
        "failed": 2,
        "skipped": 2,
        "cancelled": 0,
    }
    assert view["state"] == "FAILED"


def test_skip_attribution_names_the_earliest_failed_upstream(database: Database) -> None:
    trigger(
        database,
        "run-1",
        [planned("a", max_attempts=1), planned("b", max_attempts=1), planned("c", "a", "b")],
    )
    finish(database, "run-1", "b", failed(), now=at(10))
    finish(database, "run-1", "a", failed(), now=at(20))
    tasks = {summary["taskKey"]: summary for summary in detail(database, "run-1")["tasks"]}
    assert tasks["c"]["skipAttribution"] == {"upstreamTaskKey": "b", "upstreamResolution": "FAILED"}


# --- public state with required-output visibility (1.4, scenario 43) ------------------------


def test_scenario_43_success_without_visibility_is_publicly_succeeded(database: Database) -> None:
    visibility_run(database, None)
    view = detail(database, "run-1")
    assert (view["state"], view["completedAt"]) == ("SUCCEEDED", ts(10))
    assert "outputVisibilityState" not in view["tasks"][0]


def test_scenario_43_pending_visibility_keeps_the_run_publicly_running(
    database: Database,
) -> None:
    visibility_run(database, {"outputVisibilityState": "PENDING"})
    view = detail(database, "run-1")
    assert view["state"] == "RUNNING"
    assert "completedAt" not in view  # only for a publicly terminal run
    assert view["tasks"][0]["outputVisibilityState"] == "PENDING"
    assert view["tasks"][0]["state"] == "SUCCEEDED"
    (item,) = list_runs(database, limit=5)["runs"]
    assert item["state"] == "RUNNING"
    assert "completedAt" not in item
    assert ids(list_runs(database, limit=5, state=PublicRunState.RUNNING)) == ["run-1"]
    assert ids(list_runs(database, limit=5, state=PublicRunState.SUCCEEDED)) == []


def test_scenario_43_failed_visibility_makes_the_run_publicly_failed(database: Database) -> None:
    visibility_run(database, {"outputVisibilityState": "FAILED", "publishError": "denied"})
    view = detail(database, "run-1")
    assert (view["state"], view["completedAt"]) == ("FAILED", ts(10))
    assert view["tasks"][0]["publishError"] == "denied"
    assert ids(list_runs(database, limit=5, state=PublicRunState.FAILED)) == ["run-1"]


def test_scenario_43_visible_output_is_publicly_succeeded(database: Database) -> None:
    visibility_run(
        database, {"outputVisibilityState": "VISIBLE", "publishedAt": "2026-01-01T00:00:08Z"}
    )
    view = detail(database, "run-1")
    assert view["state"] == "SUCCEEDED"
    assert view["tasks"][0]["outputVisibilityState"] == "VISIBLE"
    assert view["tasks"][0]["publishedAt"] == ts(8)


@pytest.mark.parametrize("visibility", ["PENDING", "FAILED"])
def test_visibility_of_an_output_that_is_not_required_does_not_gate(
    database: Database, visibility: str
) -> None:
    visibility_run(database, {"outputVisibilityState": visibility}, requires_visible_output=False)
    assert detail(database, "run-1")["state"] == "SUCCEEDED"


def test_failed_publication_makes_a_still_running_run_publicly_failed(database: Database) -> None:
    trigger(database, "run-1", [planned("a"), planned("b")])
    run_task(database, "run-1", "b", now=at(1))
    finish(database, "run-1", "a", succeeded({"outputVisibilityState": "FAILED"}), now=at(10))
    view = detail(database, "run-1")
    assert view["state"] == "FAILED"
    assert "completedAt" not in view  # the stored run has not completed
    # The list's state filter finds it by its public state, not its stored one.
    assert ids(list_runs(database, limit=5, state=PublicRunState.FAILED)) == ["run-1"]
    assert ids(list_runs(database, limit=5, state=PublicRunState.RUNNING)) == []


def test_cancel_requested_run_is_publicly_cancelling(database: Database) -> None:
    trigger(database, "run-1", [planned("a")])
    run_task(database, "run-1", "a", now=at(1))
    cancel_run(database, "run-1", now=at(2))
    assert detail(database, "run-1")["state"] == "CANCELLING"
    assert ids(list_runs(database, limit=5, state=PublicRunState.CANCELLING)) == ["run-1"]


# --- run list (6.1) -------------------------------------------------------------------------


def make_listing(database: Database) -> None:
    """r-a newest; r-b, r-c, r-d share one trigger time; r-e oldest; one run elsewhere."""
    with database.transaction() as session:
        for run_id, seconds in [("r-d", 2), ("r-b", 2), ("r-e", 1), ("r-a", 3), ("r-c", 2)]:
            facts.trigger_run(
                session,
                SCOPE,
                run_id=run_id,
                plan_id="p",
                tasks=[planned("x")] if run_id != "r-c" else [],
                now=at(seconds),
                triggered_by="t",
            )
        facts.trigger_run(
            session,
            OTHER_WORKSPACE,
            run_id="r-other",
            plan_id="p",
            tasks=[],
            now=at(9),
            triggered_by="t",
        )


def test_list_runs_orders_newest_first_then_by_run_id(database: Database) -> None:
    make_listing(database)
    page = list_runs(database, limit=10)
    assert ids(page) == ["r-a", "r-b", "r-c", "r-d", "r-e"]
    assert "nextCursor" not in page
    assert page["runs"][1] == {
        "runId": "r-b",
        "state": "RUNNING",
        "createdAt": ts(2),
        "taskCount": 1,
        "tasksSucceeded": 0,
        "tasksFailed": 0,
    }
    assert page["runs"][2] == {  # r-c has no tasks: it finished when triggered
        "runId": "r-c",
        "state": "SUCCEEDED",
        "createdAt": ts(2),
        "completedAt": ts(2),
        "taskCount": 0,
        "tasksSucceeded": 0,
        "tasksFailed": 0,
    }
    assert ids(list_runs(database, limit=10, scope=OTHER_WORKSPACE)) == ["r-other"]


def test_list_runs_cursor_pages_strictly_after_the_last_run(database: Database) -> None:
    make_listing(database)
    first = list_runs(database, limit=2)
    assert ids(first) == ["r-a", "r-b"]
    cursor = first["nextCursor"]
    assert "=" not in cursor
    raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    assert json.loads(raw) == {"triggered_at": ts(2), "run_id": "r-b"}
    second = list_runs(database, limit=2, cursor=cursor)
    assert ids(second) == ["r-c", "r-d"]  # same trigger time, larger run id
    third = list_runs(database, limit=2, cursor=second["nextCursor"])
    assert ids(third) == ["r-e"]
    assert "nextCursor" not in third


def test_list_runs_has_no_next_cursor_when_nothing_remains(database: Database) -> None:
    make_listing(database)
    page = list_runs(database, limit=5)
    assert len(page["runs"]) == 5
    assert "nextCursor" not in page
    assert list_runs(database, limit=1, scope=OTHER_WORKSPACE).keys() == {"runs"}


def test_list_runs_numeric_cursor_is_a_legacy_offset(database: Database) -> None:
    make_listing(database)
    page = list_runs(database, limit=2, cursor="2")
    assert ids(page) == ["r-c", "r-d"]
    assert ids(list_runs(database, limit=2, cursor=page["nextCursor"])) == ["r-e"]


def make_sparse_listing(database: Database) -> None:
    """Three running runs under 120 newer succeeded ones (more than a read batch), and the
    succeeded runs share one trigger time, so batches continue inside a tie."""
    with database.transaction() as session:
        for n in range(3):
            facts.trigger_run(
                session,
                SCOPE,
                run_id=f"run-live-{n}",
                plan_id="p",
                tasks=[planned("x")],
                now=at(1),
                triggered_by="t",
            )
        for n in range(120):
            facts.trigger_run(
                session,
                SCOPE,
                run_id=f"run-done-{n:03d}",
                plan_id="p",
                tasks=[],
                now=at(5),
                triggered_by="t",
            )


def test_list_runs_state_filter_pages_past_many_other_runs(database: Database) -> None:
    make_sparse_listing(database)
    first = list_runs(database, limit=2, state=PublicRunState.RUNNING)
    assert ids(first) == ["run-live-0", "run-live-1"]
    second = list_runs(database, limit=2, cursor=first["nextCursor"], state=PublicRunState.RUNNING)
    assert ids(second) == ["run-live-2"]
    assert "nextCursor" not in second
    assert ids(list_runs(database, limit=5, state=PublicRunState.CANCELLED)) == []


def test_list_runs_pages_through_a_tie_longer_than_a_read_batch(database: Database) -> None:
    make_sparse_listing(database)
    seen: list[str] = []
    cursor: str | None = None
    while True:
        page = list_runs(database, limit=7, cursor=cursor)
        seen.extend(ids(page))
        cursor = page.get("nextCursor")
        if cursor is None:
            break
    done = [f"run-done-{n:03d}" for n in range(120)]
    assert seen == [*done, "run-live-0", "run-live-1", "run-live-2"]
    # A filter that drops the whole tie reads on past it in batches.
    page = list_runs(database, limit=200, state=PublicRunState.RUNNING)
    assert ids(page) == ["run-live-0", "run-live-1", "run-live-2"]
    succeeded_runs = list_runs(database, limit=110, state=PublicRunState.SUCCEEDED)
    assert ids(succeeded_runs) == done[:110]
    rest = list_runs(
        database, limit=110, cursor=succeeded_runs["nextCursor"], state=PublicRunState.SUCCEEDED
    )
    assert ids(rest) == done[110:]


def test_list_task_details_keeps_each_tasks_history_and_dispatches(database: Database) -> None:
    trigger(database, "run-1", [planned("a"), planned("b"), planned("c")])
    finish(database, "run-1", "a", succeeded(), now=at(1))
    enqueue(database, dispatch(database, "run-1", "b", now=at(2)).dispatch_id, now=at(3))
    with database.transaction() as session:
        listed = queries.list_task_details(session, SCOPE, "run-1")
        singles = [queries.get_task_detail(session, SCOPE, "run-1", key) for key in "abc"]
    assert listed == singles
    assert listed is not None
    assert [len(view["history"]) > 0 for view in listed] == [True, True, False]
    assert [len(view.get("dispatches", [])) for view in listed] == [0, 1, 0]


@pytest.mark.parametrize("cursor", ["not-a-cursor", "e30", "bm90IGpzb24", "eyJydW5faWQiOiJ4In0"])
def test_list_runs_invalid_cursor(database: Database, cursor: str) -> None:
    with pytest.raises(InvalidCursor, match="invalid cursor"):
        list_runs(database, limit=2, cursor=cursor)


def test_list_runs_cursor_of_non_ascii_digits_is_invalid(database: Database) -> None:
    with pytest.raises(InvalidCursor):
        list_runs(database, limit=2, cursor="²")


def test_list_runs_numeric_cursor_beyond_64_bits_is_invalid(database: Database) -> None:
    with pytest.raises(InvalidCursor):
        list_runs(database, limit=2, cursor="1" + "0" * 30)


def test_list_runs_state_filter_uses_the_public_state(database: Database) -> None:
    make_listing(database)
    assert ids(list_runs(database, limit=10, state=PublicRunState.SUCCEEDED)) == ["r-c"]
    assert ids(list_runs(database, limit=10, state=PublicRunState.RUNNING)) == [
        "r-a",
        "r-b",
        "r-d",
        "r-e",
    ]
    assert ids(list_runs(database, limit=10, state=PublicRunState.PENDING)) == []
    page = list_runs(database, limit=1, state=PublicRunState.RUNNING)
    seen = ids(page)
    while "nextCursor" in page:
        page = list_runs(database, limit=1, state=PublicRunState.RUNNING, cursor=page["nextCursor"])
        seen += ids(page)
    assert seen == ["r-a", "r-b", "r-d", "r-e"]


def test_list_runs_filter_pages_across_query_batches(database: Database) -> None:
    """120 runs, every tenth one finished: the filter scans past the 50-run batches."""
    with database.transaction() as session:
        for number in range(120):
            facts.trigger_run(
                session,
                SCOPE,
                run_id=f"run-{number:03d}",
                plan_id="p",
                tasks=[] if number % 10 == 0 else [planned("x")],
                now=at(number),
                triggered_by="t",
            )
    expected = [f"run-{number:03d}" for number in range(110, -1, -10)]
    seen: list[str] = []
    cursor: str | None = None
    while True:
        page = list_runs(database, limit=5, state=PublicRunState.SUCCEEDED, cursor=cursor)
        seen += ids(page)
        cursor = page.get("nextCursor")
        if cursor is None:
            break
    assert seen == expected
    everything = list_runs(database, limit=200)
    assert len(everything["runs"]) == 120
    assert "nextCursor" not in everything


# --- task detail (design D3) ----------------------------------------------------------------


def test_task_detail_shows_dispatched_running_terminal(database: Database) -> None:
    trigger(database, "run-1", [planned("a", partition_key="p=1")])
    requested = dispatch(database, "run-1", "a", now=at(1))
    assert enqueue(database, requested.dispatch_id, now=at(2), cloud_task_id="d_x")
    queued = task_view(database, "run-1", "a")
    assert (queued["state"], queued["storedState"]) == ("QUEUED", "DISPATCHED")
    assert queued["dispatches"] == [
        {
            "dispatchId": requested.dispatch_id,
            "attempt": 1,
            "status": "CREATED",
            "cloudTaskId": "d_x",
            "deliveryAttempts": 0,
            "redispatchCount": 0,
            "createdAt": ts(2),
        }
    ]
    with database.transaction() as session:
        run = facts.lock_run(session, SCOPE, "run-1")
        task = facts.get_task(session, SCOPE, "run-1", "a")
        assert run is not None
        assert task is not None
        facts.apply_started(session, run, task, worker_id="w", now=at(3))
        facts.apply_heartbeat(session, task, now=at(4), progress_pct=10, message="go")
    assert complete(database, "run-1", "a", succeeded(), now=at(5))
    view = task_view(database, "run-1", "a")
    assert view["attempts"] == [
        {
            "attempt": 1,
            "attemptId": requested.attempt_id,
            "states": ["DISPATCHED", "RUNNING", "SUCCEEDED"],
        }
    ]
    assert [event["kind"] for event in view["history"]] == [
        "dispatch_requested",
        "dispatch_enqueued",
        "started",
        "completed",
    ]
    assert [(e["fromState"], e["toState"]) for e in view["history"]] == [
        ("READY", "DISPATCHED"),
        ("DISPATCHED", "DISPATCHED"),
        ("DISPATCHED", "RUNNING"),
        ("RUNNING", "SUCCEEDED"),
    ]
    assert [event["at"] for event in view["history"]] == [ts(1), ts(2), ts(3), ts(5)]
    assert view["dispatches"] == []  # consumed at start
    expected = {
        "runId": "run-1",
        "taskKey": "a",
        "taskId": callback_task_id("run-1", "a"),
        "assetKey": "a",
        "partitionKey": "p=1",
        "state": "SUCCEEDED",
        "storedState": "SUCCEEDED",
        "attempt": 1,
        "attemptId": requested.attempt_id,
        "maxAttempts": 3,
        "heartbeatTimeoutSec": 300,
        "readyAt": format_timestamp(T0),
        "dispatchedAt": ts(1),
        "startedAt": ts(3),
        "lastHeartbeatAt": ts(4),
        "completedAt": ts(5),
        "progressPct": 10,
        "progressMessage": "go",
    }
    assert {key: view[key] for key in expected} == expected
    assert "retryNotBefore" not in view
    assert "error" not in view


def test_task_detail_shows_every_attempt_of_a_retry(database: Database) -> None:
    trigger(database, "run-1", [planned("a")])
    finish(database, "run-1", "a", failed(message="first"), now=at(1))
    waiting = task_view(database, "run-1", "a")
    assert (waiting["state"], waiting["storedState"]) == ("PENDING", "RETRY_WAIT")
    assert waiting["retryNotBefore"] == ts(31)
    assert waiting["errorMessage"] == "first"
    assert waiting["error"] == {"category": "USER_CODE", "message": "first", "retryable": True}
    finish(database, "run-1", "a", succeeded(), now=at(40))
    view = task_view(database, "run-1", "a")
    assert [(entry["attempt"], entry["states"]) for entry in view["attempts"]] == [
        (1, ["DISPATCHED", "RUNNING", "RETRY_WAIT"]),
        (2, ["DISPATCHED", "RUNNING", "SUCCEEDED"]),
    ]
    assert view["attempts"][0]["attemptId"] != view["attempts"][1]["attemptId"]
    assert view["attempt"] == 2


def test_task_history_of_a_retry_records_its_deadline(database: Database) -> None:
    trigger(database, "run-1", [planned("a")])
    finish(database, "run-1", "a", failed(), now=at(1))
    history = task_view(database, "run-1", "a")["history"]
    (completed,) = [event for event in history if event["kind"] == "completed"]
    assert completed["detail"]["retryNotBefore"] == ts(31)


def test_task_detail_lookups_are_scoped(database: Database) -> None:
    trigger(database, "run-1", [planned("b"), planned("a")])
    with database.transaction() as session:
        assert queries.get_task_detail(session, SCOPE, "run-1", "zz") is None
        assert queries.get_task_detail(session, SCOPE, "run-404", "a") is None
        assert queries.get_task_detail(session, OTHER_WORKSPACE, "run-1", "a") is None
        assert queries.list_task_details(session, OTHER_WORKSPACE, "run-1") is None
        listed = queries.list_task_details(session, SCOPE, "run-1")
    assert listed is not None
    assert [view["taskKey"] for view in listed] == ["a", "b"]
    assert all(view["attempts"] == [] for view in listed)


def test_count_tasks_by_state(database: Database) -> None:
    trigger(database, "run-1", [planned("a"), planned("b", "a"), planned("c")])
    run_task(database, "run-1", "c", now=at(1))
    with database.transaction() as session:
        assert queries.count_tasks_by_state(session) == {"READY": 1, "BLOCKED": 1, "RUNNING": 1}
