"""Reruns over HTTP (arco-orchestration 2.5, scenario 74)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from services.api.tests.api_test_support import RUNS, Api, manifest_of, user_headers

CHAIN = manifest_of({"demo.a": [], "demo.b": ["demo.a"], "demo.c": ["demo.b"]})
PAIR = manifest_of({"demo.x": [], "demo.y": []})


def rerun(api: Api, run_id: str, body: dict[str, Any]) -> Any:
    return api.client.post(f"{RUNS}/{run_id}/rerun", json=body, headers=user_headers())


@pytest.fixture
def failed_parent(api: Api, deploy: Callable[..., Any]) -> str:
    """A FAILED run: demo.x SUCCEEDED, demo.y FAILED for good (no cascade involved)."""
    deploy(PAIR)
    run_id = api.run(["demo.x", "demo.y"])
    api.succeed(api.dispatch(run_id, "demo.x"))
    api.fail(api.dispatch(run_id, "demo.y"), retryable=False)
    assert api.detail(run_id)["state"] == "FAILED"
    return run_id


def test_rerun_from_failure_plans_only_unsucceeded_tasks(api: Api, failed_parent: str) -> None:
    """Orchestration 8 #74: `fromFailure` re-plans every parent task that did not succeed,
    with the lineage labels and the rerun fields; the rerun is listed with its parent."""
    response = rerun(api, failed_parent, {"mode": "fromFailure"})
    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["state"], body["created"], body["parentRunId"]) == (
        "PENDING",
        True,
        failed_parent,
    )
    assert (body["rerunKind"], body["rerunReason"]) == (
        "FROM_FAILURE",
        "from_failure_unsucceeded_tasks",
    )
    detail = api.detail(body["runId"])
    assert [task["taskKey"] for task in detail["tasks"]] == ["demo.y"]
    assert detail["labels"] == {
        "arco.parent_run_id": failed_parent,
        "arco.rerun.kind": "FROM_FAILURE",
    }
    assert (detail["parentRunId"], detail["rerunKind"], detail["rerunReason"]) == (
        failed_parent,
        "FROM_FAILURE",
        "from_failure_unsucceeded_tasks",
    )
    listed = {run["runId"]: run for run in api.get(RUNS).json()["runs"]}
    assert listed[body["runId"]]["parentRunId"] == failed_parent
    assert listed[body["runId"]]["rerunKind"] == "FROM_FAILURE"


def test_rerun_from_failure_twice_is_a_replay(api: Api, failed_parent: str) -> None:
    """2.5 (deterministic run key without `runKey`): the same rerun twice is 201 then 200 with
    the same run."""
    first = rerun(api, failed_parent, {"mode": "fromFailure"})
    second = rerun(api, failed_parent, {"mode": "fromFailure"})
    assert (first.status_code, second.status_code) == (201, 200)
    assert second.json()["runId"] == first.json()["runId"]
    assert second.json()["created"] is False
    assert second.json()["parentRunId"] == failed_parent


def test_rerun_from_failure_needs_a_failed_parent(api: Api) -> None:
    """Orchestration 8 #74: `fromFailure` of a SUCCEEDED (or running) parent is 409."""
    attempt = api.dispatch(api.run())
    running = rerun(api, attempt.run_id, {"mode": "fromFailure"})
    assert running.status_code == 409
    api.succeed(attempt)
    response = rerun(api, attempt.run_id, {"mode": "fromFailure"})
    assert response.status_code == 409
    assert response.json()["code"] == "CONFLICT"
    assert response.json()["message"] == "rerun-from-failure requires a FAILED parent run"


def test_rerun_subset_respects_include_downstream(api: Api, deploy: Callable[..., Any]) -> None:
    """Orchestration 8 #74: `subset` expands over the parent's dependency edges only when
    asked."""
    deploy(CHAIN)
    parent = api.run(["demo.a"], includeDownstream=True)
    plain = rerun(api, parent, {"mode": "subset", "selection": ["demo.b"]})
    assert plain.status_code == 201, plain.text
    assert [t["taskKey"] for t in api.detail(plain.json()["runId"])["tasks"]] == ["demo.b"]
    down = rerun(
        api, parent, {"mode": "subset", "selection": ["demo.b"], "includeDownstream": True}
    )
    assert down.status_code == 201
    assert down.json()["rerunReason"] == "subset_selection"
    tasks = api.detail(down.json()["runId"])["tasks"]
    assert [(t["taskKey"], t["state"]) for t in tasks] == [
        ("demo.b", "QUEUED"),
        ("demo.c", "PENDING"),
    ]


def test_rerun_run_key_conflict_returns_diagnostics(api: Api, deploy: Callable[..., Any]) -> None:
    """Orchestration 8 #74: a rerun whose run key is taken by another payload is 409 with the
    details payload."""
    deploy(CHAIN)
    parent = api.run(["demo.a"], includeDownstream=True)
    first = rerun(api, parent, {"mode": "subset", "selection": ["demo.a"], "runKey": "rk"})
    assert first.status_code == 201
    clash = rerun(api, parent, {"mode": "subset", "selection": ["demo.b"], "runKey": "rk"})
    assert clash.status_code == 409
    details = clash.json()["details"]
    assert details["conflictType"] == "RUN_KEY_FINGERPRINT_MISMATCH"
    assert (details["runKey"], details["existingRunId"]) == ("rk", first.json()["runId"])


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"mode": "subset", "selection": ["demo.nope"]}, 400),
        ({"mode": "subset", "selection": []}, 400),
        ({"mode": "subset", "selection": ["demo.a"], "labels": {"arco.rerun.kind": "x"}}, 400),
        ({"selection": ["demo.a"]}, 422),
        ({"mode": "everything"}, 422),
    ],
)
def test_rerun_validation(
    api: Api, deploy: Callable[..., Any], body: dict[str, Any], status: int
) -> None:
    """2.5: unknown subset keys, an empty selection and reserved labels are 400; a missing or
    unknown mode is a 422 shape error; nothing is created."""
    deploy(CHAIN)
    parent = api.run(["demo.a"])
    assert rerun(api, parent, body).status_code == status
    assert len(api.get(RUNS).json()["runs"]) == 1


def test_rerun_of_unknown_run_is_404(api: Api) -> None:
    assert rerun(api, "nope", {"mode": "fromFailure"}).status_code == 404
