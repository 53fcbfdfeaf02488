"""Reruns (§2.5): request bodies, the parent's tasks to run again, run key and fingerprint."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, TypeAlias

from arco_orchestration.json_shape import JsonValue, sha256_hex, shape_error, string, struct
from arco_orchestration.planning.plan import (
    PlannedTask,
    close_selection,
    planned_dependencies,
    resolve_roots,
)
from arco_orchestration.planning.request import (
    check_label_limits,
    check_reserved_labels,
    check_run_key_limit,
    check_selection_limits,
    flag,
    labels_field,
    optional_string,
    selection_field,
)
from arco_orchestration.planning.rules import (
    DEFAULT_HEARTBEAT_TIMEOUT_SEC,
    DEFAULT_MAX_ATTEMPTS,
    LABEL_PARENT_RUN_ID,
    LABEL_RERUN_KIND,
    PlanningError,
    shape_errors,
)

RerunKind: TypeAlias = Literal["FROM_FAILURE", "SUBSET"]
_RERUN_MODES: dict[str, RerunKind] = {"fromFailure": "FROM_FAILURE", "subset": "SUBSET"}
_RERUN_REASONS: dict[RerunKind, str] = {
    "FROM_FAILURE": "from_failure_unsucceeded_tasks",
    "SUBSET": "subset_selection",
}


@dataclass(frozen=True)
class RerunRequest:
    """A parsed ``POST …/runs/{id}/rerun`` body."""

    kind: RerunKind
    selection: tuple[str, ...] = ()
    include_upstream: bool = False
    include_downstream: bool = False
    run_key: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)


def _rerun_kind(obj: Mapping[str, object]) -> RerunKind:
    if "mode" not in obj:
        raise shape_error("", "missing field `mode`")
    mode = string(obj["mode"], "mode")
    kind = _RERUN_MODES.get(mode)
    if kind is None:
        raise shape_error("mode", f"unknown variant `{mode}`, expected `fromFailure` or `subset`")
    return kind


def parse_rerun_request(body: object) -> RerunRequest:
    """Parse and check a rerun body: shape (422), then labels, selection and runKey limits,
    then reserved labels (400), in upstream's order."""
    with shape_errors():
        obj = struct(body, "", "RerunRunRequest")
        request = RerunRequest(
            kind=_rerun_kind(obj),
            selection=selection_field(obj),
            include_upstream=flag(obj, "includeUpstream"),
            include_downstream=flag(obj, "includeDownstream"),
            run_key=optional_string(obj, "runKey"),
            labels=labels_field(obj),
        )
    check_label_limits(request.labels)
    check_selection_limits(request.selection)
    check_run_key_limit(request.run_key)
    check_reserved_labels(request.labels)
    return request


@dataclass(frozen=True)
class ParentTask:
    """A task row of the parent run, as far as a rerun needs it."""

    key: str
    state: str
    asset_key: str | None = None
    partition_key: str | None = None
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    heartbeat_timeout_sec: int = DEFAULT_HEARTBEAT_TIMEOUT_SEC
    requires_visible_output: bool = True


ParentEdge: TypeAlias = tuple[str, str]
"""A dependency edge of the parent run: ``(upstream_task_key, downstream_task_key)``."""


@dataclass(frozen=True)
class RerunPlan:
    """The selection and tasks of a rerun."""

    kind: RerunKind
    roots: tuple[str, ...]
    include_upstream: bool
    include_downstream: bool
    tasks: tuple[PlannedTask, ...]

    @property
    def selected_tasks(self) -> tuple[str, ...]:
        """Planned task keys, sorted."""
        return tuple(task.key for task in self.tasks)

    @property
    def partition_keys(self) -> tuple[str, ...]:
        """Distinct partition keys of the planned tasks, sorted."""
        return tuple(sorted({t.partition_key for t in self.tasks if t.partition_key is not None}))

    @property
    def reason(self) -> str:
        """The response's ``rerunReason``."""
        return rerun_reason(self.kind)


def rerun_reason(kind: RerunKind) -> str:
    """``from_failure_unsucceeded_tasks`` or ``subset_selection``."""
    return _RERUN_REASONS[kind]


def check_rerun_parent(kind: RerunKind, parent_run_state: str) -> None:
    """A from-failure rerun needs a stored-FAILED parent run (409 otherwise)."""
    if kind == "FROM_FAILURE" and parent_run_state != "FAILED":
        raise PlanningError("rerun-from-failure requires a FAILED parent run", status_code=409)


def _parent_upstream(
    tasks: Mapping[str, ParentTask], edges: Iterable[ParentEdge]
) -> dict[str, list[str]]:
    # Edges whose ends are not both tasks of the parent are ignored.
    upstream: dict[str, set[str]] = {key: set() for key in tasks}
    for parent, child in edges:
        if parent in tasks and child in tasks:
            upstream[child].add(parent)
    return {key: sorted(parents) for key, parents in upstream.items()}


