"""Manifest deploy and reads over HTTP (arco-manifest section 3: MUST, SHOULD and the
end-to-end check with the example)."""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from services.api.tests.api_test_support import (
    DAILY,
    EXAMPLE_MANIFEST,
    MANIFESTS,
    RAW,
    RUNS,
    Api,
    Clock,
    manifest_of,
    user_headers,
)

from arco_envelope import format_timestamp

EXAMPLE_KEY = "173af7be431d2e8c6aa2be5abbade571f001c331df374a14200fa2429ef03942"
EXAMPLE_FINGERPRINT = "c470ee49602d91e381c4fd0192973375fff605e7689238cc22590b713b8a5fe9"
# The example as the SDK captured it: the shipped file is anonymised (/home/dev/probe); the
# captured body (whose SHA-256 is the SDK's Idempotency-Key) has the original paths, and the
# spec's fingerprint is of that body.
CAPTURED_BODY = (
    (Path(__file__).parent / "data" / "arco-manifest-example.json")
    .read_bytes()
    .replace(b"/home/dev/probe", b"/tmp/manifest-probe")
)
EXAMPLE_CODE_VERSION = "01M8EENQ2YH5T6GYKK1GHWHZYZ"


def post(client: TestClient, body: Any, key: str | None = None, **headers: str) -> Any:
    sent = {**user_headers(), "Content-Type": "application/json", **headers}
    if key is not None:
        sent["Idempotency-Key"] = key
    return client.post(MANIFESTS, content=json.dumps(body), headers=sent)


def test_example_end_to_end_deploy(client: TestClient) -> None:
    """arco-manifest 3 "End-to-end check" items 1-3: the example with its Idempotency-Key is
    201 (assetCount 2, the codeVersionId, the fingerprint); the same body and key is 200 with
    the same manifestId; a different body with the key is 409 CONFLICT."""
    assert hashlib.sha256(CAPTURED_BODY).hexdigest() == EXAMPLE_KEY
    headers = {**user_headers(), "Content-Type": "application/json", "Idempotency-Key": EXAMPLE_KEY}
    first = client.post(MANIFESTS, content=CAPTURED_BODY, headers=headers)
    assert first.status_code == 201, first.text
    body = first.json()
    assert list(body) == [
        "manifestId",
        "workspaceId",
        "codeVersionId",
        "fingerprint",
        "assetCount",
        "deployedAt",
    ]
    assert (body["assetCount"], body["codeVersionId"], body["fingerprint"]) == (
        2,
        EXAMPLE_CODE_VERSION,
        EXAMPLE_FINGERPRINT,
    )
    assert len(body["manifestId"]) == 26

    replay = client.post(MANIFESTS, content=CAPTURED_BODY, headers=headers)
    assert replay.status_code == 200
    assert replay.json() == body

    conflict = post(client, EXAMPLE_MANIFEST, EXAMPLE_KEY)  # the anonymised body
    assert conflict.status_code == 409
    assert conflict.json()["code"] == "CONFLICT"
    listed = client.get(MANIFESTS, headers=user_headers()).json()["manifests"]
    assert [item["manifestId"] for item in listed] == [body["manifestId"]]


def test_example_end_to_end_run_triggers(api: Api) -> None:
    """arco-manifest 3 "End-to-end check" items 4-6 (and MUST 6): the SDK's `s:` partition key
    plans one task with partition `date=d:2024-01-15`; a partition for the unpartitioned
    asset is 400; `includeUpstream` plans two tasks; the run's code version is the manifest's
    codeVersionId."""
    partitioned = api.trigger({"selection": [DAILY], "partitionKey": "date=s:MjAyNC0wMS0xNQ"})
    assert partitioned.status_code == 201, partitioned.text
    run_id = partitioned.json()["runId"]
    tasks = api.detail(run_id)["tasks"]
    assert [task["taskKey"] for task in tasks] == [DAILY]
    assert api.task(run_id, DAILY)["partitionKey"] == "date=d:2024-01-15"
    assert api.snapshot(run_id, DAILY)["run"]["code_version"] == EXAMPLE_CODE_VERSION

    wrong = api.trigger({"selection": [RAW], "partitionKey": "date=s:MjAyNC0wMS0xNQ"})
    assert wrong.status_code == 400

    both = api.trigger({"selection": [DAILY], "includeUpstream": True})
    assert both.status_code == 201
    planned = api.detail(both.json()["runId"])["tasks"]
    assert [task["taskKey"] for task in planned] == [DAILY, RAW]  # sorted by key
    assert all("partitionKey" not in api.task(both.json()["runId"], t["taskKey"]) for t in planned)


