"""A manifest derived from a worker's registered tasks: one asset per task key, so a worker
under test can be deployed without writing a manifest by hand."""

from __future__ import annotations

from typing import Any

from arco_worker import Worker


def _key(task_key: str) -> dict[str, str]:
    namespace, _, name = task_key.partition(".")
    if not namespace or not name:
        raise ValueError(f"task key {task_key!r} is not an asset key `namespace.name`")
    return {"namespace": namespace, "name": name}


def manifest_of(worker: Worker, code_version: str = "pytest") -> dict[str, Any]:
    """The manifest whose assets are ``worker``'s task keys (dependencies from each task's
    ``deps``, when the registry records them)."""
    assets = []
    for task_key, task in sorted(worker.tasks.items()):
        deps: tuple[str, ...] = tuple(getattr(task, "deps", ()) or ())
        assets.append(
            {
                "id": task_key,
                "key": _key(task_key),
                "dependencies": [
                    {"upstreamKey": _key(dep), "parameterName": _key(dep)["name"]} for dep in deps
                ],
                "partitioning": {"isPartitioned": False, "dimensions": []},
                "owners": [],
                "tags": {},
                "checks": [],
                "code": {
                    "module": getattr(task.handler, "__module__", ""),
                    "function": getattr(task.handler, "__name__", task_key),
                },
                "execution": {"maxRetries": 0, "timeoutSeconds": 600},
                "resources": {},
                "io": {},
            }
        )
    return {
        "manifestVersion": "1.0",
        "codeVersionId": code_version,
        "git": {},
        "assets": assets,
        "schedules": [],
        "deployedBy": "arco-stack pytest plugin",
    }
