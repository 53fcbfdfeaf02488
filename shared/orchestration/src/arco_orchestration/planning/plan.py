"""Selection, graph closure and planned tasks of a trigger (§2.1, §2.2), and the run-key
fingerprint of its request."""

from __future__ import annotations

from collections import deque
from collections.abc import Container, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property

from arco_orchestration.json_shape import JsonValue, sha256_hex
from arco_orchestration.manifest import AssetKeyError, DeployedManifest, canonical_asset_key
from arco_orchestration.planning.partitioning import (
    derive_run_partitioning,
    parse_partitioning,
    resolve_partition_key,
)
from arco_orchestration.planning.request import TriggerRequest
from arco_orchestration.planning.rules import (
    DEFAULT_HEARTBEAT_TIMEOUT_SEC,
    DEFAULT_MAX_ATTEMPTS,
    PlanningError,
)


def canonical_key(text: str) -> str:
    """:func:`canonical_asset_key` raising a 400 :class:`PlanningError`."""
    try:
        return canonical_asset_key(text)
    except AssetKeyError as exc:
        raise PlanningError(str(exc)) from None


def canonical_selection(selection: Iterable[str]) -> tuple[str, ...]:
    """Canonical keys, sorted and de-duplicated; the first invalid entry raises (400)."""
    return tuple(sorted({canonical_key(item) for item in selection}))


def resolve_roots(selection: Iterable[str], known: Container[str], noun: str) -> tuple[str, ...]:
    # Every entry is canonicalized first (an invalid one fails at once); unknown keys are
    # then reported together, sorted and de-duplicated. ``known`` is a set or mapping the
    # caller keeps (a manifest's key set), so a check costs nothing per known key.
    canonical = [canonical_key(item) for item in selection]
    unknown = sorted({key for key in canonical if key not in known})
    if unknown:
        raise PlanningError(f"unknown {noun} keys: {', '.join(unknown)}")
    return tuple(sorted(set(canonical)))


def resolve_root_assets(manifest: DeployedManifest, selection: Iterable[str]) -> tuple[str, ...]:
    """The canonical roots of a selection, sorted; ``unknown asset keys: a, b`` otherwise."""
    return resolve_roots(selection, manifest.asset_key_set, "asset")