def test_get_one_manifest_and_not_found(client: TestClient) -> None:
    """arco-manifest 3 SHOULD: GET one returns the stored manifest; an unknown id is 404
    `manifest not found: {id}`; another workspace's caller cannot read it."""
    deployed = client.post(
        MANIFESTS,
        content=CAPTURED_BODY,
        headers={**user_headers(), "Content-Type": "application/json"},
    ).json()
    response = client.get(f"{MANIFESTS}/{deployed['manifestId']}", headers=user_headers())
    assert response.status_code == 200
    stored = response.json()
    assert stored["manifestId"] == deployed["manifestId"]
    assert (stored["codeVersionId"], stored["fingerprint"]) == (
        EXAMPLE_CODE_VERSION,
        EXAMPLE_FINGERPRINT,
    )
    assert stored["deployedBy"] == "probe"
    assert [asset["key"] for asset in stored["assets"]] == [
        {"namespace": "analytics", "name": "daily_sales"},
        {"namespace": "analytics", "name": "raw_orders"},
    ]
    assert stored["assets"][0]["tags"] == {"data_tier": "gold", "team": "finance"}
    assert stored["git"]["branch"] == "main"
    missing = client.get(f"{MANIFESTS}/01NOPE", headers=user_headers())
    assert missing.status_code == 404
    assert missing.json()["message"] == "manifest not found: 01NOPE"
    other_tenant = client.get(
        f"{MANIFESTS}/{deployed['manifestId']}", headers=user_headers(tenant="tenant-z")
    )
    assert other_tenant.status_code == 404


def test_list_manifests_newest_first(api: Api, make_client: Callable[..., TestClient]) -> None:
    """arco-manifest 3 SHOULD: the list is sorted by deployedAt descending, with null
    gitBranch/gitCommit when the manifest has no git block; deployedBy falls back to the user
    id; the latest deploy drives planning."""
    clock = Clock()
    client = make_client(clock=clock)
    ids = []
    for code_version in ("cv-1", "cv-2", "cv-3"):
        clock.advance(60)
        response = post(client, manifest_of({"demo.only": []}, code_version=code_version))
        assert response.status_code == 201
        ids.append(response.json()["manifestId"])
    listed = client.get(MANIFESTS, headers=user_headers()).json()["manifests"]
    example_id = listed[-1]["manifestId"]  # deployed by the `api` fixture, earlier
    assert [item["manifestId"] for item in listed] == [*ids[::-1], example_id]
    newest = listed[0]
    assert (newest["codeVersionId"], newest["gitBranch"], newest["gitCommit"]) == (
        "cv-3",
        None,
        None,
    )
    assert newest["deployedBy"] == "user-1"
    assert newest["deployedAt"] == format_timestamp(clock.now)
    assert listed[-1]["gitBranch"] == "main"
    # Planning reads the latest manifest: the example's assets are gone.
    assert api.trigger({"selection": [RAW]}).status_code == 400
    assert api.trigger({"selection": ["demo.only"]}).status_code == 201


def test_idempotent_replay_does_not_move_latest(
    api: Api, make_client: Callable[..., TestClient]
) -> None:
    """arco-manifest 3 SHOULD: a replay with the same fingerprint answers the original values
    and does not make the replayed manifest "latest" again."""
    client = api.client
    keyed = post(client, manifest_of({"demo.first": []}), "key-a")
    assert keyed.status_code == 201
    assert post(client, manifest_of({"demo.second": []})).status_code == 201
    assert post(client, manifest_of({"demo.first": []}), "key-a").status_code == 200
    assert api.trigger({"selection": ["demo.second"]}).status_code == 201
    assert api.trigger({"selection": ["demo.first"]}).status_code == 400


