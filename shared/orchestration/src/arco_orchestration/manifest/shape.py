"""The body shape of a deploy's parts (upstream: serde into DeployManifestRequest; failures are
422 with upstream's texts)."""

from __future__ import annotations

from collections.abc import Mapping

from arco_orchestration.json_shape import (
    JsonValue,
    as_json,
    boolean,
    items,
    join,
    required,
    sequence,
    string,
    struct,
)
from arco_orchestration.manifest.parts import (
    GitContext,
    ManifestAsset,
    ManifestDependency,
    ManifestSchedule,
)

_GIT_FIELDS = ("repository", "branch", "commitSha", "commitMessage", "author")


def _opt_string(obj: Mapping[str, object], key: str, path: str, default: str = "") -> str:
    # serde `#[serde(default)] String`: absent -> default, null -> type error.
    return string(obj[key], join(path, key)) if key in obj else default


def _strings(value: object, path: str) -> tuple[str, ...]:
    found = sequence(value, path)
    return tuple(string(item, f"{path}[{index}]") for index, item in enumerate(found))


def free_form(obj: Mapping[str, object], key: str) -> JsonValue:
    # serde_json::Value with a default: anything goes, absent -> null.
    return as_json(obj.get(key))


def _parse_key(value: object, path: str) -> tuple[str, str]:
    obj = struct(value, path, "AssetKey")
    namespace = string(required(obj, "namespace", path), join(path, "namespace"))
    name = string(required(obj, "name", path), join(path, "name"))
    return namespace, name


def parse_git(body: Mapping[str, object]) -> GitContext:
    if "git" not in body:
        return GitContext()
    obj = struct(body["git"], "git", "GitContext")
    strings = {key: _opt_string(obj, key, "git") for key in _GIT_FIELDS}
    dirty = boolean(obj["dirty"], "git.dirty") if "dirty" in obj else False
    return GitContext(
        repository=strings["repository"],
        branch=strings["branch"],
        commit_sha=strings["commitSha"],
        commit_message=strings["commitMessage"],
        author=strings["author"],
        dirty=dirty,
    )


def _parse_dependency(value: object, path: str) -> ManifestDependency:
    obj = struct(value, path, "AssetDependency")
    namespace, name = _parse_key(required(obj, "upstreamKey", path), join(path, "upstreamKey"))
    return ManifestDependency(
        namespace=namespace,
        name=name,
        parameter_name=_opt_string(obj, "parameterName", path),
        mapping=_opt_string(obj, "mapping", path),
    )


def parse_asset(value: object, path: str) -> ManifestAsset:
    obj = struct(value, path, "AssetEntry")
    namespace, name = _parse_key(required(obj, "key", path), join(path, "key"))
    owners = _strings(obj["owners"], join(path, "owners")) if "owners" in obj else ()
    return ManifestAsset(
        namespace=namespace,
        name=name,
        id=string(required(obj, "id", path), join(path, "id")),
        description=_opt_string(obj, "description", path),
        owners=owners,
        tags=free_form(obj, "tags"),
        partitioning=free_form(obj, "partitioning"),
        dependencies=tuple(
            _parse_dependency(item, item_path)
            for item, item_path in items(obj, "dependencies", path)
        ),
        code=free_form(obj, "code"),
        checks=tuple(as_json(item) for item, _ in items(obj, "checks", path)),
        execution=free_form(obj, "execution"),
        resources=free_form(obj, "resources"),
        io=free_form(obj, "io"),
        transform_fingerprint=_opt_string(obj, "transformFingerprint", path),
    )


def parse_schedule(value: object, path: str) -> ManifestSchedule:
    obj = struct(value, path, "ScheduleEntry")
    return ManifestSchedule(
        id=string(required(obj, "id", path), join(path, "id")),
        cron=string(required(obj, "cron", path), join(path, "cron")),
        assets=_strings(required(obj, "assets", path), join(path, "assets")),
        timezone=_opt_string(obj, "timezone", path, default="UTC"),
    )


def parse_deployed_by(body: Mapping[str, object]) -> str | None:
    value = body.get("deployedBy")
    return None if value is None else string(value, "deployedBy")
