"""The runbook's Verification Checklist as checks against a running stack."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from arco_stack.client import ApiClient
from arco_stack.demo import demo_manifest, demo_trigger
from arco_stack.manifests import asset_keys

CANONICAL_ENVELOPE_KEYS = frozenset(
    {
        "tenantId", "workspaceId", "taskId", "taskKey", "runId", "attempt", "attemptId",
        "dispatchId", "executionLocationId", "partitionKey", "heartbeatTimeoutSec",
        "workerQueue", "callbackBaseUrl", "taskToken", "tokenExpiresAt", "traceparent",
        "payload",
    }
)  # fmt: skip
REQUIRED_ENVELOPE_KEYS = frozenset(
    {
        "tenantId", "workspaceId", "taskId", "taskKey", "runId", "attempt", "attemptId",
        "dispatchId", "workerQueue", "callbackBaseUrl", "taskToken", "tokenExpiresAt",
        "payload",
    }
)  # fmt: skip
TERMINAL = ("SUCCEEDED", "FAILED", "CANCELLED", "SKIPPED")


@dataclass
class Check:
    name: str
    ok: bool
    evidence: str


def _envelope_shapes(task: dict[str, Any]) -> list[list[str]]:
    return [
        list(event.get("detail", {}).get("envelopeKeys", []))
        for event in task.get("history", [])
        if event["kind"] == "dispatch_enqueued"
    ]


def _went_through(task: dict[str, Any]) -> bool:
    """DISPATCHED, then RUNNING, then a terminal state, in one attempt of the history."""
    for attempt in task.get("attempts", []):
        states = attempt["states"]
        if "DISPATCHED" in states and "RUNNING" in states:
            running = states.index("RUNNING")
            if states.index("DISPATCHED") < running and any(
                s in TERMINAL for s in states[running + 1 :]
            ):
                return True
    return False


class VerifyRefusedError(RuntimeError):
    """verify would have to replace a manifest it did not deploy; the message says what to
    give instead."""


def _is_probe(manifest: dict[str, Any]) -> bool:
    return asset_keys(manifest) == asset_keys(demo_manifest())


def _probe(
    client: ApiClient, select: list[str] | None, deploy_probe: bool
) -> tuple[dict[str, Any], str]:
    """The trigger body of the probe run, and evidence of how it was chosen."""
    if select:
        return {"selection": list(select)}, f"probing existing assets {', '.join(select)}"
    active = client.latest_manifest()
    if active is not None and not deploy_probe and not _is_probe(active):
        raise VerifyRefusedError(
            f"the workspace's active manifest ({active.get('manifestId')}, "
            f"{len(active.get('assets', []))} assets) was not deployed by verify, which would "
            "replace it: give --select KEY (an existing asset to run), or --deploy-probe to "
            "replace it anyway"
        )
    deployed = client.deploy_manifest(demo_manifest())
    return demo_trigger(), f"probe manifest deployed: manifestId={deployed['manifestId']}"


def verify(
    client: ApiClient,
    *,
    timeout: float = 120.0,
    report: Callable[[Check], None] | None = None,
    select: list[str] | None = None,
    deploy_probe: bool = False,
) -> list[Check]:
    """Trigger a probe run and check every item of the checklist.

    The probe runs the assets of ``select`` (deploying nothing), else the probe manifest,
    deployed only into an empty workspace, over an earlier probe manifest, or when
    ``deploy_probe`` is true; otherwise :class:`VerifyRefusedError` is raised before any change.
    """
    checks: list[Check] = []

    def record(name: str, ok: bool, evidence: str) -> None:
        check = Check(name, ok, evidence)
        checks.append(check)
        if report:
            report(check)

    body, how = _probe(client, select, deploy_probe)
    record("probe chosen", True, how)
    trigger = client.trigger_run(body)
    run_id = trigger["runId"]
    record("run triggered from the API", trigger.get("created") is True, f"runId={run_id}")
    run = client.wait_terminal(run_id, timeout)
    record("run reached a terminal state", run["state"] == "SUCCEEDED", f"state={run['state']}")
    tasks = client.run_tasks(run_id)
    for task in tasks:
        key = task["taskKey"]
        shapes = _envelope_shapes(task)
        canonical = bool(shapes) and all(
            set(shape) <= CANONICAL_ENVELOPE_KEYS and set(shape) >= REQUIRED_ENVELOPE_KEYS
            for shape in shapes
        )
        record(
            f"{key}: dispatch body was the canonical envelope",
            canonical,
            f"{len(shapes)} dispatch(es), keys={sorted(shapes[0]) if shapes else []}",
        )
        kinds = [event["kind"] for event in task.get("history", [])]
        record(
            f"{key}: started and completed callbacks accepted",
            "started" in kinds and "completed" in kinds,
            f"history={kinds}",
        )
        record(
            f"{key}: DISPATCHED -> RUNNING -> terminal",
            _went_through(task),
            f"attempts={[a['states'] for a in task.get('attempts', [])]}",
        )
    heartbeats = [task["taskKey"] for task in tasks if task.get("lastHeartbeatAt")]
    # The probe's slow task always heartbeats; a selected task may end before its first one.
    record(
        "heartbeat callbacks accepted",
        bool(heartbeats) or bool(select),
        f"tasks with a recorded heartbeat: {heartbeats}"
        + ("" if heartbeats or not select else " (not required with --select)"),
    )
    listed = client.list_runs(limit=50)["runs"]
    in_list = [item for item in listed if item["runId"] == run_id]
    record(
        "runs list reflects the run",
        bool(in_list) and in_list[0]["state"] == run["state"],
        f"list state={in_list[0]['state'] if in_list else 'missing'}",
    )
    detail_states = {task["taskKey"]: task["state"] for task in run["tasks"]}
    record(
        "task views reflect the run",
        all(state in TERMINAL for state in detail_states.values()),
        f"task states={detail_states}",
    )
    return checks
