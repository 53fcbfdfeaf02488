"""Tests of the manifest deploy contract (arco-manifest.md §1-§4), pure level."""

from __future__ import annotations

import copy
import hashlib
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import select

from arco_envelope.timestamps import format_timestamp
from arco_orchestration.db import Database
from arco_orchestration.manifest import (
    IDEMPOTENCY_CONFLICT_MESSAGE,
    AssetKeyError,
    DeployedManifest,
    ManifestError,
    ManifestRecord,
    canonical_asset_key,
    cron_is_valid,
    deploy_response,
    idempotency_outcome,
    manifest_document,
    manifest_fingerprint,
    manifest_fingerprint_preimage,
    manifest_list,
    manifest_list_item,
    manifest_not_found_message,
    parse_manifest_body,
    resolve_deployed_by,
    timezone_is_valid,
    usable_idempotency_key,
)
from arco_orchestration.models import Manifest
from arco_orchestration.usecases import manifests
from arco_testkit.values import SCOPE

# The worked example (arco-manifest-example.json) byte for byte. Its code.filePath was
# anonymised to /home/dev/probe after the spec's hashes were taken on the captured body, whose
# path was /tmp/manifest-probe (that body is 2,107 bytes with sha256 173af7be...).
EXAMPLE_BODY = (
    '{"assets":[{"checks":[{"checkType":"row_count","maxRows":null,"minRows":1,"name":"row_co'
    'unt","phase":"post","severity":"error"},{"checkType":"not_null","columns":["order_id"],"'
    'name":"not_null_order_id","phase":"post","severity":"error"}],"code":{"filePath":"/home/'
    'dev/probe/assets/analytics.py","function":"daily_sales","lineNumber":11,"module":"assets'
    '.analytics"},"dependencies":[{"mapping":"identity","parameterName":"raw_orders","upstrea'
    'mKey":{"name":"raw_orders","namespace":"analytics"}}],"description":"Daily sales totals '
    'per day partition.","execution":{"maxRetries":2,"retryDelaySeconds":60,"timeoutSeconds":'
    '900},"id":"01a21cea-a443-7125-9e70-10560e75b5d8","io":{"compression":"snappy","format":"'
    'delta","partitionBy":[]},"key":{"name":"daily_sales","namespace":"analytics"},"owners":['
    '"data@example.com"],"partitioning":{"dimensions":[{"granularity":"day","kind":"time","na'
    'me":"date"}],"isPartitioned":true},"resources":{"cpuMillicores":1000,"memoryMib":2048},"'
    'tags":{"data_tier":"gold","team":"finance"},"transformFingerprint":"58c6127257890635"},{'
    '"checks":[],"code":{"filePath":"/home/dev/probe/assets/analytics.py","function":"raw_ord'
    'ers","lineNumber":6,"module":"assets.analytics"},"dependencies":[],"description":"Raw or'
    'ders landed from the shop database.","execution":{"maxRetries":3,"retryDelaySeconds":60,'
    '"timeoutSeconds":3600},"id":"01a21cea-a444-7dc5-91c5-9ccf99ee287e","io":{"compression":"'
    'snappy","format":"delta","partitionBy":[]},"key":{"name":"raw_orders","namespace":"analy'
    'tics"},"owners":[],"partitioning":{"dimensions":[],"isPartitioned":false},"resources":{"'
    'cpuMillicores":1000,"memoryMib":1024},"tags":{},"transformFingerprint":"5c98422325e3f497'
    '"}],"codeVersionId":"01M8EENQ2YH5T6GYKK1GHWHZYZ","deployedAt":"2026-11-27T12:11:23.61468'
    '2+00:00","deployedBy":"probe","git":{"author":"probe@example.com","branch":"main","commi'
    'tMessage":"probe: two assets","commitSha":"f18cc1d079e51345e71ac5cd2582a966701b61e6","di'
    'rty":false,"repository":"https://example.com/acme/manifest-probe.git"},"manifestVersion"'
    ':"1.0","metadata":{},"schedules":[],"tenantId":"acme","workspaceId":"prod"}'
)
# A string inside the JSON body, not a file this test uses.
CAPTURED_BODY = EXAMPLE_BODY.replace("/home/dev/probe", "/tmp/manifest-probe")  # noqa: S108
CAPTURED_SHA256 = "173af7be431d2e8c6aa2be5abbade571f001c331df374a14200fa2429ef03942"
EXAMPLE_FINGERPRINT = "c470ee49602d91e381c4fd0192973375fff605e7689238cc22590b713b8a5fe9"
# Not a spec vector: this implementation's value for the anonymised file, kept as a regression.
ANONYMISED_FINGERPRINT = "f17f65071532bfb1a06c2c6bed5a0c3db3307463d402e76de360a272f5a49e26"

