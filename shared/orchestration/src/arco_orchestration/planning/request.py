"""Run trigger request bodies (§2.1): shape (422, upstream's texts) and limits (400)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from arco_orchestration.json_shape import join, required, string, struct, type_error
from arco_orchestration.planning.rules import (
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
    RESERVED_LABEL_KEYS,
    PlanningError,
    shape_errors,
    utf8_len,
)


@dataclass(frozen=True)
class PartitionValue:
    """One item of the legacy ``partitions`` list."""

    key: str
    value: str


@dataclass(frozen=True)
class TriggerRequest:
    """A parsed ``POST …/runs`` body. ``selection`` is kept as sent (not canonicalized)."""

    selection: tuple[str, ...]
    include_upstream: bool = False
    include_downstream: bool = False
    partition_key: str | None = None
    partitions: tuple[PartitionValue, ...] = ()
    run_key: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def has_partition_request(self) -> bool:
        """Whether partitioning must be consulted (``partitionKey`` present or ``partitions``)."""
        return self.partition_key is not None or bool(self.partitions)


def required_string(obj: Mapping[str, object], key: str, path: str) -> str:
    return string(required(obj, key, path), join(path, key))


def flag(obj: Mapping[str, object], key: str) -> bool:
    if key not in obj:
        return False
    value = obj[key]
    if not isinstance(value, bool):
        raise type_error(key, value, "a boolean")
    return value


def optional_string(obj: Mapping[str, object], key: str) -> str | None:
    value = obj.get(key)
    return None if value is None else string(value, key)


def list_field(obj: Mapping[str, object], key: str) -> list[object]:
    if key not in obj:
        return []
    value = obj[key]
    if not isinstance(value, list):
        raise type_error(key, value, "a sequence")
    return value


def selection_field(obj: Mapping[str, object]) -> tuple[str, ...]:
    return tuple(
        string(item, f"selection[{i}]") for i, item in enumerate(list_field(obj, "selection"))
    )


def _partitions(obj: Mapping[str, object]) -> tuple[PartitionValue, ...]:
    parsed: list[PartitionValue] = []
    for index, item in enumerate(list_field(obj, "partitions")):
        path = f"partitions[{index}]"
        entry = struct(item, path, "PartitionValue")
        key = required_string(entry, "key", path)
        parsed.append(PartitionValue(key=key, value=required_string(entry, "value", path)))
    return tuple(parsed)


def labels_field(obj: Mapping[str, object]) -> dict[str, str]:
    if "labels" not in obj:
        return {}
    value = obj["labels"]
    if not isinstance(value, dict):
        raise type_error("labels", value, "a map")
    return {str(key): string(item, f"labels.{key}") for key, item in value.items()}


def check_selection_limits(selection: Sequence[str]) -> None:
    if len(selection) > MAX_SELECTION_ITEMS:
        raise PlanningError(f"selection exceeds max items ({MAX_SELECTION_ITEMS})")
    if any(utf8_len(item) > MAX_SELECTION_ITEM_LEN for item in selection):
        raise PlanningError(f"selection item exceeds max length ({MAX_SELECTION_ITEM_LEN})")


def check_label_limits(labels: Mapping[str, str]) -> None:
    if len(labels) > MAX_LABELS:
        raise PlanningError(f"labels exceed max properties ({MAX_LABELS})")
    for key, value in labels.items():
        if utf8_len(key) > MAX_LABEL_KEY_LEN:
            raise PlanningError(f"label key exceeds max length ({MAX_LABEL_KEY_LEN})")
        if utf8_len(value) > MAX_LABEL_VALUE_LEN:
            raise PlanningError(f"label value exceeds max length ({MAX_LABEL_VALUE_LEN})")


def check_partition_limits(partitions: Sequence[PartitionValue]) -> None:
    if len(partitions) > MAX_PARTITIONS:
        raise PlanningError(f"partitions exceed max items ({MAX_PARTITIONS})")
    for partition in partitions:
        if utf8_len(partition.key) > MAX_PARTITION_DIM_LEN:
            raise PlanningError(f"partition key exceeds max length ({MAX_PARTITION_DIM_LEN})")
        if utf8_len(partition.value) > MAX_PARTITION_VALUE_LEN:
            raise PlanningError(f"partition value exceeds max length ({MAX_PARTITION_VALUE_LEN})")


def check_run_key_limit(run_key: str | None) -> None:
    if run_key is not None and utf8_len(run_key) > MAX_RUN_KEY_LEN:
        raise PlanningError(f"runKey exceeds max length ({MAX_RUN_KEY_LEN})")


def check_partition_key_limit(partition_key: str | None) -> None:
    if partition_key is not None and utf8_len(partition_key) > MAX_PARTITION_KEY_LEN:
        raise PlanningError(f"partitionKey exceeds max length ({MAX_PARTITION_KEY_LEN})")


def check_reserved_labels(labels: Mapping[str, str]) -> None:
    """Reject the lineage labels only reruns may set (400)."""
    forbidden = [key for key in RESERVED_LABEL_KEYS if key in labels]
    if forbidden:
        raise PlanningError(f"labels cannot include reserved keys: {', '.join(forbidden)}")


def parse_trigger_request(body: object, *, idempotency_key: str | None) -> TriggerRequest:
    """Parse and check a trigger body in upstream's order (§2.1 items 1-3).

    Shape errors are 422. Then: empty selection, the limits (selection, labels, partitions,
    runKey, partitionKey), reserved labels. Unknown fields are ignored. ``runKey`` falls
    back to the ``Idempotency-Key`` header, and the runKey limit applies to whichever is used.
    Manifest-dependent checks (unknown keys, partitions, including "partitionKey and
    partitions together") happen in :func:`plan_trigger`, as upstream orders them.
    """
    with shape_errors():
        obj = struct(body, "", "TriggerRunRequest")
        run_key = optional_string(obj, "runKey")
        request = TriggerRequest(
            selection=selection_field(obj),
            include_upstream=flag(obj, "includeUpstream"),
            include_downstream=flag(obj, "includeDownstream"),
            partitions=_partitions(obj),
            partition_key=optional_string(obj, "partitionKey"),
            run_key=run_key if run_key is not None else idempotency_key,
            labels=labels_field(obj),
        )
    if not request.selection:
        raise PlanningError("selection cannot be empty")
    check_selection_limits(request.selection)
    check_label_limits(request.labels)
    check_partition_limits(request.partitions)
    check_run_key_limit(request.run_key)
    check_partition_key_limit(request.partition_key)
    check_reserved_labels(request.labels)
    return request
