"""Manifests for ``arco-stack deploy``: one derived from a worker's registered tasks, or read
from a file, and what a deploy changes relative to the active manifest."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from arco_worker.registry import TaskRegistry

# An asset key as the API's manifest parser accepts it: lowercase namespace segment, a dot,
# a non-empty name (docs/manifest.md).
_ASSET_KEY = re.compile(r"^([a-z][a-z0-9_]*)\.(\S+)$")


class ManifestInputError(ValueError):
    """A worker or file that cannot become a manifest; the message says why."""


def _key(task_key: str) -> dict[str, str]:
    match = _ASSET_KEY.match(task_key)
    if match is None:
        raise ManifestInputError(
            f"task key {task_key!r} is not an asset key: use 'namespace.name' with a lowercase "
            "namespace (letters, digits, '_')"
        )
    return {"namespace": match.group(1), "name": match.group(2)}


def manifest_from_worker(
    worker: TaskRegistry, *, deployed_by: str = "arco-stack"
) -> dict[str, Any]:
    """One asset per registered task (key ``namespace.name``), with the dependencies declared
    by ``@worker.task(..., deps=[...])``. The code version is a digest of the content, so
    deploying an unchanged worker again changes nothing."""
    tasks = worker.tasks
    assets = []
    for task_key in sorted(tasks):
        task = tasks[task_key]
        for dep in task.deps:
            if dep not in tasks:
                raise ManifestInputError(
                    f"{task_key} depends on {dep}, which this worker does not register"
                )
        handler = task.handler
        key = _key(task_key)
        assets.append(
            {
                "id": f"{key['namespace']}-{key['name']}",
                "key": key,
                "description": (handler.__doc__ or "").strip().split("\n")[0],
                "dependencies": [
                    {"upstreamKey": _key(dep), "parameterName": _key(dep)["name"]}
                    for dep in task.deps
                ],
                "partitioning": {"isPartitioned": False, "dimensions": []},
                "owners": [],
                "tags": {},
                "checks": [],
                "code": {
                    "module": getattr(handler, "__module__", "") or "",
                    "function": getattr(handler, "__name__", "") or "",
                },
                "execution": {},  # stored, not read: every task gets 3 attempts
                "resources": {},
                "io": {},
            }
        )
    digest = hashlib.sha256(json.dumps(assets, sort_keys=True).encode()).hexdigest()[:12]
    return {
        "manifestVersion": "1.0",
        "codeVersionId": f"{worker.name}-{digest}",
        "git": {},
        "assets": assets,
        "schedules": [],
        "deployedBy": deployed_by,
    }


def manifest_from_file(path: Path) -> dict[str, Any]:
    """A manifest JSON file (docs/manifest.md)."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ManifestInputError(f"cannot read {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise ManifestInputError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise ManifestInputError(f"{path} must hold a JSON object (a manifest)")
    return document


def asset_keys(manifest: dict[str, Any] | None) -> set[str]:
    """The ``namespace.name`` keys of a manifest's assets (lenient: the API validates)."""
    keys: set[str] = set()
    for asset in (manifest or {}).get("assets", []) or []:
        key = asset.get("key") if isinstance(asset, dict) else None
        if isinstance(key, dict):
            keys.add(f"{key.get('namespace')}.{key.get('name')}")
    return keys


@dataclass(frozen=True)
class ManifestChange:
    added: list[str]
    removed: list[str]
    kept: list[str]

    @classmethod
    def between(cls, active: dict[str, Any] | None, new: dict[str, Any]) -> ManifestChange:
        before, after = asset_keys(active), asset_keys(new)
        return cls(sorted(after - before), sorted(before - after), sorted(after & before))

    def to_json(self) -> dict[str, list[str]]:
        return {"added": self.added, "removed": self.removed, "kept": self.kept}