VECTOR_1_BODY = (
    '{"manifestVersion":"1.0","codeVersionId":"cv1","assets":[{"key":{"namespace":"analytics",'
    '"name":"raw_orders"},"id":"a1"}]}'
)
VECTOR_1_PREIMAGE = (
    '{"manifestVersion":"1.0","codeVersionId":"cv1","git":{"repository":"","branch":"",'
    '"commitSha":"","commitMessage":"","author":"","dirty":false},"assets":[{"key":'
    '{"namespace":"analytics","name":"raw_orders"},"id":"a1","description":"","owners":[],'
    '"tags":null,"partitioning":null,"dependencies":[],"code":null,"checks":[],'
    '"execution":null,"resources":null,"io":null,"transformFingerprint":""}],"schedules":[],'
    '"metadata":null}'
)
VECTOR_1_FINGERPRINT = "2f040f3be13120c0598aac8b8a2a216dd905550f972439aa660b5771dd269272"


def example() -> dict[str, Any]:
    """A fresh parsed copy of the captured SDK body."""
    body: dict[str, Any] = json.loads(CAPTURED_BODY)
    return body


def minimal(*assets: dict[str, Any], **top: Any) -> dict[str, Any]:
    """A minimal valid body with the given assets (default: one asset)."""
    body: dict[str, Any] = {
        "manifestVersion": "1.0",
        "codeVersionId": "cv1",
        "assets": list(assets) or [asset("analytics", "a")],
    }
    body.update(top)
    return body


def asset(namespace: str, name: str, *upstream: tuple[str, str], **extra: Any) -> dict[str, Any]:
    """An asset entry with dependencies on ``(namespace, name)`` pairs."""
    entry: dict[str, Any] = {
        "key": {"namespace": namespace, "name": name},
        "id": f"id-{namespace}-{name}",
        "dependencies": [{"upstreamKey": {"namespace": ns, "name": nm}} for ns, nm in upstream],
    }
    entry.update(extra)
    return entry


def schedule(**fields: Any) -> dict[str, Any]:
    """A valid schedule on ``analytics.a``, with overrides."""
    entry: dict[str, Any] = {"id": "s1", "cron": "0 * * * *", "assets": ["analytics.a"]}
    entry.update(fields)
    return entry


def rejected(body: object) -> ManifestError:
    """The error raised for ``body``."""
    with pytest.raises(ManifestError) as caught:
        parse_manifest_body(body)
    return caught.value


def record(**fields: Any) -> ManifestRecord:
    """A ManifestRecord with defaults."""
    values: dict[str, Any] = {
        "manifest_id": "01MANIFEST",
        "tenant_id": "acme",
        "workspace_id": "prod",
        "fingerprint": EXAMPLE_FINGERPRINT,
        "deployed_at": datetime(2026, 11, 27, 12, 11, 23, 614682, tzinfo=UTC),
        "deployed_by": "probe",
    }
    values.update(fields)
    return ManifestRecord(**values)


# --- Fingerprint vectors (§2.5) --------------------------------------------------------------


def test_vector_1_preimage_and_fingerprint() -> None:
    manifest = parse_manifest_body(json.loads(VECTOR_1_BODY))
    assert manifest_fingerprint_preimage(manifest) == VECTOR_1_PREIMAGE.encode()
    assert manifest_fingerprint(manifest) == VECTOR_1_FINGERPRINT
    assert hashlib.sha256(VECTOR_1_PREIMAGE.encode()).hexdigest() == VECTOR_1_FINGERPRINT


def test_captured_body_is_the_sdk_idempotency_key() -> None:
    # The SDK's Idempotency-Key is sha256 of the body bytes (§1.1 step 6).
    assert len(CAPTURED_BODY.encode()) == 2107
    assert hashlib.sha256(CAPTURED_BODY.encode()).hexdigest() == CAPTURED_SHA256


def test_example_fingerprint_vector_2() -> None:
    assert parse_manifest_body(example()).fingerprint() == EXAMPLE_FINGERPRINT


def test_anonymised_example_file_fingerprint() -> None:
    assert len(EXAMPLE_BODY.encode()) == 2099
    manifest = parse_manifest_body(json.loads(EXAMPLE_BODY))
    assert manifest.fingerprint() == ANONYMISED_FINGERPRINT


