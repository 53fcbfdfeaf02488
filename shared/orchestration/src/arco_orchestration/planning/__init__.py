"""Run trigger requests, planning and rerun selection (arco-orchestration §2.1, §2.2, §2.5),
one module per topic: ``rules`` (errors, limits, labels), ``request`` (trigger bodies),
``partition_keys`` (the ADR-011 grammar), ``partitioning`` (manifest partitioning and key
resolution), ``plan`` (selection, closure, tasks, request fingerprint), ``reruns``.

Pure logic only. The api service does, for ``POST …/runs``::

    request = parse_trigger_request(body, idempotency_key=header)   # 422 / 400
    manifest = <latest manifest>  or 400 NO_MANIFEST_MESSAGE
    plan = plan_trigger(manifest, request)                          # 400
    <reserve plan.request_fingerprint under request.run_key, append facts>

Errors are :class:`PlanningError`; ``status_code`` is 400 unless stated (422 for body-shape
errors, 409 for the rerun parent checks). Messages are upstream's.

Lengths are counted in UTF-8 bytes, as upstream's Rust ``str::len`` does.
"""

from arco_orchestration.planning.partition_keys import (
    PartitionKeyError,
    PartitionScalar,
    PartitionTag,
    is_adr011_date,
    is_adr011_timestamp,
    parse_partition_key,
    render_partition_key,
)
from arco_orchestration.planning.partitioning import (
    DimensionSpec,
    PartitioningSpec,
    derive_run_partitioning,
    parse_partitioning,
    resolve_partition_key,
)
from arco_orchestration.planning.plan import (
    PlannedTask,
    RunPlan,
    build_tasks,
    canonical_key,
    canonical_selection,
    close_selection,
    plan_run,
    plan_trigger,
    resolve_root_assets,
    run_request_fingerprint,
)
from arco_orchestration.planning.request import (
    PartitionValue,
    TriggerRequest,
    check_reserved_labels,
    parse_trigger_request,
)
from arco_orchestration.planning.reruns import (
    ParentEdge,
    ParentTask,
    RerunKind,
    RerunPlan,
    RerunRequest,
    check_rerun_parent,
    deterministic_rerun_run_key,
    parse_rerun_request,
    plan_rerun,
    plan_rerun_from_failure,
    plan_rerun_subset,
    rerun_labels,
    rerun_reason,
    rerun_request_fingerprint,
)
from arco_orchestration.planning.rules import (
    DEFAULT_HEARTBEAT_TIMEOUT_SEC,
    DEFAULT_MAX_ATTEMPTS,
    LABEL_PARENT_RUN_ID,
    LABEL_RERUN_KIND,
    MAX_LABEL_KEY_LEN,
    MAX_LABEL_VALUE_LEN,
    MAX_LABELS,
    MAX_PARTITION_DIM_LEN,
    MAX_PARTITION_KEY_LEN,
    MAX_PARTITION_VALUE_LEN,
    MAX_PARTITIONS,
    MAX_RUN_KEY_LEN,
    MAX_SELECTION_ITEM_LEN,
    MAX_SELECTION_ITEMS,
    NO_MANIFEST_MESSAGE,
    RESERVED_LABEL_KEYS,
    PlanningError,
)

__all__ = [
    "DEFAULT_HEARTBEAT_TIMEOUT_SEC",
    "DEFAULT_MAX_ATTEMPTS",
    "LABEL_PARENT_RUN_ID",
    "LABEL_RERUN_KIND",
    "MAX_LABELS",
    "MAX_LABEL_KEY_LEN",
    "MAX_LABEL_VALUE_LEN",
    "MAX_PARTITIONS",
    "MAX_PARTITION_DIM_LEN",
    "MAX_PARTITION_KEY_LEN",
    "MAX_PARTITION_VALUE_LEN",
    "MAX_RUN_KEY_LEN",
    "MAX_SELECTION_ITEMS",
    "MAX_SELECTION_ITEM_LEN",
    "NO_MANIFEST_MESSAGE",
    "RESERVED_LABEL_KEYS",
    "DimensionSpec",
    "ParentEdge",
    "ParentTask",
    "PartitionKeyError",
    "PartitionScalar",
    "PartitionTag",
    "PartitionValue",
    "PartitioningSpec",
    "PlannedTask",
    "PlanningError",
    "RerunKind",
    "RerunPlan",
    "RerunRequest",
    "RunPlan",
    "TriggerRequest",
    "build_tasks",
    "canonical_key",
    "canonical_selection",
    "check_rerun_parent",
    "check_reserved_labels",
    "close_selection",
    "derive_run_partitioning",
    "deterministic_rerun_run_key",
    "is_adr011_date",
    "is_adr011_timestamp",
    "parse_partition_key",
    "parse_partitioning",
    "parse_rerun_request",
    "parse_trigger_request",
    "plan_rerun",
    "plan_rerun_from_failure",
    "plan_rerun_subset",
    "plan_run",
    "plan_trigger",
    "render_partition_key",
    "rerun_labels",
    "rerun_reason",
    "rerun_request_fingerprint",
    "resolve_partition_key",
    "resolve_root_assets",
    "run_request_fingerprint",
]
