"""The validation rules of a deploy (§2.4, all 400, in upstream's order), rule by rule;
:func:`arco_orchestration.manifest.document.validate_manifest` applies them."""

from __future__ import annotations

from collections.abc import Sequence

from arco_orchestration.manifest.cron import cron_is_valid, timezone_is_valid
from arco_orchestration.manifest.keys import AssetKeyError, canonical_asset_key
from arco_orchestration.manifest.parts import ManifestAsset, ManifestError, ManifestSchedule


def _checked_key(text: str) -> str:
    try:
        return canonical_asset_key(text)
    except AssetKeyError as exc:
        raise ManifestError(str(exc)) from None


def asset_keys(assets: Sequence[ManifestAsset]) -> set[str]:
    known: set[str] = set()
    for asset in assets:
        if not asset.namespace.strip() or not asset.name.strip():
            raise ManifestError("asset key must include namespace and name")
        if not asset.id.strip():
            raise ManifestError("asset id is required")
        key = _checked_key(f"{asset.namespace}/{asset.name}")
        if key in known:
            raise ManifestError("duplicate asset key in manifest")
        known.add(key)
    return known


def dependencies(assets: Sequence[ManifestAsset], known: set[str]) -> None:
    # A second pass, so a dependent may come before its upstream. No cycle detection, and a
    # self-dependency passes, exactly like upstream.
    for asset in assets:
        for dependency in asset.dependencies:
            upstream = _checked_key(f"{dependency.namespace}/{dependency.name}")
            if upstream not in known:
                raise ManifestError(f"asset '{asset.key}' depends on unknown asset '{upstream}'")


def schedules(schedules: Sequence[ManifestSchedule], known: set[str]) -> None:
    seen: set[str] = set()
    for schedule in schedules:
        if not schedule.id.strip():
            raise ManifestError("schedule id is required")
        if not schedule.cron.strip():
            raise ManifestError("schedule cron is required")
        if len(schedule.cron.split()) not in (5, 6):
            raise ManifestError(
                "schedule cron must have 5 fields (min..dow) or 6 fields (sec..dow)"
            )
        if not cron_is_valid(schedule.cron):
            raise ManifestError("invalid schedule cron")
        if not timezone_is_valid(schedule.timezone):
            raise ManifestError("invalid schedule timezone")
        if not schedule.assets:
            raise ManifestError("schedule must include at least one asset")
        for asset in schedule.assets:
            key = _checked_key(asset)
            if key not in known:
                raise ManifestError(f"schedule '{schedule.id}' references unknown asset '{key}'")
        # Upstream checks the id for duplicates only after the schedule's assets.
        if schedule.id in seen:
            raise ManifestError("duplicate schedule id in manifest")
        seen.add(schedule.id)