def test_fingerprint_ignores_asset_order_and_excluded_fields() -> None:
    body = example()
    body["assets"].reverse()
    body["deployedBy"] = "someone-else"
    body["tenantId"] = "other"
    body["workspaceId"] = "other"
    body["deployedAt"] = "1999-01-01T00:00:00+00:00"
    body["assets"][0]["unknownField"] = {"x": 1}
    assert parse_manifest_body(body).fingerprint() == EXAMPLE_FINGERPRINT


def test_fingerprint_ignores_key_order_of_free_form_objects() -> None:
    body = example()
    sales = body["assets"][0]
    sales["tags"] = dict(reversed(list(sales["tags"].items())))
    sales["code"] = dict(reversed(list(sales["code"].items())))
    assert parse_manifest_body(body).fingerprint() == EXAMPLE_FINGERPRINT


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("codeVersionId",), "01M8EENQ2YH5T6GYKK1GHWHZYZX"),
        (("manifestVersion",), "1.1"),
        (("metadata",), {"k": "v"}),
        (("git", "dirty"), True),
        (("assets", 1, "description"), "changed"),
        (("assets", 0, "checks"), []),
    ],
)
def test_fingerprint_covers_content(path: tuple[str | int, ...], value: Any) -> None:
    body = example()
    target: Any = body
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    assert parse_manifest_body(body).fingerprint() != EXAMPLE_FINGERPRINT


def test_fingerprint_sorts_schedules_by_id_then_cron() -> None:
    first = schedule(id="b")
    second = schedule(id="a", timezone="Europe/Paris")
    forward = parse_manifest_body(minimal(schedules=[first, second]))
    backward = parse_manifest_body(minimal(schedules=[second, first]))
    assert forward.fingerprint() == backward.fingerprint()
    assert forward.schedules != backward.schedules  # request order is kept for storage


def test_fingerprint_keeps_non_ascii_unescaped() -> None:
    manifest = parse_manifest_body(minimal(metadata={"note": "café\n"}))
    assert b'"metadata":{"note":"caf\xc3\xa9\\n"}' in manifest_fingerprint_preimage(manifest)


# --- End-to-end check 1 at the pure level (§3) -----------------------------------------------


def test_example_deploys_with_expected_response_values() -> None:
    manifest = parse_manifest_body(example())
    response = deploy_response(manifest, record(fingerprint=manifest.fingerprint()))
    assert response == {
        "manifestId": "01MANIFEST",
        "workspaceId": "prod",
        "codeVersionId": "01M8EENQ2YH5T6GYKK1GHWHZYZ",
        "fingerprint": EXAMPLE_FINGERPRINT,
        "assetCount": 2,
        "deployedAt": "2026-11-27T12:11:23.614682Z",
    }


def test_example_parsed_fields() -> None:
    manifest = parse_manifest_body(example())
    assert manifest.asset_keys == ("analytics.daily_sales", "analytics.raw_orders")
    sales, orders = manifest.assets
    assert sales.upstream_keys == ("analytics.raw_orders",)
    assert orders.upstream_keys == ()
    assert sales.partitioning == {
        "dimensions": [{"granularity": "day", "kind": "time", "name": "date"}],
        "isPartitioned": True,
    }
    assert sales.tags == {"data_tier": "gold", "team": "finance"}  # keys verbatim
    assert sales.checks[0] == {
        "checkType": "row_count",
        "maxRows": None,
        "minRows": 1,
        "name": "row_count",
        "phase": "post",
        "severity": "error",
    }
    assert manifest.deployed_by == "probe"
    assert manifest.git.branch == "main"
    assert manifest.metadata == {}
    assert manifest.upstream_graph() == {
        "analytics.daily_sales": ("analytics.raw_orders",),
        "analytics.raw_orders": (),
    }


# --- Parsing: unknown fields, order, nulls (§2.2, §3 MUST 2) ---------------------------------


def test_unknown_fields_are_ignored_at_every_level() -> None:
    body = minimal(
        asset(
            "analytics",
            "b",
            ("analytics", "a"),
            extra={"x": 1},
        ),
        asset("analytics", "a"),
        schedules=[schedule(extra=True)],
        tenantId="acme",
        workspaceId="prod",
        deployedAt="2026-01-01T00:00:00+00:00",
        somethingNew=[1, 2],
        git={"branch": "main", "extra": "x"},
    )
    body["assets"][0]["key"]["extra"] = "x"
    body["assets"][0]["dependencies"][0]["extra"] = "x"
    body["assets"][0]["dependencies"][0]["upstreamKey"]["extra"] = "x"
    plain = minimal(
        asset("analytics", "b", ("analytics", "a")),
        asset("analytics", "a"),
        schedules=[schedule()],
        git={"branch": "main"},
    )
    assert parse_manifest_body(body) == parse_manifest_body(plain)


