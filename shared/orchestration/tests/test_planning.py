"""Tests of run triggers, planning and rerun selection (orchestration §2.1, §2.2, §2.5, §8)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from arco_orchestration.manifest import DeployedManifest, parse_manifest_body
from arco_orchestration.planning import (
    NO_MANIFEST_MESSAGE,
    ParentTask,
    PartitionKeyError,
    PartitionScalar,
    PartitionValue,
    PlannedTask,
    PlanningError,
    TriggerRequest,
    canonical_selection,
    check_rerun_parent,
    deterministic_rerun_run_key,
    parse_partition_key,
    parse_partitioning,
    parse_rerun_request,
    parse_trigger_request,
    plan_rerun,
    plan_rerun_from_failure,
    plan_rerun_subset,
    plan_run,
    plan_trigger,
    render_partition_key,
    rerun_labels,
    rerun_request_fingerprint,
    run_request_fingerprint,
)

# The planning-relevant part of arco-manifest-example.json: the dependent comes first, as the
# SDK sorts by key, not topologically.
EXAMPLE_MANIFEST = (
    '{"assets":[{"dependencies":[{"mapping":"identity","parameterName":"raw_orders",'
    '"upstreamKey":{"name":"raw_orders","namespace":"analytics"}}],'
    '"id":"01a21cea-a443-7125-9e70-10560e75b5d8","key":{"name":"daily_sales",'
    '"namespace":"analytics"},"partitioning":{"dimensions":[{"granularity":"day","kind":"time",'
    '"name":"date"}],"isPartitioned":true}},{"dependencies":[],'
    '"id":"01a21cea-a444-7dc5-91c5-9ccf99ee287e","key":{"name":"raw_orders",'
    '"namespace":"analytics"},"partitioning":{"dimensions":[],"isPartitioned":false}}],'
    '"codeVersionId":"01M8EENQ2YH5T6GYKK1GHWHZYZ","manifestVersion":"1.0"}'
)
DAY = {"dimensions": [{"granularity": "day", "kind": "time", "name": "date"}]}


def example_manifest() -> DeployedManifest:
    """The worked example's two assets."""
    return parse_manifest_body(json.loads(EXAMPLE_MANIFEST))


def asset(key: str, *upstream: str, partitioning: Any = None) -> dict[str, Any]:
    """An asset entry for ``ns.name`` with upstream ``ns.name`` keys."""
    namespace, name = key.split(".", 1)
    entry: dict[str, Any] = {
        "key": {"namespace": namespace, "name": name},
        "id": f"id-{key}",
        "dependencies": [
            {"upstreamKey": dict(zip(("namespace", "name"), up.split(".", 1), strict=True))}
            for up in upstream
        ],
    }
    if partitioning is not None:
        entry["partitioning"] = partitioning
    return entry


def manifest(*assets: dict[str, Any]) -> DeployedManifest:
    """A validated manifest with these assets."""
    return parse_manifest_body(
        {"manifestVersion": "1.0", "codeVersionId": "cv", "assets": list(assets)}
    )


# a -> b -> c, a -> x, d alone (arrows point downstream).
GRAPH = manifest(
    asset("ns.c", "ns.b"),
    asset("ns.b", "ns.a"),
    asset("ns.a"),
    asset("ns.x", "ns.a"),
    asset("ns.d"),
)


def trigger(**body: Any) -> TriggerRequest:
    """Parse a trigger body without an Idempotency-Key header."""
    return parse_trigger_request(body, idempotency_key=None)


def planned(plan: list[PlannedTask]) -> list[tuple[str, tuple[str, ...]]]:
    """(key, depends_on) of each planned task."""
    return [(task.key, task.depends_on) for task in plan]


def error_of(body: object, *, header: str | None = None) -> PlanningError:
    """The error of parsing ``body``."""
    with pytest.raises(PlanningError) as caught:
        parse_trigger_request(body, idempotency_key=header)
    return caught.value


def plan_error(target: DeployedManifest, **body: Any) -> PlanningError:
    """The error of planning ``body`` against ``target``."""
    with pytest.raises(PlanningError) as caught:
        plan_trigger(target, trigger(**body))
    return caught.value


# --- Parsing the trigger body (§2.1) ----------------------------------------------------------


def test_sdk_run_bodies() -> None:
    first = parse_trigger_request(
        {"selection": ["analytics.daily_sales"], "partitionKey": "date=s:MjAyNC0wMS0xNQ"},
        idempotency_key=None,
    )
    assert first == TriggerRequest(
        selection=("analytics.daily_sales",), partition_key="date=s:MjAyNC0wMS0xNQ"
    )
    second = parse_trigger_request(
        {"selection": ["analytics.daily_sales"], "includeUpstream": True, "runKey": "nightly-1"},
        idempotency_key=None,
    )
    assert second.include_upstream
    assert not second.include_downstream
    assert second.run_key == "nightly-1"
    assert not second.has_partition_request


def test_full_body_and_unknown_fields() -> None:
    request = parse_trigger_request(
        {
            "selection": ["ns/a", "ns.b"],
            "includeUpstream": False,
            "includeDownstream": True,
            "partitions": [{"key": "date", "value": "2024-01-15", "extra": 1}],
            "labels": {"team": "finance"},
            "somethingElse": {"ignored": True},
        },
        idempotency_key=None,
    )
    assert request.selection == ("ns/a", "ns.b")
    assert request.partitions == (PartitionValue("date", "2024-01-15"),)
    assert request.labels == {"team": "finance"}
    assert request.has_partition_request


