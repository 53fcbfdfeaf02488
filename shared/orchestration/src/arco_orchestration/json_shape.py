"""Reading a decoded JSON body the way upstream's serde does, with upstream's 422 texts, and
writing JSON the way its fingerprints hash it. One helper for the manifest and the run
request parsers: each turns a :class:`ShapeError` into its own error at its entry point.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import TypeAlias

JsonValue: TypeAlias = bool | int | float | str | list["JsonValue"] | dict[str, "JsonValue"] | None

# axum's Json extractor prefixes every deserialization failure with this text (a 422).
SHAPE_ERROR_PREFIX = "Failed to deserialize the JSON body into the target type: "
# Deeper than any body the API accepts (it limits nesting when it parses); a bound here keeps
# these walks safe for a caller that did not.
MAX_JSON_DEPTH = 512


class ShapeError(ValueError):
    """A body of the wrong JSON shape: upstream answers 422 with this message."""

    status_code = 422

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def describe_json_value(value: object) -> str:
    """Describe a JSON value the way serde's ``invalid type`` errors do."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean `{'true' if value else 'false'}`"
    if isinstance(value, int):
        return f"integer `{value}`"
    if isinstance(value, float):
        return f"floating point `{value}`"
    if isinstance(value, str):
        return f"string {json.dumps(value, ensure_ascii=False)}"
    if isinstance(value, list):
        return "sequence"
    return "map"


def shape_error_message(path: str, problem: str) -> str:
    """Upstream's 422 text for a problem at a JSON path (no path at the body root)."""
    return SHAPE_ERROR_PREFIX + (f"{path}: {problem}" if path else problem)


def join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def shape_error(path: str, problem: str) -> ShapeError:
    return ShapeError(shape_error_message(path, problem))


def type_error(path: str, value: object, expected: str) -> ShapeError:
    return shape_error(path, f"invalid type: {describe_json_value(value)}, expected {expected}")


def struct(value: object, path: str, name: str) -> dict[str, object]:
    if not isinstance(value, dict):
        raise type_error(path, value, f"struct {name}")
    return value


def required(obj: Mapping[str, object], key: str, path: str) -> object:
    if key not in obj:
        raise shape_error(path, f"missing field `{key}`")
    return obj[key]


def string(value: object, path: str) -> str:
    if not isinstance(value, str):
        raise type_error(path, value, "a string")
    return value


def boolean(value: object, path: str) -> bool:
    if not isinstance(value, bool):
        raise type_error(path, value, "a boolean")
    return value


def sequence(value: object, path: str) -> list[object]:
    if not isinstance(value, list):
        raise type_error(path, value, "a sequence")
    return value


def items(obj: Mapping[str, object], key: str, path: str) -> list[tuple[object, str]]:
    """An optional array field: absent -> [], null -> type error; yields (item, item path)."""
    if key not in obj:
        return []
    item_path = join(path, key)
    found = sequence(obj[key], item_path)
    return [(item, f"{item_path}[{index}]") for index, item in enumerate(found)]


def _check_depth(depth: int) -> None:
    if depth > MAX_JSON_DEPTH:
        raise shape_error("", f"recursion limit exceeded (deeper than {MAX_JSON_DEPTH})")


def as_json(value: object, *, sort_keys: bool = False) -> JsonValue:
    """A copy of a decoded JSON value typed as :data:`JsonValue` (object keys sorted at
    every depth with ``sort_keys``, serde_json's BTreeMap order: Python sorts strings by
    code point, the same as Rust's UTF-8 byte order). Iterative, and bounded at
    :data:`MAX_JSON_DEPTH` levels."""

    def leaf(item: object) -> JsonValue:
        if item is None or isinstance(item, bool | int | float | str):
            return item
        raise shape_error("", f"unsupported JSON value {item!r}")

    if not isinstance(value, dict | list):
        return leaf(value)
    root: JsonValue = {} if isinstance(value, dict) else []
    stack: list[tuple[object, JsonValue, int]] = [(value, root, 1)]
    while stack:
        source, target, depth = stack.pop()
        _check_depth(depth)
        if isinstance(source, dict) and isinstance(target, dict):
            keys = sorted(source) if sort_keys else list(source)
            pairs = [(str(key), source[key]) for key in keys]
        elif isinstance(source, list) and isinstance(target, list):
            pairs = [("", item) for item in source]
        else:  # pragma: no cover - containers are paired above
            raise TypeError("mismatched containers")
        for key, item in pairs:
            copied: JsonValue = (
                ({} if isinstance(item, dict) else [])
                if isinstance(item, dict | list)
                else leaf(item)
            )
            if isinstance(target, dict):
                target[key] = copied
            else:
                target.append(copied)
            if isinstance(item, dict | list):
                stack.append((item, copied, depth + 1))
    return root


def sorted_json(value: JsonValue) -> JsonValue:
    """Copy a JSON value with object keys sorted at every depth (serde_json's BTreeMap order)."""
    return as_json(value, sort_keys=True)


def compact_json_bytes(value: JsonValue) -> bytes:
    """Compact UTF-8 JSON with only ``"``, ``\\`` and control characters escaped (serde_json).

    Floats are not byte-compatible with serde_json's ryu output; the SDK never sends floats.
    """
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode(
        "utf-8", "surrogatepass"
    )


def sha256_hex(document: JsonValue) -> str:
    """Lowercase hex SHA-256 of :func:`compact_json_bytes`."""
    return hashlib.sha256(compact_json_bytes(document)).hexdigest()