def test_assets_in_any_order() -> None:
    dependent_first = minimal(asset("analytics", "b", ("analytics", "a")), asset("analytics", "a"))
    manifest = parse_manifest_body(dependent_first)
    assert manifest.asset_keys == ("analytics.b", "analytics.a")
    assert manifest.upstream_graph()["analytics.b"] == ("analytics.a",)


def test_defaults_for_absent_optional_fields() -> None:
    manifest = parse_manifest_body(json.loads(VECTOR_1_BODY))
    (only,) = manifest.assets
    assert (only.description, only.owners, only.dependencies, only.checks) == ("", (), (), ())
    assert (only.tags, only.partitioning, only.code, only.io) == (None, None, None, None)
    assert only.transform_fingerprint == ""
    assert manifest.git.to_json()["dirty"] is False
    assert manifest.schedules == ()
    assert manifest.deployed_by is None
    assert manifest.metadata is None


def test_nulls_in_free_form_values_and_deployed_by_are_accepted() -> None:
    body = minimal(
        asset("analytics", "a", tags=None, code={"filePath": None, "lineNumber": None}),
        deployedBy=None,
        metadata=None,
    )
    manifest = parse_manifest_body(body)
    assert manifest.assets[0].code == {"filePath": None, "lineNumber": None}
    assert manifest.deployed_by is None


def test_schedule_timezone_defaults_to_utc() -> None:
    manifest = parse_manifest_body(minimal(schedules=[schedule()]))
    assert manifest.schedules[0].timezone == "UTC"
    assert manifest.schedules[0].asset_keys == ("analytics.a",)


# --- Body shape errors (422, §2.2) -----------------------------------------------------------

PREFIX = "Failed to deserialize the JSON body into the target type: "


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "invalid type: sequence, expected struct DeployManifestRequest"),
        ({"codeVersionId": "cv1", "assets": []}, "missing field `manifestVersion`"),
        (
            {"manifest_version": "1.0", "code_version_id": "cv1", "assets": []},
            "missing field `manifestVersion`",
        ),
        ({"manifestVersion": "1.0", "assets": []}, "missing field `codeVersionId`"),
        ({"manifestVersion": "1.0", "codeVersionId": "cv1"}, "missing field `assets`"),
        (minimal(assets=None), "assets: invalid type: null, expected a sequence"),
        (
            minimal(asset("analytics", "a", id=7)),
            "assets[0].id: invalid type: integer `7`, expected a string",
        ),
        (minimal({"key": {"namespace": "a", "name": "b"}}), "assets[0]: missing field `id`"),
        (minimal({"id": "x"}), "assets[0]: missing field `key`"),
        (
            minimal({"key": {"namespace": "a"}, "id": "x"}),
            "assets[0].key: missing field `name`",
        ),
        (
            minimal(asset("analytics", "a", description=None)),
            "assets[0].description: invalid type: null, expected a string",
        ),
        (
            minimal(asset("analytics", "a", owners=["x", 1])),
            "assets[0].owners[1]: invalid type: integer `1`, expected a string",
        ),
        (
            minimal(asset("analytics", "a", dependencies=[{"parameterName": "p"}])),
            "assets[0].dependencies[0]: missing field `upstreamKey`",
        ),
        (
            minimal(
                asset(
                    "analytics",
                    "a",
                    dependencies=[
                        {"upstreamKey": {"namespace": "a", "name": "b"}, "mapping": None}
                    ],
                )
            ),
            "assets[0].dependencies[0].mapping: invalid type: null, expected a string",
        ),
        (
            minimal(asset("analytics", "a", checks={"a": 1})),
            "assets[0].checks: invalid type: map, expected a sequence",
        ),
        (minimal(git=None), "git: invalid type: null, expected struct GitContext"),
        (
            minimal(git={"dirty": "yes"}),
            'git.dirty: invalid type: string "yes", expected a boolean',
        ),
        (minimal(schedules=None), "schedules: invalid type: null, expected a sequence"),
        (
            minimal(schedules=[{"id": "s", "cron": "* * * * *"}]),
            "schedules[0]: missing field `assets`",
        ),
        (minimal(deployedBy=True), "deployedBy: invalid type: boolean `true`, expected a string"),
    ],
)
def test_shape_errors_are_422_with_serde_messages(body: object, message: str) -> None:
    error = rejected(body)
    assert error.status_code == 422
    assert error.message == PREFIX + message