def test_run_key_falls_back_to_the_idempotency_key_header() -> None:
    assert parse_trigger_request({"selection": ["ns.a"]}, idempotency_key="hdr").run_key == "hdr"
    body = {"selection": ["ns.a"], "runKey": "body"}
    assert parse_trigger_request(body, idempotency_key="hdr").run_key == "body"
    nulled = {"selection": ["ns.a"], "runKey": None, "partitionKey": None}
    parsed = parse_trigger_request(nulled, idempotency_key="hdr")
    assert parsed.run_key == "hdr"
    assert parsed.partition_key is None


PREFIX = "Failed to deserialize the JSON body into the target type: "


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("x", 'invalid type: string "x", expected struct TriggerRunRequest'),
        ({"selection": "ns.a"}, 'selection: invalid type: string "ns.a", expected a sequence'),
        ({"selection": None}, "selection: invalid type: null, expected a sequence"),
        ({"selection": ["ns.a", 3]}, "selection[1]: invalid type: integer `3`, expected a string"),
        (
            {"selection": ["ns.a"], "includeUpstream": None},
            "includeUpstream: invalid type: null, expected a boolean",
        ),
        (
            {"selection": ["ns.a"], "includeDownstream": "true"},
            'includeDownstream: invalid type: string "true", expected a boolean',
        ),
        (
            {"selection": ["ns.a"], "partitionKey": 5},
            "partitionKey: invalid type: integer `5`, expected a string",
        ),
        ({"selection": ["ns.a"], "labels": None}, "labels: invalid type: null, expected a map"),
        (
            {"selection": ["ns.a"], "labels": {"k": 1}},
            "labels.k: invalid type: integer `1`, expected a string",
        ),
        (
            {"selection": ["ns.a"], "partitions": [{"key": "date"}]},
            "partitions[0]: missing field `value`",
        ),
    ],
)
def test_shape_errors_are_422(body: object, message: str) -> None:
    error = error_of(body)
    assert error.status_code == 422
    assert error.message == PREFIX + message


def test_selection_is_required_and_non_empty() -> None:
    assert error_of({}).message == "selection cannot be empty"
    assert error_of({"selection": []}).message == "selection cannot be empty"


def _many(count: int) -> dict[str, str]:
    return {f"k{i}": "v" for i in range(count)}


@pytest.mark.parametrize(
    ("body", "header", "message"),
    [
        ({"selection": ["ns.a"] * 10_001}, None, "selection exceeds max items (10000)"),
        ({"selection": ["ns." + "a" * 254]}, None, "selection item exceeds max length (256)"),
        # Lengths are UTF-8 bytes, like upstream's str::len.
        ({"selection": ["é" * 129]}, None, "selection item exceeds max length (256)"),
        ({"selection": ["ns.a"], "labels": _many(129)}, None, "labels exceed max properties (128)"),
        (
            {"selection": ["ns.a"], "labels": {"k" * 129: "v"}},
            None,
            "label key exceeds max length (128)",
        ),
        (
            {"selection": ["ns.a"], "labels": {"k": "v" * 2049}},
            None,
            "label value exceeds max length (2048)",
        ),
        (
            {"selection": ["ns.a"], "partitions": [{"key": "d", "value": "v"}] * 129},
            None,
            "partitions exceed max items (128)",
        ),
        (
            {"selection": ["ns.a"], "partitions": [{"key": "d" * 65, "value": "v"}]},
            None,
            "partition key exceeds max length (64)",
        ),
        (
            {"selection": ["ns.a"], "partitions": [{"key": "d", "value": "v" * 257}]},
            None,
            "partition value exceeds max length (256)",
        ),
        ({"selection": ["ns.a"], "runKey": "r" * 257}, None, "runKey exceeds max length (256)"),
        ({"selection": ["ns.a"]}, "r" * 257, "runKey exceeds max length (256)"),
        (
            {"selection": ["ns.a"], "partitionKey": "p" * 1025},
            None,
            "partitionKey exceeds max length (1024)",
        ),
    ],
)
def test_limits(body: dict[str, Any], header: str | None, message: str) -> None:
    error = error_of(body, header=header)
    assert error.status_code == 400
    assert error.message == message


def test_values_at_the_limits_pass() -> None:
    request = parse_trigger_request(
        {
            "selection": ["ns." + "a" * 253] + ["ns.a"] * 9_999,
            "labels": {f"{i:03d}".rjust(128, "k"): "v" * 2048 for i in range(128)},
            "partitions": [{"key": "d" * 64, "value": "v" * 256}] * 128,
            "runKey": "r" * 256,
        },
        idempotency_key=None,
    )
    assert len(request.selection) == 10_000
    request = parse_trigger_request(
        {"selection": ["ns.a"], "partitionKey": "p" * 1024}, idempotency_key=None
    )
    assert request.partition_key is not None