def _rerun_tasks(
    tasks: Mapping[str, ParentTask], selected: Sequence[str], upstream: Mapping[str, list[str]]
) -> tuple[PlannedTask, ...]:
    # Each task keeps the parent row's asset, partition and retry settings.
    selected_set = set(selected)
    return tuple(
        PlannedTask(
            key=key,
            asset_key=tasks[key].asset_key,
            depends_on=planned_dependencies(upstream.get(key, ()), selected_set),
            partition_key=tasks[key].partition_key,
            max_attempts=tasks[key].max_attempts,
            heartbeat_timeout_sec=tasks[key].heartbeat_timeout_sec,
            requires_visible_output=tasks[key].requires_visible_output,
        )
        for key in sorted(selected_set)
    )


def plan_rerun(
    kind: RerunKind,
    parent_tasks: Iterable[ParentTask],
    parent_edges: Iterable[ParentEdge],
    *,
    selection: Sequence[str] = (),
    include_upstream: bool = False,
    include_downstream: bool = False,
) -> RerunPlan:
    """Select and plan a rerun from the parent's tasks and dependency edges.

    ``FROM_FAILURE``: every parent task not SUCCEEDED, no expansion (the flags are ignored).
    ``SUBSET``: the canonical selection (each a parent task key, else ``unknown task keys``)
    expanded over the parent's edges. A parent without tasks is a 409; an empty result 400.
    Call :func:`check_rerun_parent` first, as upstream checks the parent state before this.
    """
    tasks = {task.key: task for task in parent_tasks}
    if not tasks:
        raise PlanningError("parent run has no plan; cannot rerun", status_code=409)
    upstream = _parent_upstream(tasks, parent_edges)
    if kind == "FROM_FAILURE":
        roots = tuple(sorted(key for key, task in tasks.items() if task.state != "SUCCEEDED"))
        selected: Sequence[str] = roots
        include_upstream = include_downstream = False
    else:
        if not selection:
            raise PlanningError("selection cannot be empty")
        roots = resolve_roots(selection, tasks, "task")
        selected = close_selection(
            roots,
            upstream,
            include_upstream=include_upstream,
            include_downstream=include_downstream,
        )
    if not selected:
        raise PlanningError("rerun selection is empty")
    return RerunPlan(
        kind=kind,
        roots=roots,
        include_upstream=include_upstream,
        include_downstream=include_downstream,
        tasks=_rerun_tasks(tasks, selected, upstream),
    )


def plan_rerun_from_failure(
    parent_tasks: Iterable[ParentTask], parent_edges: Iterable[ParentEdge]
) -> list[PlannedTask]:
    """The tasks of a ``fromFailure`` rerun (see :func:`plan_rerun`)."""
    return list(plan_rerun("FROM_FAILURE", parent_tasks, parent_edges).tasks)


def plan_rerun_subset(
    parent_tasks: Iterable[ParentTask],
    parent_edges: Iterable[ParentEdge],
    selection: Sequence[str],
    *,
    include_upstream: bool = False,
    include_downstream: bool = False,
) -> list[PlannedTask]:
    """The tasks of a ``subset`` rerun (see :func:`plan_rerun`)."""
    plan = plan_rerun(
        "SUBSET",
        parent_tasks,
        parent_edges,
        selection=selection,
        include_upstream=include_upstream,
        include_downstream=include_downstream,
    )
    return list(plan.tasks)


def rerun_labels(labels: Mapping[str, str], parent_run_id: str, kind: RerunKind) -> dict[str, str]:
    """The request's labels plus the lineage labels ``arco.parent_run_id``/``arco.rerun.kind``."""
    return {**labels, LABEL_PARENT_RUN_ID: parent_run_id, LABEL_RERUN_KIND: kind}


def deterministic_rerun_run_key(
    parent_run_id: str,
    kind: RerunKind,
    selected_tasks: Iterable[str],
    partition_keys: Iterable[str],
) -> str:
    """The run key of a rerun sent without ``runKey``.

    Format (upstream's ``compute_rerun_run_key``):
    ``rerun:{parent_run_id}:{from_failure|subset}:{h}`` where ``h`` is the first 16 hex
    characters of SHA-256 over the compact JSON ``{"parent_run_id", "rerun_kind"
    (FROM_FAILURE|SUBSET), "selected_tasks" (sorted), "partition_keys" (sorted, distinct)}``.
    """
    payload: dict[str, JsonValue] = {
        "parent_run_id": parent_run_id,
        "rerun_kind": kind,
        "selected_tasks": list[JsonValue](sorted(set(selected_tasks))),
        "partition_keys": list[JsonValue](sorted(set(partition_keys))),
    }
    return f"rerun:{parent_run_id}:{kind.lower()}:{sha256_hex(payload)[:16]}"


def rerun_request_fingerprint(
    parent_run_id: str, plan: RerunPlan, labels: Mapping[str, str]
) -> str:
    """The run-key fingerprint of a rerun; ``labels`` should include the lineage labels."""
    payload: dict[str, JsonValue] = {
        "parent_run_id": parent_run_id,
        "rerun_kind": plan.kind,
        "roots": list(plan.roots),
        "include_upstream": plan.include_upstream,
        "include_downstream": plan.include_downstream,
        "selected_tasks": list(plan.selected_tasks),
        "partition_keys": list(plan.partition_keys),
        "labels": {key: labels[key] for key in sorted(labels)},
    }
    return sha256_hex(payload)