# --- Validation (§2.4), every rule and its message, all 400 ----------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (minimal(manifestVersion=" \t"), "manifestVersion is required"),
        (minimal(codeVersionId="  "), "codeVersionId is required"),
        (minimal(assets=[]), "manifest must contain at least one asset"),
        (minimal(asset(" ", "a")), "asset key must include namespace and name"),
        (minimal(asset("analytics", "")), "asset key must include namespace and name"),
        (minimal(asset("analytics", "a", id=" ")), "asset id is required"),
        (
            minimal(asset("analytics", "users..daily")),
            "invalid asset key 'analytics/users..daily': invalid name 'users..daily'",
        ),
        (
            minimal(asset("Analytics", "a")),
            "invalid asset key 'Analytics/a': invalid namespace 'Analytics'",
        ),
        (
            minimal(asset("ana.lytics", "a")),
            "invalid asset key 'ana.lytics/a': invalid namespace 'ana.lytics'",
        ),
        (minimal(asset("analytics", "a b")), "asset key cannot contain whitespace"),
        (
            minimal(asset("analytics", " a")),
            "asset key cannot contain whitespace",
        ),
        (
            minimal(asset("analytics", "a"), asset("analytics", "a")),
            "duplicate asset key in manifest",
        ),
        (
            minimal(asset("analytics", "a", ("analytics", "zzz"))),
            "asset 'analytics.a' depends on unknown asset 'analytics.zzz'",
        ),
        (
            minimal(asset("analytics", "a", ("analytics", "Bad"))),
            "invalid asset key 'analytics/Bad': invalid name 'Bad'",
        ),
        (
            minimal(asset("analytics", "a", ("", "b"))),
            "invalid asset key '/b': namespace and name must be non-empty",
        ),
        (minimal(schedules=[schedule(id=" ")]), "schedule id is required"),
        (minimal(schedules=[schedule(cron=" ")]), "schedule cron is required"),
        (
            minimal(schedules=[schedule(cron="* * * *")]),
            "schedule cron must have 5 fields (min..dow) or 6 fields (sec..dow)",
        ),
        (
            minimal(schedules=[schedule(cron="0 0 * * * * 2030")]),
            "schedule cron must have 5 fields (min..dow) or 6 fields (sec..dow)",
        ),
        (minimal(schedules=[schedule(cron="61 * * * *")]), "invalid schedule cron"),
        (minimal(schedules=[schedule(timezone="Mars/Olympus")]), "invalid schedule timezone"),
        (minimal(schedules=[schedule(assets=[])]), "schedule must include at least one asset"),
        (
            minimal(schedules=[schedule(assets=["analytics"])]),
            "invalid asset key 'analytics': expected 'namespace.name' or 'namespace/name'",
        ),
        (
            minimal(schedules=[schedule(assets=["analytics/nope"])]),
            "schedule 's1' references unknown asset 'analytics.nope'",
        ),
        (
            minimal(schedules=[schedule(), schedule(cron="5 * * * *")]),
            "duplicate schedule id in manifest",
        ),
    ],
)
def test_validation_rules_and_messages(body: dict[str, Any], message: str) -> None:
    error = rejected(body)
    assert error.status_code == 400
    assert error.message == message
    assert str(error) == message


@pytest.mark.parametrize(
    ("body", "message"),
    [
        # Rule 1 before rule 2 before rule 3.
        (minimal(manifestVersion="", codeVersionId="", assets=[]), "manifestVersion is required"),
        (minimal(codeVersionId="", assets=[]), "codeVersionId is required"),
        # Per asset, in asset order: the first asset's problem wins.
        (
            minimal(asset("analytics", "a", id=""), asset("", "b")),
            "asset id is required",
        ),
        # Within one asset: blank key, then id, then canonical form.
        (minimal(asset("", "B", id="")), "asset key must include namespace and name"),
        (minimal(asset("analytics", "B", id="")), "asset id is required"),
        # All keys (rule 4) before any dependency (rule 5).
        (
            minimal(
                asset("analytics", "a", ("analytics", "zzz")),
                asset("analytics", "b"),
                asset("analytics", "b"),
            ),
            "duplicate asset key in manifest",
        ),
        # Dependencies (rule 5) before schedules (rule 6).
        (
            minimal(
                asset("analytics", "a", ("analytics", "zzz")),
                schedules=[schedule(id="")],
            ),
            "asset 'analytics.a' depends on unknown asset 'analytics.zzz'",
        ),
        # Within a schedule: unknown assets before the duplicate id.
        (
            minimal(schedules=[schedule(), schedule(assets=["analytics.nope"])]),
            "schedule 's1' references unknown asset 'analytics.nope'",
        ),
        # Schedules in order.
        (
            minimal(schedules=[schedule(cron="bad * * * *"), schedule(id="")]),
            "invalid schedule cron",
        ),
        (
            minimal(schedules=[schedule(cron="0 * * * *", timezone="Nowhere", assets=[])]),
            "invalid schedule timezone",
        ),
    ],
)
def test_validation_order(body: dict[str, Any], message: str) -> None:
    assert rejected(body).message == message