@pytest.mark.parametrize(
    ("body", "message"),
    [
        # Empty selection first, even with everything else wrong.
        ({"selection": [], "labels": _many(129), "runKey": "r" * 300}, "selection cannot be empty"),
        # Selection limits, then labels, then partitions, then runKey, then partitionKey.
        (
            {"selection": ["ns." + "a" * 300], "labels": _many(129)},
            "selection item exceeds max length (256)",
        ),
        (
            {
                "selection": ["ns.a"],
                "labels": _many(129),
                "partitions": [{"key": "d" * 65, "value": ""}],
            },
            "labels exceed max properties (128)",
        ),
        (
            {
                "selection": ["ns.a"],
                "partitions": [{"key": "d" * 65, "value": ""}],
                "runKey": "r" * 300,
            },
            "partition key exceeds max length (64)",
        ),
        (
            {"selection": ["ns.a"], "runKey": "r" * 300, "partitionKey": "p" * 1025},
            "runKey exceeds max length (256)",
        ),
        # Limits before reserved labels.
        (
            {"selection": ["ns.a"], "labels": {"arco.rerun.kind": "x"}, "partitionKey": "p" * 1025},
            "partitionKey exceeds max length (1024)",
        ),
    ],
)
def test_validation_order(body: dict[str, Any], message: str) -> None:
    assert error_of(body).message == message


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ({"arco.parent_run_id": "r1"}, "labels cannot include reserved keys: arco.parent_run_id"),
        ({"arco.rerun.kind": "SUBSET"}, "labels cannot include reserved keys: arco.rerun.kind"),
        (
            {"arco.rerun.kind": "SUBSET", "team": "x", "arco.parent_run_id": "r1"},
            "labels cannot include reserved keys: arco.parent_run_id, arco.rerun.kind",
        ),
    ],
)
def test_reserved_labels_are_rejected(labels: dict[str, str], message: str) -> None:
    # §8 item 73 (reserved lineage labels -> 400).
    error = error_of({"selection": ["ns.a"], "labels": labels})
    assert (error.status_code, error.message) == (400, message)


def test_other_arco_labels_are_allowed() -> None:
    assert trigger(selection=["ns.a"], labels={"arco.team": "x"}).labels == {"arco.team": "x"}


# --- Selection canonicalisation and unknown keys (§2.1 item 5, §8 item 73) ---------------------


def test_canonical_selection_sorts_and_deduplicates() -> None:
    assert canonical_selection(["ns/b", "ns.a", "ns.b", "ns/a"]) == ("ns.a", "ns.b")


@pytest.mark.parametrize(
    ("selection", "message"),
    [
        (["ns.a", "NS.b"], "invalid asset key 'NS.b': invalid namespace 'NS'"),
        (["ns.a", " ns.b"], "asset key cannot have leading/trailing whitespace"),
        (["nsb"], "invalid asset key 'nsb': expected 'namespace.name' or 'namespace/name'"),
        (["ns.zz", "ns.yy", "ns/zz", "ns.a"], "unknown asset keys: ns.yy, ns.zz"),
        # An invalid key anywhere wins over unknown keys before it.
        (["ns.zz", "ns.Bad"], "invalid asset key 'ns.Bad': invalid name 'Bad'"),
    ],
)
def test_invalid_and_unknown_selection(selection: list[str], message: str) -> None:
    error = plan_error(GRAPH, selection=selection)
    assert (error.status_code, error.message) == (400, message)


def test_selection_spellings_plan_the_same() -> None:
    slash = plan_trigger(GRAPH, trigger(selection=["ns/b", "ns.b"]))
    dot = plan_trigger(GRAPH, trigger(selection=["ns.b"]))
    assert slash.tasks == dot.tasks
    assert slash.root_assets == ("ns.b",)
    assert slash.request_fingerprint == dot.request_fingerprint


def test_no_manifest_message() -> None:
    assert NO_MANIFEST_MESSAGE == (
        "no manifest deployed for workspace; deploy a manifest before triggering a run"
    )


# --- Planning (§2.2, §8 item 70) ----------------------------------------------------------------


def test_plans_exactly_the_selection_without_autofill() -> None:
    tasks = plan_run(GRAPH, trigger(selection=["ns.c", "ns.b"]))
    assert planned(tasks) == [("ns.b", ()), ("ns.c", ("ns.b",))]
    assert planned(plan_run(GRAPH, trigger(selection=["ns.b"]))) == [("ns.b", ())]


def test_include_downstream_expands_over_the_manifest_graph() -> None:
    tasks = plan_run(GRAPH, trigger(selection=["ns.a"], includeDownstream=True))
    assert planned(tasks) == [
        ("ns.a", ()),
        ("ns.b", ("ns.a",)),
        ("ns.c", ("ns.b",)),
        ("ns.x", ("ns.a",)),
    ]


def test_include_upstream_expands_over_the_manifest_graph() -> None:
    tasks = plan_run(GRAPH, trigger(selection=["ns.c"], includeUpstream=True))
    assert planned(tasks) == [("ns.a", ()), ("ns.b", ("ns.a",)), ("ns.c", ("ns.b",))]


def test_expansions_start_from_the_roots_separately() -> None:
    # ns.x is downstream of ns.a (an upstream of the root), so it is not planned.
    tasks = plan_run(
        GRAPH, trigger(selection=["ns.b"], includeUpstream=True, includeDownstream=True)
    )
    assert [task.key for task in tasks] == ["ns.a", "ns.b", "ns.c"]


def test_task_defaults() -> None:
    (task,) = plan_run(GRAPH, trigger(selection=["ns.d"]))
    assert task == PlannedTask(key="ns.d", asset_key="ns.d")
    assert task.to_dict() == {
        "key": "ns.d",
        "depends_on": [],
        "asset_key": "ns.d",
        "partition_key": None,
        "max_attempts": 3,
        "heartbeat_timeout_sec": 300,
        "requires_visible_output": True,
    }