def _downstream_of(upstream: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    downstream: dict[str, list[str]] = {key: [] for key in upstream}
    for key, parents in upstream.items():
        for parent in parents:
            downstream.setdefault(parent, []).append(key)
    return downstream


def _walk(roots: Iterable[str], neighbours: Mapping[str, Sequence[str]]) -> set[str]:
    reached = set(roots)
    queue = deque(reached)
    while queue:
        for neighbour in neighbours.get(queue.popleft(), ()):
            if neighbour not in reached:
                reached.add(neighbour)
                queue.append(neighbour)
    return reached


def close_selection(
    roots: Iterable[str],
    upstream: Mapping[str, Sequence[str]],
    *,
    include_upstream: bool,
    include_downstream: bool,
) -> list[str]:
    """Roots plus, if asked, their transitive upstream and/or downstream, sorted.

    The two expansions both start from the roots (the downstream of an upstream is not
    added), and nothing is added that was not asked for (no autofill).
    """
    root_list = list(roots)
    planned = set(root_list)
    if include_upstream:
        planned |= _walk(root_list, upstream)
    if include_downstream:
        planned |= _walk(root_list, _downstream_of(upstream))
    return sorted(planned)


@dataclass(frozen=True)
class PlannedTask:
    """One task of a PlanCreated fact."""

    key: str
    asset_key: str | None
    depends_on: tuple[str, ...] = ()
    partition_key: str | None = None
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    heartbeat_timeout_sec: int = DEFAULT_HEARTBEAT_TIMEOUT_SEC
    requires_visible_output: bool = True

    def to_dict(self) -> dict[str, JsonValue]:
        """Upstream's ``TaskDef`` as a snake_case JSON object."""
        return {
            "key": self.key,
            "depends_on": list(self.depends_on),
            "asset_key": self.asset_key,
            "partition_key": self.partition_key,
            "max_attempts": self.max_attempts,
            "heartbeat_timeout_sec": self.heartbeat_timeout_sec,
            "requires_visible_output": self.requires_visible_output,
        }


def planned_dependencies(parents: Iterable[str], planned: set[str]) -> tuple[str, ...]:
    # De-duplicated, unlike upstream: a repeated upstream would count twice in deps_total but
    # create a single edge, leaving the task BLOCKED forever.
    return tuple(sorted({parent for parent in parents if parent in planned}))


def build_tasks(
    planned: Sequence[str],
    upstream: Mapping[str, Sequence[str]],
    partition_key: str | None,
) -> list[PlannedTask]:
    """One task per planned asset, sorted by key, depending only on planned upstreams."""
    planned_set = set(planned)
    return [
        PlannedTask(
            key=key,
            asset_key=key,
            depends_on=planned_dependencies(upstream.get(key, ()), planned_set),
            partition_key=partition_key,
        )
        for key in sorted(planned_set)
    ]


@dataclass(frozen=True)
class RunPlan:
    """Everything the trigger route needs after planning."""

    root_assets: tuple[str, ...]
    partition_key: str | None
    tasks: tuple[PlannedTask, ...]
    request: TriggerRequest = field(repr=False, compare=False)

    @cached_property
    def request_fingerprint(self) -> str:
        """The run-key fingerprint of the request: only a trigger with a run key needs it,
        so it is computed on first use (the roots are its canonical selection)."""
        return run_request_fingerprint(self.request, self.partition_key, roots=self.root_assets)


def plan_trigger(
    manifest: DeployedManifest,
    request: TriggerRequest,
    *,
    reject_time_strings: bool = False,
) -> RunPlan:
    """Plan a trigger against the latest manifest (§2.1 items 5-6, §2.2).

    Order as upstream: roots (invalid key, ``unknown asset keys``), then, only when the
    request carries a partition, the roots' partitioning and the partition key. Without a
    partition the manifest's partitioning is never read. ``reject_time_strings`` is
    ``ARCO_PARTITION_TIME_STRING_CUTOFF`` being set and in the past.
    """
    roots = resolve_root_assets(manifest, request.selection)
    partition_key: str | None = None
    if request.has_partition_request:
        specs = {asset.key: parse_partitioning(asset.partitioning) for asset in manifest.assets}
        spec = derive_run_partitioning(roots, specs)
        partition_key = resolve_partition_key(
            request, spec, reject_time_strings=reject_time_strings
        )
    graph = manifest.upstream_view()
    planned = close_selection(
        roots,
        graph,
        include_upstream=request.include_upstream,
        include_downstream=request.include_downstream,
    )
    return RunPlan(
        root_assets=roots,
        partition_key=partition_key,
        tasks=tuple(build_tasks(planned, graph, partition_key)),
        request=request,
    )


def plan_run(
    manifest: DeployedManifest,
    request: TriggerRequest,
    *,
    reject_time_strings: bool = False,
) -> list[PlannedTask]:
    """The tasks of :func:`plan_trigger`."""
    return list(plan_trigger(manifest, request, reject_time_strings=reject_time_strings).tasks)


def run_request_fingerprint(
    request: TriggerRequest,
    resolved_partition_key: str | None,
    *,
    roots: Sequence[str] | None = None,
) -> str:
    """Hex SHA-256 of the run-key payload (§2.1 "Run-key fingerprint").

    The JSON object is ``{selection, include_upstream, include_downstream, partition_key?,
    labels}`` in that order: canonical, sorted, de-duplicated selection; the resolved
    (normalized) partition key, omitted when absent; labels sorted by key.
    """
    payload: dict[str, JsonValue] = {
        "selection": list(canonical_selection(request.selection)),
        "include_upstream": request.include_upstream,
        "include_downstream": request.include_downstream,
    }
    if resolved_partition_key is not None:
        payload["partition_key"] = resolved_partition_key
    payload["labels"] = {key: request.labels[key] for key in sorted(request.labels)}
    return sha256_hex(payload)
