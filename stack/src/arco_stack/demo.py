"""The demo manifest deployed by ``arco-stack up``: a small DAG whose assets map to the
reference worker's sample handlers.

``demo.flaky`` fails its first attempt and succeeds on the retry; ``demo.sleep``, partitioned by
day and slow (it sleeps in steps, reporting progress), depends on it.
"""

from __future__ import annotations

from typing import Any

DEMO_PARTITION = "date=s:MjAyNi0wMS0wMQ"  # date=2026-01-01 in the SDK's `s:` form


def _asset(name: str, upstream: list[str], *, partitioned: bool) -> dict[str, Any]:
    dimensions = [{"name": "date", "kind": "time", "granularity": "day"}] if partitioned else []
    return {
        "id": f"demo-{name}",
        "key": {"namespace": "demo", "name": name},
        "description": f"demo asset handled by the sample handler demo.{name}",
        "dependencies": [
            {"upstreamKey": {"namespace": "demo", "name": up}, "parameterName": up}
            for up in upstream
        ],
        "partitioning": {"isPartitioned": partitioned, "dimensions": dimensions},
        "owners": [],
        "tags": {},
        "checks": [],
        "code": {"module": "arco_worker.samples", "function": name},
        "execution": {"maxRetries": 2, "timeoutSeconds": 600},
        "resources": {},
        "io": {},
    }


def demo_manifest(code_version: str = "demo-1") -> dict[str, Any]:
    return {
        "manifestVersion": "1.0",
        "codeVersionId": code_version,
        "git": {},
        "assets": [
            _asset("flaky", [], partitioned=False),
            _asset("sleep", ["flaky"], partitioned=True),
        ],
        "schedules": [],
        "deployedBy": "arco-stack",
    }


def demo_trigger() -> dict[str, Any]:
    """Trigger the whole demo DAG (roots plus upstream), partitioned."""
    return {"selection": ["demo.sleep"], "includeUpstream": True, "partitionKey": DEMO_PARTITION}