def test_execution_settings_of_the_manifest_are_ignored() -> None:
    entry = asset("ns.a")
    entry["execution"] = {"maxRetries": 9, "timeoutSeconds": 5}
    (task,) = plan_run(manifest(entry), trigger(selection=["ns.a"]))
    assert (task.max_attempts, task.heartbeat_timeout_sec) == (3, 300)


def test_depends_on_is_sorted_and_deduplicated() -> None:
    target = manifest(asset("ns.m", "ns.z", "ns.b", "ns.z"), asset("ns.z"), asset("ns.b"))
    tasks = plan_run(target, trigger(selection=["ns.m"], includeUpstream=True))
    assert planned(tasks) == [("ns.b", ()), ("ns.m", ("ns.b", "ns.z")), ("ns.z", ())]


def test_self_dependency_lists_itself() -> None:
    target = manifest(asset("ns.a", "ns.a"))
    assert planned(plan_run(target, trigger(selection=["ns.a"]))) == [("ns.a", ("ns.a",))]


def test_example_include_upstream_plans_two_tasks() -> None:
    # §3 end-to-end item 6.
    tasks = plan_run(
        example_manifest(), trigger(selection=["analytics.daily_sales"], includeUpstream=True)
    )
    assert planned(tasks) == [
        ("analytics.daily_sales", ("analytics.raw_orders",)),
        ("analytics.raw_orders", ()),
    ]
    assert all(task.partition_key is None for task in tasks)


# --- Partition resolution (§2.1 item 6, manifest §2.10) -------------------------------------


def test_example_sdk_partition_is_normalized_to_a_date() -> None:
    # §3 end-to-end item 4.
    plan = plan_trigger(
        example_manifest(),
        trigger(selection=["analytics.daily_sales"], partitionKey="date=s:MjAyNC0wMS0xNQ"),
    )
    assert plan.partition_key == "date=d:2024-01-15"
    assert planned(list(plan.tasks)) == [("analytics.daily_sales", ())]
    assert plan.tasks[0].partition_key == "date=d:2024-01-15"


def test_example_partition_on_unpartitioned_root_is_rejected() -> None:
    # §3 end-to-end item 5.
    error = plan_error(
        example_manifest(), selection=["analytics.raw_orders"], partitionKey="date=s:MjAyNC0wMS0xNQ"
    )
    assert (error.status_code, error.message) == (
        400,
        "partition key provided for unpartitioned asset: analytics.raw_orders",
    )


def test_partition_key_goes_to_every_task_including_unpartitioned_upstreams() -> None:
    plan = plan_trigger(
        example_manifest(),
        trigger(
            selection=["analytics.daily_sales"],
            includeUpstream=True,
            partitionKey="date=d:2024-01-15",
        ),
    )
    assert [task.partition_key for task in plan.tasks] == ["date=d:2024-01-15"] * 2


def test_without_a_partition_partitioning_is_not_consulted() -> None:
    target = manifest(
        asset("ns.a", partitioning=DAY),
        asset("ns.b", partitioning={"dimensions": "garbage", "is_partitioned": 7}),
        asset("ns.c", partitioning={"dimensions": [{"name": "r", "kind": "weird"}]}),
    )
    tasks = plan_run(target, trigger(selection=["ns.a", "ns.b", "ns.c"]))
    assert [task.partition_key for task in tasks] == [None, None, None]


def test_legacy_partitions_list_resolves_the_same() -> None:
    plan = plan_trigger(
        example_manifest(),
        trigger(
            selection=["analytics.daily_sales"],
            partitions=[{"key": " date ", "value": "2024-01-15"}],
        ),
    )
    assert plan.partition_key == "date=d:2024-01-15"


def test_already_tagged_partition_key_is_kept() -> None:
    plan = plan_trigger(
        example_manifest(),
        trigger(selection=["analytics.daily_sales"], partitionKey="date=d:2024-01-15"),
    )
    assert plan.partition_key == "date=d:2024-01-15"


HOUR = {"dimensions": [{"granularity": "hour", "kind": "time", "name": "ts"}]}
MONTH = {"dimensions": [{"granularity": "month", "kind": "time", "name": "m"}]}
NO_GRANULARITY = {"dimensions": [{"kind": "time", "name": "at"}]}
REGION = {
    "dimensions": [
        {"kind": "static", "name": "region", "values": ["eu", "us", 3]},
        {"granularity": "day", "kind": "time", "name": "date"},
    ]
}
TENANT = {"dimensions": [{"kind": "tenant", "name": "tenant"}]}
ODD = {"dimensions": [{"kind": "dynamic", "name": "d"}]}
PARTITIONED = manifest(
    asset("ns.day", partitioning=DAY),
    asset("ns.day2", partitioning={"is_partitioned": True, **DAY}),
    asset("ns.hour", partitioning=HOUR),
    asset("ns.month", partitioning=MONTH),
    asset("ns.free", partitioning=NO_GRANULARITY),
    asset("ns.region", partitioning=REGION),
    asset("ns.tenant", partitioning=TENANT),
    asset("ns.odd", partitioning=ODD),
    asset("ns.flat", partitioning={"dimensions": [], "isPartitioned": False}),
    asset("ns.nothing"),
)


def s(value: str) -> str:
    """A string scalar in ADR-011 form."""
    return PartitionScalar("s", value).canonical()


