"""The one JSON-shape helper: serde's 422 texts for both parsers, and copies of free-form
JSON that are iterative and bounded in depth."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from arco_orchestration.json_shape import (
    MAX_JSON_DEPTH,
    SHAPE_ERROR_PREFIX,
    JsonValue,
    ShapeError,
    as_json,
    sorted_json,
)
from arco_orchestration.manifest import ManifestError, parse_manifest_body
from arco_orchestration.planning import PlanningError, parse_rerun_request, parse_trigger_request


def nested(depth: int) -> JsonValue:
    """``depth`` levels of containers, alternating objects and arrays."""
    value: JsonValue = "leaf"
    for level in range(depth):
        value = {"k": value} if level % 2 else [value]
    return value


def test_a_copy_keeps_values_and_order_and_sorts_only_when_asked() -> None:
    document: JsonValue = {"b": [1, 2.5, None, True, {"z": "x", "a": []}], "a": {}}
    copy = as_json(document)
    assert copy == document
    assert copy is not document
    assert isinstance(copy, dict)
    assert list(copy) == ["b", "a"]
    ordered = sorted_json(document)
    assert isinstance(ordered, dict)
    assert list(ordered) == ["a", "b"]
    inner = ordered["b"]
    assert isinstance(inner, list)
    assert isinstance(inner[4], dict)
    assert list(inner[4]) == ["a", "z"]


def test_a_copy_is_bounded_in_depth_and_needs_no_recursion() -> None:
    assert as_json(nested(MAX_JSON_DEPTH)) == nested(MAX_JSON_DEPTH)
    with pytest.raises(ShapeError) as refused:
        as_json(nested(MAX_JSON_DEPTH + 1))
    assert refused.value.message.startswith(SHAPE_ERROR_PREFIX)
    assert refused.value.status_code == 422
    # Far deeper than Python's recursion limit: refused cleanly, not with RecursionError.
    with pytest.raises(ShapeError):
        sorted_json(nested(50_000))


def test_a_non_json_value_is_a_shape_error() -> None:
    with pytest.raises(ShapeError, match="unsupported JSON value"):
        as_json({"a": [object()]})


def test_too_deep_free_form_manifest_json_is_a_422() -> None:
    body: dict[str, JsonValue] = {
        "manifestVersion": "1",
        "codeVersionId": "c1",
        "assets": [{"key": {"namespace": "a", "name": "b"}, "id": "x"}],
        "metadata": nested(MAX_JSON_DEPTH + 1),
    }
    with pytest.raises(ManifestError) as refused:
        parse_manifest_body(body)
    assert refused.value.status_code == 422
    assert refused.value.message.startswith(SHAPE_ERROR_PREFIX)


@pytest.mark.parametrize(
    ("parse", "body", "message"),
    [
        (
            lambda body: parse_trigger_request(body, idempotency_key=None),
            {"selection": "a"},
            'selection: invalid type: string "a", expected a sequence',
        ),
        (
            lambda body: parse_trigger_request(body, idempotency_key=None),
            {"selection": ["a"], "partitions": [{"key": "d"}]},
            "partitions[0]: missing field `value`",
        ),
        (parse_rerun_request, [], "invalid type: sequence, expected struct RerunRunRequest"),
        (parse_rerun_request, {"mode": 1}, "mode: invalid type: integer `1`, expected a string"),
    ],
)
def test_both_run_parsers_answer_shape_errors_as_422_planning_errors(
    parse: Callable[[object], object], body: object, message: str
) -> None:
    with pytest.raises(PlanningError) as refused:
        parse(body)
    assert (refused.value.status_code, refused.value.message) == (
        422,
        SHAPE_ERROR_PREFIX + message,
    )