def test_dependencies_need_no_cycle_check() -> None:
    body = minimal(
        asset("analytics", "a", ("analytics", "b"), ("analytics", "a")),
        asset("analytics", "b", ("analytics", "a")),
    )
    manifest = parse_manifest_body(body)
    assert manifest.upstream_graph()["analytics.a"] == ("analytics.b", "analytics.a")


def test_ids_are_not_format_checked() -> None:
    body = minimal(asset("analytics", "a", id="01HQXYZ123"), codeVersionId="not-a-ulid")
    assert parse_manifest_body(body).code_version_id == "not-a-ulid"


def test_dotted_names_are_accepted() -> None:
    manifest = parse_manifest_body(minimal(asset("ns", "a.b")))
    assert manifest.asset_keys == ("ns.a.b",)


def test_schedule_assets_accept_both_spellings() -> None:
    body = minimal(
        asset("analytics", "a"),
        asset("analytics", "b"),
        schedules=[schedule(assets=["analytics/b", "analytics.a"], timezone="Europe/Paris")],
    )
    manifest = parse_manifest_body(body)
    assert manifest.schedules[0].assets == ("analytics/b", "analytics.a")
    assert manifest.schedules[0].asset_keys == ("analytics.b", "analytics.a")


# --- Canonical asset keys (orchestration §2.1) -----------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("analytics.daily_sales", "analytics.daily_sales"),
        ("analytics/daily_sales", "analytics.daily_sales"),
        ("ns/a.b", "ns.a.b"),
        ("ns.a.b", "ns.a.b"),
        ("a1_.b2_c", "a1_.b2_c"),
    ],
)
def test_canonical_asset_key(text: str, expected: str) -> None:
    assert canonical_asset_key(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "asset key cannot be empty"),
        ("   ", "asset key cannot be empty"),
        (" ns.a", "asset key cannot have leading/trailing whitespace"),
        ("ns.a\n", "asset key cannot have leading/trailing whitespace"),
        ("ns.a b", "asset key cannot contain whitespace"),
        ("nsname", "invalid asset key 'nsname': expected 'namespace.name' or 'namespace/name'"),
        ("ns.", "invalid asset key 'ns.': namespace and name must be non-empty"),
        ("/a", "invalid asset key '/a': namespace and name must be non-empty"),
        ("Ns.a", "invalid asset key 'Ns.a': invalid namespace 'Ns'"),
        ("1ns.a", "invalid asset key '1ns.a': invalid namespace '1ns'"),
        ("ns.A", "invalid asset key 'ns.A': invalid name 'A'"),
        ("ns.a..b", "invalid asset key 'ns.a..b': invalid name 'a..b'"),
        ("ns/a/b", "invalid asset key 'ns/a/b': invalid name 'a/b'"),
        ("ns.a-b", "invalid asset key 'ns.a-b': invalid name 'a-b'"),
        ("ns.é", "invalid asset key 'ns.é': invalid name 'é'"),
    ],
)
def test_canonical_asset_key_errors(text: str, message: str) -> None:
    with pytest.raises(AssetKeyError) as caught:
        canonical_asset_key(text)
    assert str(caught.value) == message
    assert isinstance(caught.value, ValueError)


# --- Cron and timezone -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "expression",
    [
        "0 * * * *",
        "*/15 9-17 * * MON-FRI",
        "0 0 1 JAN,jul *",
        "0 0 ? * *",
        "0 0 12 ? * WED",
        "0,30 0-5,22 1-31/2 */3 1-7",
        "0 0 * * Mon-Thurs/2",
        "10-20/5 * * * * ?",
    ],
)
def test_valid_crons(expression: str) -> None:
    assert cron_is_valid(expression)


