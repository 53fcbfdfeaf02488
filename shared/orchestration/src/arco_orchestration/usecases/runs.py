"""Trigger, rerun and cancel runs (arco-orchestration sections 2.1, 2.3 and 6).

Each use case is one transaction: plan, reserve the run key (or replay the run it names),
append the facts. Ids are new ULIDs; a keyed replay answers with the reserved ones.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session
from ulid import ULID

from arco_envelope import format_timestamp
from arco_orchestration import facts, queries
from arco_orchestration.db import Database
from arco_orchestration.facts import CancelDisposition, RunKeyReservation
from arco_orchestration.manifest import JsonValue, ManifestError
from arco_orchestration.models import Task, TaskDependency
from arco_orchestration.planning import (
    NO_MANIFEST_MESSAGE,
    ParentTask,
    PlanningError,
    RerunRequest,
    TriggerRequest,
    check_rerun_parent,
    deterministic_rerun_run_key,
    plan_rerun,
    plan_trigger,
    rerun_labels,
    rerun_request_fingerprint,
)
from arco_orchestration.scope import Scope
from arco_orchestration.usecases.errors import (
    bad_request,
    conflict,
    not_found,
    rejected_by_rules,
)
from arco_orchestration.usecases.manifests import latest_manifest


@dataclass(frozen=True)
class Triggered:
    """The answer of a trigger or rerun: 201 for a new run, 200 for a run-key replay."""

    status: int
    body: dict[str, JsonValue]

    @property
    def created(self) -> bool:
        return self.status == 201


def _new_ids() -> tuple[str, str]:
    return str(ULID()), str(ULID())


def _answer(
    run_id: str, plan_id: str, state: str, *, created: bool, created_at: datetime
) -> dict[str, JsonValue]:
    return {
        "runId": run_id,
        "planId": plan_id,
        "state": state,
        "created": created,
        "createdAt": format_timestamp(created_at),
    }


def _replay(
    session: Session, scope: Scope, reservation: RunKeyReservation, fingerprint: str
) -> dict[str, JsonValue]:
    """The reserved run, or a 409 when the key was reserved for a different request."""
    if reservation.fingerprint != fingerprint:
        raise conflict(
            f"run_key '{reservation.run_key}' already reserved with different trigger payload",
            {
                "conflictType": "RUN_KEY_FINGERPRINT_MISMATCH",
                "runKey": reservation.run_key,
                "existingRunId": reservation.run_id,
                "existingPlanId": reservation.plan_id,
                "existingFingerprint": reservation.fingerprint,
                "requestedFingerprint": fingerprint,
                "existingCreatedAt": format_timestamp(reservation.created_at),
            },
        )
    run = queries.get_run(session, scope, reservation.run_id)
    state = queries.public_state_of(session, run).value if run else "PENDING"
    return _answer(
        reservation.run_id,
        reservation.plan_id,
        state,
        created=False,
        created_at=reservation.created_at,
    )


def trigger_run(
    db: Database,
    scope: Scope,
    trigger: TriggerRequest,
    *,
    triggered_by: str,
    heartbeat_timeout_secs: int,
    now: datetime,
) -> Triggered:
    """Plan ``trigger`` against the latest manifest and start the run (or replay its key)."""
    with db.transaction() as session:
        latest = latest_manifest(session, scope.tenant_id, scope.workspace_id)
        if latest is None:
            raise bad_request(NO_MANIFEST_MESSAGE)
        manifest_id, manifest = latest
        try:
            plan = plan_trigger(manifest, trigger)
        except (PlanningError, ManifestError) as exc:
            raise rejected_by_rules(exc) from None
        tasks = [replace(task, heartbeat_timeout_sec=heartbeat_timeout_secs) for task in plan.tasks]
        run_id, plan_id = _new_ids()
        if trigger.run_key is not None:
            reservation = facts.reserve_run_key(
                session,
                scope,
                run_key=trigger.run_key,
                run_id=run_id,
                plan_id=plan_id,
                fingerprint=plan.request_fingerprint,
                now=now,
            )
            if not reservation.created:
                return Triggered(
                    200, _replay(session, scope, reservation, plan.request_fingerprint)
                )
        facts.trigger_run(
            session,
            scope,
            run_id=run_id,
            plan_id=plan_id,
            tasks=tasks,
            now=now,
            triggered_by=triggered_by,
            run_key=trigger.run_key,
            labels=dict(trigger.labels),
            code_version=manifest.code_version_id,
            manifest_id=manifest_id,
        )
        return Triggered(201, _answer(run_id, plan_id, "PENDING", created=True, created_at=now))


def _parent_tasks(session: Session, run_id: str) -> list[ParentTask]:
    return [
        ParentTask(
            key=task.task_key,
            state=task.state,
            asset_key=task.asset_key,
            partition_key=task.partition_key,
            max_attempts=task.max_attempts,
            heartbeat_timeout_sec=task.heartbeat_timeout_sec,
            requires_visible_output=task.requires_visible_output,
        )
        for task in session.scalars(select(Task).where(Task.run_id == run_id))
    ]


def _parent_edges(session: Session, run_id: str) -> list[tuple[str, str]]:
    return [
        (edge.upstream_key, edge.downstream_key)
        for edge in session.scalars(select(TaskDependency).where(TaskDependency.run_id == run_id))
    ]


def rerun(
    db: Database,
    scope: Scope,
    run_id: str,
    request: RerunRequest,
    *,
    triggered_by: str,
    now: datetime,
) -> Triggered:
    """Rerun a run from failure or a subset (§2.3): a child run under a run key that is the
    request's or derived from the plan, so a repeated rerun replays."""
    with db.transaction() as session:
        parent = queries.get_run(session, scope, run_id)
        if parent is None:
            raise not_found(f"run not found: {run_id}")
        try:
            check_rerun_parent(request.kind, parent.state)
            plan = plan_rerun(
                request.kind,
                _parent_tasks(session, run_id),
                _parent_edges(session, run_id),
                selection=request.selection,
                include_upstream=request.include_upstream,
                include_downstream=request.include_downstream,
            )
        except PlanningError as exc:
            raise rejected_by_rules(exc) from None
        labels = rerun_labels(dict(request.labels), run_id, request.kind)
        run_key = request.run_key or deterministic_rerun_run_key(
            run_id, request.kind, plan.selected_tasks, plan.partition_keys
        )
        fingerprint = rerun_request_fingerprint(run_id, plan, labels)
        extras: dict[str, JsonValue] = {
            "parentRunId": run_id,
            "rerunKind": request.kind,
            "rerunReason": plan.reason,
        }
        new_run_id, plan_id = _new_ids()
        reservation = facts.reserve_run_key(
            session,
            scope,
            run_key=run_key,
            run_id=new_run_id,
            plan_id=plan_id,
            fingerprint=fingerprint,
            now=now,
        )
        if not reservation.created:
            return Triggered(200, {**_replay(session, scope, reservation, fingerprint), **extras})
        facts.trigger_run(
            session,
            scope,
            run_id=new_run_id,
            plan_id=plan_id,
            tasks=plan.tasks,
            now=now,
            triggered_by=triggered_by,
            run_key=run_key,
            labels=labels,
            code_version=parent.code_version,
            manifest_id=parent.manifest_id,
            parent_run_id=run_id,
            rerun_kind=request.kind,
            rerun_reason=plan.reason,
        )
        body = _answer(new_run_id, plan_id, "PENDING", created=True, created_at=now)
        return Triggered(201, {**body, **extras})


def cancel_run(
    db: Database, scope: Scope, run_id: str, *, reason: str | None, now: datetime
) -> dict[str, JsonValue]:
    """Request cancellation (T10); 404 for an unknown run, 409 for a finished one."""
    with db.transaction() as session:
        disposition, run = facts.cancel_run(session, scope, run_id, reason=reason, now=now)
        if disposition is CancelDisposition.NOT_FOUND or run is None:
            raise not_found(f"run not found: {run_id}")
        if disposition is CancelDisposition.ALREADY_TERMINAL:
            raise conflict(f"run {run_id} is already in terminal state {run.state}")
        state = queries.public_state_of(session, run).value
        cancelled_at = run.cancel_requested_at or now
        return {"runId": run.run_id, "state": state, "cancelledAt": format_timestamp(cancelled_at)}
