"""Asset keys: the canonical form (orchestration §2.1 "Asset key canonical form", upstream
selection.rs)."""

from __future__ import annotations

import re

_SEGMENT = re.compile(r"[a-z][a-z0-9_]*")


class AssetKeyError(ValueError):
    """An asset key that does not canonicalize; the message is upstream's."""


def canonical_asset_key(text: str) -> str:
    """Return ``ns.name`` for ``ns.name`` or ``ns/name``, or raise :class:`AssetKeyError`.

    Checks run in upstream's order with upstream's messages: empty, surrounding whitespace,
    inner whitespace, separator, empty parts, namespace segment, name segments. A slash wins
    over a dot as the separator, so ``ns/a.b`` is namespace ``ns`` with the dotted name ``a.b``.
    """
    trimmed = text.strip()
    if not trimmed:
        raise AssetKeyError("asset key cannot be empty")
    if trimmed != text:
        raise AssetKeyError("asset key cannot have leading/trailing whitespace")
    if any(char.isspace() for char in trimmed):
        raise AssetKeyError("asset key cannot contain whitespace")
    if "/" in trimmed:
        namespace, _, name = trimmed.partition("/")
    elif "." in trimmed:
        namespace, _, name = trimmed.partition(".")
    else:
        raise AssetKeyError(
            f"invalid asset key '{trimmed}': expected 'namespace.name' or 'namespace/name'"
        )
    if not namespace or not name:
        raise AssetKeyError(f"invalid asset key '{trimmed}': namespace and name must be non-empty")
    if not _is_segment(namespace):
        raise AssetKeyError(f"invalid asset key '{trimmed}': invalid namespace '{namespace}'")
    if not all(_is_segment(segment) for segment in name.split(".")):
        raise AssetKeyError(f"invalid asset key '{trimmed}': invalid name '{name}'")
    return f"{namespace}.{name}"


def _is_segment(text: str) -> bool:
    # fullmatch on an ASCII class: str.islower()/isdigit() would also accept non-ASCII letters.
    return _SEGMENT.fullmatch(text) is not None