@pytest.mark.parametrize(
    "expression",
    [
        "0 24 * * *",
        "60 * * * *",
        "0 0 0 * *",
        "0 0 * 13 *",
        "0 0 * * 8",
        "? * * * *",
        "0 0 * ? ?/2",
        "*/0 * * * *",
        "5-1 * * * *",
        "0 0 * * MON-5",
        "MON * * * *",
        "0 0 * * Funday",
        "0 0 * * Wed/2",
        ",1 * * * *",
        "* * * *",
        "@daily",
    ],
)
def test_invalid_crons(expression: str) -> None:
    assert not cron_is_valid(expression)


def test_timezones_are_iana_names_case_sensitive() -> None:
    assert timezone_is_valid("UTC")
    assert timezone_is_valid("Europe/Paris")
    assert not timezone_is_valid("europe/paris")
    assert not timezone_is_valid("Mars/Olympus")


# --- Stored round trip and read shapes (§2.7, §2.8, §3 MUST 4) -------------------------------


def test_stored_round_trip_through_json() -> None:
    body = example()
    body["schedules"] = [
        {"id": "nightly", "cron": "0 2 * * *", "assets": ["analytics/daily_sales"]}
    ]
    manifest = parse_manifest_body(body)
    stored = json.loads(json.dumps(manifest.to_stored()))
    restored = DeployedManifest.from_stored(stored)
    assert restored == manifest
    assert restored.fingerprint() == manifest.fingerprint()
    assert restored.deployed_by == "probe"
    assert restored.assets[0].partitioning == manifest.assets[0].partitioning


def test_stored_round_trip_without_deployed_by() -> None:
    manifest = parse_manifest_body(json.loads(VECTOR_1_BODY))
    assert "deployedBy" not in manifest.to_stored()
    assert DeployedManifest.from_stored(manifest.to_stored()) == manifest


def test_from_stored_rejects_a_corrupt_document() -> None:
    with pytest.raises(ManifestError):
        DeployedManifest.from_stored({"assets": []})


def test_manifest_document_shape() -> None:
    body = example()
    body["assets"][1]["surprise"] = 1
    del body["assets"][1]["io"]
    manifest = parse_manifest_body(body)
    document = manifest_document(manifest, record())
    assert list(document) == [
        "manifestId",
        "tenantId",
        "workspaceId",
        "manifestVersion",
        "codeVersionId",
        "fingerprint",
        "git",
        "assets",
        "schedules",
        "deployedAt",
        "deployedBy",
        "metadata",
    ]
    assert list(document["git"]) == [  # type: ignore[arg-type]
        "repository",
        "branch",
        "commitSha",
        "commitMessage",
        "author",
        "dirty",
    ]
    assets: Any = document["assets"]
    assert [item["key"]["name"] for item in assets] == ["daily_sales", "raw_orders"]
    assert list(assets[0]) == [
        "key",
        "id",
        "description",
        "owners",
        "tags",
        "partitioning",
        "dependencies",
        "code",
        "checks",
        "execution",
        "resources",
        "io",
        "transformFingerprint",
    ]
    assert assets[1]["io"] is None
    assert "surprise" not in assets[1]
    assert list(assets[0]["dependencies"][0]) == ["upstreamKey", "parameterName", "mapping"]
    assert list(assets[0]["partitioning"]) == ["dimensions", "isPartitioned"]
    assert document["deployedAt"] == "2026-11-27T12:11:23.614682Z"
    assert document["deployedBy"] == "probe"


def test_manifest_document_schedules_include_timezone() -> None:
    manifest = parse_manifest_body(minimal(schedules=[schedule()]))
    document = manifest_document(manifest, record())
    assert document["schedules"] == [
        {"id": "s1", "cron": "0 * * * *", "assets": ["analytics.a"], "timezone": "UTC"}
    ]


def test_list_items_and_order() -> None:
    with_git = parse_manifest_body(example())
    without_git = parse_manifest_body(json.loads(VECTOR_1_BODY))
    old = record(manifest_id="old", deployed_at=datetime(2026, 1, 1, tzinfo=UTC))
    new = record(manifest_id="new", deployed_at=datetime(2026, 2, 1, tzinfo=UTC))
    listing: Any = manifest_list([(with_git, old), (without_git, new)])
    assert [item["manifestId"] for item in listing["manifests"]] == ["new", "old"]
    assert listing["manifests"][0]["gitBranch"] is None
    assert listing["manifests"][0]["gitCommit"] is None
    assert manifest_list_item(with_git, old) == {
        "manifestId": "old",
        "codeVersionId": "01M8EENQ2YH5T6GYKK1GHWHZYZ",
        "fingerprint": EXAMPLE_FINGERPRINT,
        "assetCount": 2,
        "gitBranch": "main",
        "gitCommit": "f18cc1d079e51345e71ac5cd2582a966701b61e6",
        "deployedAt": "2026-01-01T00:00:00Z",
        "deployedBy": "probe",
    }