@pytest.mark.parametrize(
    ("selection", "partition_key", "expected"),
    [
        (["ns.day", "ns.day2"], "date=" + s("2024-1-5"), "date=d:2024-01-05"),
        (["ns.hour"], "ts=" + s("2024-01-15T10:00:00Z"), "ts=t:2024-01-15T10:00:00.000000Z"),
        (["ns.hour"], "ts=" + s("2024-01-15T12:00:00+02:00"), "ts=t:2024-01-15T10:00:00.000000Z"),
        (["ns.hour"], "ts=t:2024-01-15T10:00:00.000000Z", "ts=t:2024-01-15T10:00:00.000000Z"),
        (["ns.free"], "at=" + s("2024-01-15"), "at=d:2024-01-15"),
        (["ns.free"], "at=" + s("2024-01-15T10:30:00.5Z"), "at=t:2024-01-15T10:30:00.500000Z"),
        (["ns.free"], "at=d:2024-01-15", "at=d:2024-01-15"),
        (
            ["ns.region"],
            "date=" + s("2024-01-15") + ",region=" + s("eu"),
            "date=d:2024-01-15,region=" + s("eu"),
        ),
        (["ns.tenant"], "tenant=" + s("acme"), "tenant=" + s("acme")),
    ],
)
def test_partition_normalization(selection: list[str], partition_key: str, expected: str) -> None:
    plan = plan_trigger(PARTITIONED, trigger(selection=selection, partitionKey=partition_key))
    assert plan.partition_key == expected


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {"selection": ["ns.day", "ns.nothing"], "partitionKey": "date=d:2024-01-15"},
            "partition key provided for unpartitioned asset: ns.nothing",
        ),
        (
            {"selection": ["ns.flat"], "partitionKey": "date=d:2024-01-15"},
            "partition key provided for unpartitioned asset: ns.flat",
        ),
        (
            {"selection": ["ns.day", "ns.hour"], "partitionKey": "date=d:2024-01-15"},
            "partitioned root assets must share identical partitioning",
        ),
        (
            {
                "selection": ["ns.day"],
                "partitionKey": "",
                "partitions": [{"key": "a", "value": ""}],
            },
            "use either partitionKey or partitions, not both",
        ),
        ({"selection": ["ns.day"], "partitionKey": ""}, "partitionKey cannot be empty"),
        (
            {"selection": ["ns.day"], "partitionKey": "date=s:MjAyNC0wMS0xNQ=="},
            "invalid partitionKey: invalid base64 encoding: MjAyNC0wMS0xNQ==",
        ),
        (
            {"selection": ["ns.region"], "partitionKey": "region=s:ZXU,date=d:2024-01-15"},
            "partitionKey must be canonical: expected 'date=d:2024-01-15,region=s:ZXU'",
        ),
        (
            {"selection": ["ns.day"], "partitionKey": "day=d:2024-01-15"},
            "partitionKey dimensions must match manifest dimensions: expected [date], got [day]",
        ),
        (
            {"selection": ["ns.region"], "partitionKey": "date=d:2024-01-15"},
            "partitionKey dimensions must match manifest dimensions: "
            "expected [date, region], got [date]",
        ),
        (
            {"selection": ["ns.day"], "partitionKey": "date=" + s("2024-02-30")},
            "time dimension 'date' expects YYYY-MM-DD",
        ),
        (
            {"selection": ["ns.day"], "partitionKey": "date=" + s("1969-12-31")},
            "invalid partitionKey: invalid date value: 1969-12-31",
        ),
        (
            {"selection": ["ns.day"], "partitionKey": "date=t:2024-01-15T00:00:00.000000Z"},
            "time dimension 'date' expects hour granularity",
        ),
        (
            {"selection": ["ns.hour"], "partitionKey": "ts=d:2024-01-15"},
            "time dimension 'ts' expects day granularity",
        ),
        (
            {"selection": ["ns.hour"], "partitionKey": "ts=" + s("2024-01-15T10:30:00Z")},
            "time dimension 'ts' expects RFC3339 timestamp",
        ),
        (
            {"selection": ["ns.hour"], "partitionKey": "ts=t:2024-01-15T10:00:01.000000Z"},
            "time dimension 'ts' must be aligned to the hour",
        ),
        (
            {"selection": ["ns.month"], "partitionKey": "m=" + s("2024-01")},
            "unsupported time granularity 'month' for 'm'",
        ),
        (
            {"selection": ["ns.free"], "partitionKey": "at=" + s("yesterday")},
            "time dimension 'at' expects YYYY-MM-DD or RFC3339 timestamp",
        ),
        (
            {"selection": ["ns.day"], "partitionKey": "date=i:20240115"},
            "time dimension 'date' must use d:/t: or s: value",
        ),
        (
            {"selection": ["ns.region"], "partitionKey": "date=d:2024-01-15,region=" + s("ap")},
            "dimension 'region' value 'ap' is not allowed",
        ),
        (
            {"selection": ["ns.tenant"], "partitionKey": "tenant=i:7"},
            "dimension 'tenant' must use string values",
        ),
        (
            {"selection": ["ns.odd"], "partitionKey": "d=" + s("x")},
            "unsupported partition dimension kind 'dynamic' for 'd'",
        ),
        (
            {"selection": ["ns.day"], "partitions": [{"key": " ", "value": "x"}]},
            "partition key cannot be empty",
        ),
        (
            {"selection": ["ns.day"], "partitions": [{"key": "Date", "value": "x"}]},
            "invalid partition key: Date",
        ),
        (
            {
                "selection": ["ns.day"],
                "partitions": [{"key": "date", "value": "x"}, {"key": "date ", "value": "y"}],
            },
            "duplicate partition key: date",
        ),
    ],
)
def test_partition_errors(body: dict[str, Any], message: str) -> None:
    error = plan_error(PARTITIONED, **body)
    assert (error.status_code, error.message) == (400, message)


