"""The manifest deploy contract (arco-manifest.md): parsing, validation, fingerprint, read shapes.

Pure logic only: the api service parses the HTTP body, calls :func:`parse_manifest_body`, stores
:meth:`DeployedManifest.to_stored` and builds responses with the read-shape helpers below.

Errors are :class:`ManifestError`. Its ``status_code`` is 400 for the validation rules of
§2.4 and 422 for body-shape errors (wrong JSON type, missing required field), which upstream
reports through axum's ``Json`` extractor before validation runs.
"""

from arco_orchestration.json_shape import (
    SHAPE_ERROR_PREFIX,
    JsonValue,
    compact_json_bytes,
    describe_json_value,
    shape_error_message,
    sorted_json,
)
from arco_orchestration.manifest.cron import cron_is_valid, timezone_is_valid
from arco_orchestration.manifest.document import (
    DeployedManifest,
    manifest_fingerprint,
    manifest_fingerprint_document,
    manifest_fingerprint_preimage,
    parse_manifest_body,
    parse_manifest_shape,
    validate_manifest,
)
from arco_orchestration.manifest.keys import AssetKeyError, canonical_asset_key
from arco_orchestration.manifest.parts import (
    IDEMPOTENCY_CONFLICT_MESSAGE,
    GitContext,
    ManifestAsset,
    ManifestDependency,
    ManifestError,
    ManifestSchedule,
)
from arco_orchestration.manifest.reads import (
    IdempotencyOutcome,
    ManifestRecord,
    deploy_response,
    idempotency_outcome,
    manifest_document,
    manifest_list,
    manifest_list_item,
    manifest_not_found_message,
    resolve_deployed_by,
    usable_idempotency_key,
)

__all__ = [
    "IDEMPOTENCY_CONFLICT_MESSAGE",
    "SHAPE_ERROR_PREFIX",
    "AssetKeyError",
    "DeployedManifest",
    "GitContext",
    "IdempotencyOutcome",
    "JsonValue",
    "ManifestAsset",
    "ManifestDependency",
    "ManifestError",
    "ManifestRecord",
    "ManifestSchedule",
    "canonical_asset_key",
    "compact_json_bytes",
    "cron_is_valid",
    "deploy_response",
    "describe_json_value",
    "idempotency_outcome",
    "manifest_document",
    "manifest_fingerprint",
    "manifest_fingerprint_document",
    "manifest_fingerprint_preimage",
    "manifest_list",
    "manifest_list_item",
    "manifest_not_found_message",
    "parse_manifest_body",
    "parse_manifest_shape",
    "resolve_deployed_by",
    "shape_error_message",
    "sorted_json",
    "timezone_is_valid",
    "usable_idempotency_key",
    "validate_manifest",
]