@pytest.mark.parametrize(
    ("mutate", "status", "message"),
    [
        (lambda m: m.pop("manifestVersion"), 422, "manifestVersion"),
        (lambda m: m.update(codeVersionId=""), 400, "codeVersionId is required"),
        (lambda m: m.update(assets=[]), 400, "manifest must contain at least one asset"),
        (lambda m: m["assets"].append(copy.deepcopy(m["assets"][0])), 400, "duplicate asset key"),
        (
            lambda m: m["assets"][0]["dependencies"][0].update(
                upstreamKey={"namespace": "analytics", "name": "ghost"}
            ),
            400,
            "depends on unknown asset",
        ),
        (lambda m: m["assets"][1].pop("id"), 422, "id"),
    ],
)
def test_manifest_validation(
    client: TestClient, mutate: Callable[[dict[str, Any]], Any], status: int, message: str
) -> None:
    """arco-manifest 3 MUST 3 (validation): failures are 4xx with the JSON error body, and
    nothing is stored."""
    manifest = copy.deepcopy(EXAMPLE_MANIFEST)
    mutate(manifest)
    response = post(client, manifest)
    assert response.status_code == status, response.text
    assert message in response.json()["message"]
    assert client.get(MANIFESTS, headers=user_headers()).json()["manifests"] == []


def test_manifest_parsing_is_lenient(client: TestClient) -> None:
    """arco-manifest 3 MUST 2: unknown fields ignored at every level, nulls in free-form
    objects, assets in any order (a dependent before its upstream)."""
    manifest = manifest_of({"demo.child": ["demo.parent"], "demo.parent": []})
    manifest["unknownTop"] = {"x": 1}
    manifest["assets"][0]["unknownAsset"] = [1, 2]
    manifest["assets"][0]["tags"] = {"owner": None}
    manifest["metadata"] = {"nested": {"k": None}}
    response = post(client, manifest)
    assert response.status_code == 201, response.text
    assert response.json()["assetCount"] == 2


def test_manifest_route_needs_json_and_the_callers_workspace(client: TestClient) -> None:
    """arco-manifest 3 MUST 1: JSON only (415 otherwise), the workspace must match (404), and
    user authentication is required (401)."""
    text = client.post(
        MANIFESTS,
        content=json.dumps(EXAMPLE_MANIFEST),
        headers={**user_headers(), "Content-Type": "text/plain"},
    )
    assert text.status_code == 415
    other = client.post(
        "/api/v1/workspaces/prod/manifests", json=EXAMPLE_MANIFEST, headers=user_headers()
    )
    assert (other.status_code, other.json()["message"]) == (404, "workspace not found")
    assert client.post(MANIFESTS, json=EXAMPLE_MANIFEST).status_code == 401
    malformed = client.post(
        MANIFESTS, content=b"{", headers={**user_headers(), "Content-Type": "application/json"}
    )
    assert malformed.status_code == 400


def test_manifest_body_limit_is_ten_mebibytes(client: TestClient) -> None:
    """arco-manifest 3 MUST 1: bodies up to 10 MiB are read; larger ones are 413."""
    manifest = copy.deepcopy(EXAMPLE_MANIFEST)
    manifest["metadata"] = {"blob": "x" * (3 * 1024 * 1024)}
    assert post(client, manifest).status_code == 201
    manifest["metadata"] = {"blob": "x" * (10 * 1024 * 1024)}
    assert post(client, manifest).status_code == 413


def test_runs_plan_from_the_example_with_upstream_expansion(api: Api) -> None:
    """arco-manifest 3 MUST 6: `depends_on` holds only planned upstreams: alone, daily_sales is
    READY; with its upstream it is BLOCKED until raw_orders succeeds."""
    alone = api.run([DAILY])
    assert api.task(alone, DAILY)["storedState"] == "READY"
    both = api.run([DAILY], includeUpstream=True)
    assert api.task(both, DAILY)["storedState"] == "BLOCKED"
    api.succeed(api.dispatch(both, RAW))
    assert api.task(both, DAILY)["storedState"] == "READY"
    assert api.get(RUNS).status_code == 200