def test_unknown_keys_are_checked_before_partitions() -> None:
    error = plan_error(
        PARTITIONED, selection=["ns.zzz"], partitionKey="", partitions=[{"key": "a", "value": ""}]
    )
    assert error.message == "unknown asset keys: ns.zzz"


def test_time_strings_can_be_rejected_after_the_cutoff() -> None:
    request = trigger(selection=["ns.day"], partitionKey="date=" + s("2024-01-15"))
    with pytest.raises(PlanningError) as caught:
        plan_trigger(PARTITIONED, request, reject_time_strings=True)
    assert caught.value.message == "time partition values must use d:/t: tags for 'date'"
    tagged = trigger(selection=["ns.day"], partitionKey="date=d:2024-01-15")
    assert plan_trigger(PARTITIONED, tagged, reject_time_strings=True).partition_key


def test_static_values_order_does_not_matter_for_identical_partitioning() -> None:
    first = {"dimensions": [{"kind": "static", "name": "r", "values": ["a", "b"]}]}
    second = {"dimensions": [{"kind": "static", "name": "r", "values": ["b", "a", "a"]}]}
    target = manifest(asset("ns.a", partitioning=first), asset("ns.b", partitioning=second))
    plan = plan_trigger(target, trigger(selection=["ns.a", "ns.b"], partitionKey="r=" + s("a")))
    assert plan.partition_key == "r=" + s("a")


@pytest.mark.parametrize(
    ("raw", "is_partitioned", "names"),
    [
        (None, False, []),
        ("not an object", False, []),
        ({"dimensions": [], "isPartitioned": True}, True, []),
        ({"dimensions": [{"name": "d", "kind": "time"}], "isPartitioned": False}, True, ["d"]),
        ({"is_partitioned": True, "isPartitioned": False}, True, []),
        ({"is_partitioned": "yes", "isPartitioned": True}, False, []),
        (
            {"dimensions": [{"name": "d"}, {"kind": "time"}, 5, {"name": "e", "kind": "k"}]},
            True,
            ["e"],
        ),
    ],
)
def test_partitioning_is_read_leniently(raw: Any, is_partitioned: bool, names: list[str]) -> None:
    spec = parse_partitioning(raw)
    assert spec.is_partitioned is is_partitioned
    assert [dimension.name for dimension in spec.dimensions] == names


def test_dimension_values_drop_non_strings() -> None:
    spec = parse_partitioning(REGION)
    assert spec.dimensions[0].values == ("eu", "us")
    assert spec.dimensions[1].values is None


# --- ADR-011 partition keys -------------------------------------------------------------------


def test_partition_key_round_trip() -> None:
    text = "a=b:true,b=i:-5,c=n:null,d=d:2024-02-29,e=t:2024-01-15T10:00:00.000000Z,f=s:dXMtZWFzdA"
    parsed = parse_partition_key(text)
    assert parsed["f"] == PartitionScalar("s", "us-east")
    assert render_partition_key(parsed) == text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("date", "missing '=' in partition segment: date"),
        ("Date=d:2024-01-15", "invalid partition key: Date"),
        ("date=2024-01-15", "missing type prefix in value: 2024-01-15"),
        ("date=x:1", "unknown type prefix: x"),
        ("a=b:yes", "invalid boolean value: yes"),
        ("a=i:1.5", "invalid integer value: 1.5"),
        ("a=i:9223372036854775808", "invalid integer value: 9223372036854775808"),
        ("a=s:a+b", "invalid base64 encoding: a+b"),
        ("a=s:YR", "invalid base64 encoding: YR"),
        ("a=s:_w", "invalid UTF-8 in decoded string: _w"),
        ("a=d:2024-13-01", "invalid date value: 2024-13-01"),
        ("a=d:2024-04-31", "invalid date value: 2024-04-31"),
        ("a=t:2024-01-15T10:00:00Z", "invalid timestamp value: 2024-01-15T10:00:00Z"),
        ("a=n:nil", "invalid null value: nil"),
        ("a=n:null,a=n:null", "duplicate key in partition key: a"),
    ],
)
def test_partition_key_errors(text: str, message: str) -> None:
    with pytest.raises(PartitionKeyError) as caught:
        parse_partition_key(text)
    assert str(caught.value) == message


def test_non_canonical_integers_are_detected() -> None:
    parsed = parse_partition_key("a=i:+007")
    assert render_partition_key(parsed) == "a=i:7"


# --- Run-key fingerprint (§2.1, §8 item 72) -----------------------------------------------------


def test_fingerprint_is_sha256_of_the_documented_payload() -> None:
    request = trigger(selection=["analytics.daily_sales"], labels={"b": "2", "a": "1"})
    expected = hashlib.sha256(
        b'{"selection":["analytics.daily_sales"],"include_upstream":false,'
        b'"include_downstream":false,"partition_key":"date=d:2024-01-15",'
        b'"labels":{"a":"1","b":"2"}}'
    ).hexdigest()
    assert run_request_fingerprint(request, "date=d:2024-01-15") == expected