@pytest.mark.parametrize(
    ("moment", "text"),
    [
        (datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), "2026-01-02T03:04:05Z"),
        (datetime(2026, 1, 2, 3, 4, 5, 120000, tzinfo=UTC), "2026-01-02T03:04:05.120Z"),
        (datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC), "2026-01-02T03:04:05.123456Z"),
        (
            datetime(2026, 1, 2, 5, 4, 5, tzinfo=timezone(timedelta(hours=2))),
            "2026-01-02T03:04:05Z",
        ),
    ],
)
def test_format_timestamp(moment: datetime, text: str) -> None:
    assert format_timestamp(moment) == text


def test_format_timestamp_needs_an_aware_datetime() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        format_timestamp(datetime(2026, 1, 1))


# --- Idempotency and deployedBy (§2.6, §2.7) -------------------------------------------------


def test_deployed_by_fallback() -> None:
    assert resolve_deployed_by("probe", "user-1") == "probe"
    assert resolve_deployed_by("", "user-1") == ""
    assert resolve_deployed_by(None, "user-1") == "user-1"
    assert resolve_deployed_by(None, None) == "api"


def test_idempotency_outcomes() -> None:
    assert idempotency_outcome(None, "f1") == "create"
    assert idempotency_outcome("f1", "f1") == "replay"
    assert idempotency_outcome("f1", "f2") == "conflict"
    assert IDEMPOTENCY_CONFLICT_MESSAGE == "idempotency key already used for a different manifest"


def test_replay_and_conflict_at_the_fingerprint_level() -> None:
    # §3 end-to-end items 2 and 3: same body -> same fingerprint; different body -> conflict.
    first = parse_manifest_body(example()).fingerprint()
    again = parse_manifest_body(example()).fingerprint()
    changed = example()
    changed["codeVersionId"] = "01M8EENQ2YH5T6GYKK1GHWHZZZ"
    assert idempotency_outcome(first, again) == "replay"
    assert idempotency_outcome(first, parse_manifest_body(changed).fingerprint()) == "conflict"


@pytest.mark.parametrize(
    ("header", "usable"),
    [
        (None, None),
        ("", ""),
        (CAPTURED_SHA256, CAPTURED_SHA256),
        (" spaced\tkey ", " spaced\tkey "),
        ("caf\u00e9", None),
        ("line\nbreak", None),
        ("del\x7f", None),
    ],
)
def test_usable_idempotency_key(header: str | None, usable: str | None) -> None:
    assert usable_idempotency_key(header) == usable


def test_not_found_message() -> None:
    assert manifest_not_found_message("latest") == "manifest not found: latest"


def test_parse_does_not_mutate_the_body() -> None:
    body = example()
    snapshot = copy.deepcopy(body)
    parse_manifest_body(body)
    assert body == snapshot


def test_a_deployed_manifest_is_cached_as_it_reads_back_from_its_row(database: Database) -> None:
    """The deploy caches the parsed manifest for the triggers that follow; what it caches is
    exactly what parsing the stored body again gives."""
    document = json.loads(EXAMPLE_BODY)
    document["assets"][0]["tags"] = {"z": 1, "a": [3, 1]}
    document["metadata"] = {"b": {"y": 1, "x": 2}, "a": None}
    parsed = parse_manifest_body(document)
    assert parsed.deployed_by is not None
    deployed = manifests.deploy_manifest(
        database, SCOPE, parsed, idempotency_key=None, user_id="u", now=datetime.now(UTC)
    )
    manifest_id = str(deployed.body["manifestId"])
    cached = manifests._cached_manifests[manifest_id]
    with database.transaction() as session:
        body = session.scalar(select(Manifest.body).where(Manifest.manifest_id == manifest_id))
    assert cached == DeployedManifest.from_stored(body)
    assert cached.fingerprint() == parsed.fingerprint()
    with database.transaction() as session:
        latest = manifests.latest_manifest(session, SCOPE.tenant_id, SCOPE.workspace_id)
    assert latest == (manifest_id, cached)