def test_fingerprint_omits_an_absent_partition_key() -> None:
    request = trigger(selection=["ns.b", "ns/a"], includeUpstream=True)
    expected = hashlib.sha256(
        b'{"selection":["ns.a","ns.b"],"include_upstream":true,'
        b'"include_downstream":false,"labels":{}}'
    ).hexdigest()
    assert run_request_fingerprint(request, None) == expected


def test_fingerprint_ignores_selection_order_spelling_and_duplicates() -> None:
    first = trigger(selection=["ns.b", "ns.a"], labels={"x": "1", "y": "2"})
    second = trigger(selection=["ns/a", "ns.b", "ns.a"], labels={"y": "2", "x": "1"})
    assert run_request_fingerprint(first, None) == run_request_fingerprint(second, None)
    assert (
        plan_trigger(GRAPH, first).request_fingerprint
        == plan_trigger(GRAPH, second).request_fingerprint
        == run_request_fingerprint(second, None)
    )


def test_sdk_and_tagged_partition_spellings_share_a_fingerprint() -> None:
    target = example_manifest()
    sdk = trigger(selection=["analytics.daily_sales"], partitionKey="date=s:MjAyNC0wMS0xNQ")
    tagged = trigger(selection=["analytics.daily_sales"], partitionKey="date=d:2024-01-15")
    assert (
        plan_trigger(target, sdk).request_fingerprint
        == plan_trigger(target, tagged).request_fingerprint
    )


@pytest.mark.parametrize(
    "changed",
    [
        {"selection": ["ns.a", "ns.c"]},
        {"selection": ["ns.a", "ns.b"], "includeUpstream": True},
        {"selection": ["ns.a", "ns.b"], "includeDownstream": True},
        {"selection": ["ns.a", "ns.b"], "labels": {"x": "2"}},
        {"selection": ["ns.a", "ns.b"], "labels": {}},
    ],
)
def test_fingerprint_detects_payload_mismatch(changed: dict[str, Any]) -> None:
    base = run_request_fingerprint(trigger(selection=["ns.a", "ns.b"], labels={"x": "1"}), None)
    assert run_request_fingerprint(trigger(**changed), None) != base


def test_fingerprint_depends_on_the_partition_key() -> None:
    request = trigger(selection=["ns.a"])
    assert run_request_fingerprint(request, None) != run_request_fingerprint(
        request, "d=d:2024-01-15"
    )


def test_fingerprint_rejects_invalid_keys() -> None:
    with pytest.raises(PlanningError, match="invalid namespace"):
        run_request_fingerprint(trigger(selection=["Ns.a"]), None)


# --- Reruns (§2.5, §8 item 74) ------------------------------------------------------------------

# a -> b -> c, a -> x, d: b failed, so c was skipped; x was cancelled.
PARENT = [
    ParentTask("ns.a", "SUCCEEDED", asset_key="ns.a", partition_key="date=d:2024-01-15"),
    ParentTask(
        "ns.b", "FAILED", asset_key="ns.b", partition_key="date=d:2024-01-15", max_attempts=5
    ),
    ParentTask("ns.c", "SKIPPED", asset_key="ns.c", partition_key="date=d:2024-01-15"),
    ParentTask("ns.x", "CANCELLED", asset_key="ns.x", partition_key="date=d:2024-01-16"),
    ParentTask("ns.d", "SUCCEEDED", asset_key="ns.d"),
]
EDGES = [("ns.b", "ns.c"), ("ns.a", "ns.b"), ("ns.a", "ns.x"), ("ns.a", "ns.b"), ("ns.q", "ns.a")]


def test_from_failure_plans_only_unsucceeded_tasks() -> None:
    tasks = plan_rerun_from_failure(PARENT, EDGES)
    assert planned(tasks) == [("ns.b", ()), ("ns.c", ("ns.b",)), ("ns.x", ())]
    assert tasks[0].max_attempts == 5  # parent row settings are kept
    assert tasks[0].partition_key == "date=d:2024-01-15"
    assert tasks[0].asset_key == "ns.b"


def test_from_failure_ignores_expansion_flags_and_edge_order() -> None:
    plan = plan_rerun(
        "FROM_FAILURE",
        PARENT,
        list(reversed(EDGES)),
        include_upstream=True,
        include_downstream=True,
    )
    assert plan.roots == ("ns.b", "ns.c", "ns.x")
    assert (plan.include_upstream, plan.include_downstream) == (False, False)
    assert plan.tasks == tuple(plan_rerun_from_failure(PARENT, EDGES))
    assert plan.partition_keys == ("date=d:2024-01-15", "date=d:2024-01-16")
    assert plan.reason == "from_failure_unsucceeded_tasks"


def test_from_failure_needs_a_failed_parent() -> None:
    check_rerun_parent("FROM_FAILURE", "FAILED")
    check_rerun_parent("SUBSET", "SUCCEEDED")
    with pytest.raises(PlanningError) as caught:
        check_rerun_parent("FROM_FAILURE", "SUCCEEDED")
    assert (caught.value.status_code, caught.value.message) == (
        409,
        "rerun-from-failure requires a FAILED parent run",
    )


def test_from_failure_with_nothing_to_rerun() -> None:
    with pytest.raises(PlanningError) as caught:
        plan_rerun_from_failure([ParentTask("ns.a", "SUCCEEDED")], [])
    assert (caught.value.status_code, caught.value.message) == (400, "rerun selection is empty")


def test_parent_without_plan_is_a_conflict() -> None:
    with pytest.raises(PlanningError) as caught:
        plan_rerun_from_failure([], [])
    assert (caught.value.status_code, caught.value.message) == (
        409,
        "parent run has no plan; cannot rerun",
    )


def test_subset_respects_include_downstream() -> None:
    assert planned(plan_rerun_subset(PARENT, EDGES, ["ns.a"])) == [("ns.a", ())]
    tasks = plan_rerun_subset(PARENT, EDGES, ["ns/a"], include_downstream=True)
    assert planned(tasks) == [
        ("ns.a", ()),
        ("ns.b", ("ns.a",)),
        ("ns.c", ("ns.b",)),
        ("ns.x", ("ns.a",)),
    ]


def test_subset_include_upstream() -> None:
    tasks = plan_rerun_subset(PARENT, EDGES, ["ns.c"], include_upstream=True)
    assert planned(tasks) == [("ns.a", ()), ("ns.b", ("ns.a",)), ("ns.c", ("ns.b",))]
    plan = plan_rerun("SUBSET", PARENT, EDGES, selection=["ns.c"], include_upstream=True)
    assert plan.roots == ("ns.c",)
    assert plan.reason == "subset_selection"


@pytest.mark.parametrize(
    ("selection", "message"),
    [
        ([], "selection cannot be empty"),
        (["ns.q", "ns.zz", "ns.a"], "unknown task keys: ns.q, ns.zz"),
        (["ns.a", "bad"], "invalid asset key 'bad': expected 'namespace.name' or 'namespace/name'"),
    ],
)
def test_subset_selection_errors(selection: list[str], message: str) -> None:
    with pytest.raises(PlanningError) as caught:
        plan_rerun_subset(PARENT, EDGES, selection)
    assert (caught.value.status_code, caught.value.message) == (400, message)


def test_deterministic_rerun_run_key() -> None:
    digest = hashlib.sha256(
        b'{"parent_run_id":"01PARENT","rerun_kind":"FROM_FAILURE",'
        b'"selected_tasks":["ns.b","ns.c"],"partition_keys":["date=d:2024-01-15"]}'
    ).hexdigest()
    key = deterministic_rerun_run_key(
        "01PARENT", "FROM_FAILURE", ["ns.c", "ns.b"], ["date=d:2024-01-15", "date=d:2024-01-15"]
    )
    assert key == f"rerun:01PARENT:from_failure:{digest[:16]}"
    subset = deterministic_rerun_run_key(
        "01PARENT", "SUBSET", ["ns.b", "ns.c"], ["date=d:2024-01-15"]
    )
    assert subset.startswith("rerun:01PARENT:subset:")
    assert subset.rsplit(":", 1)[1] != key.rsplit(":", 1)[1]
    other = deterministic_rerun_run_key("01PARENT", "FROM_FAILURE", ["ns.b"], ["date=d:2024-01-15"])
    assert other != key


def test_rerun_labels_and_fingerprint() -> None:
    labels = rerun_labels({"team": "x"}, "01PARENT", "SUBSET")
    assert labels == {"team": "x", "arco.parent_run_id": "01PARENT", "arco.rerun.kind": "SUBSET"}
    plan = plan_rerun("SUBSET", PARENT, EDGES, selection=["ns.b"], include_downstream=True)
    reordered = dict(reversed(list(labels.items())))
    fingerprint = rerun_request_fingerprint("01PARENT", plan, labels)
    assert fingerprint == rerun_request_fingerprint("01PARENT", plan, reordered)
    expected = hashlib.sha256(
        b'{"parent_run_id":"01PARENT","rerun_kind":"SUBSET","roots":["ns.b"],'
        b'"include_upstream":false,"include_downstream":true,"selected_tasks":["ns.b","ns.c"],'
        b'"partition_keys":["date=d:2024-01-15"],"labels":{"arco.parent_run_id":"01PARENT",'
        b'"arco.rerun.kind":"SUBSET","team":"x"}}'
    ).hexdigest()
    assert fingerprint == expected


def test_parse_rerun_request() -> None:
    request = parse_rerun_request(
        {"mode": "subset", "selection": ["ns.a"], "includeDownstream": True, "other": 1}
    )
    assert (request.kind, request.selection, request.include_downstream) == (
        "SUBSET",
        ("ns.a",),
        True,
    )
    assert parse_rerun_request({"mode": "fromFailure"}).kind == "FROM_FAILURE"


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({}, 422, PREFIX + "missing field `mode`"),
        (
            {"mode": "all"},
            422,
            PREFIX + "mode: unknown variant `all`, expected `fromFailure` or `subset`",
        ),
        (
            {"mode": "subset", "labels": {"arco.parent_run_id": "x"}},
            400,
            "labels cannot include reserved keys: arco.parent_run_id",
        ),
        (
            {"mode": "subset", "labels": _many(129), "runKey": "r" * 300},
            400,
            "labels exceed max properties (128)",
        ),
        (
            {"mode": "subset", "selection": ["ns.a"] * 10_001, "runKey": "r" * 300},
            400,
            "selection exceeds max items (10000)",
        ),
        ({"mode": "subset", "runKey": "r" * 257}, 400, "runKey exceeds max length (256)"),
    ],
)
def test_rerun_request_errors(body: dict[str, Any], status: int, message: str) -> None:
    with pytest.raises(PlanningError) as caught:
        parse_rerun_request(body)
    assert (caught.value.status_code, caught.value.message) == (status, message)
