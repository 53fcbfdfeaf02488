"""Identifiers of the wire contract (arco-contract section 1)."""

from __future__ import annotations

import base64
import hashlib
import re

CALLBACK_TASK_ID_PREFIX = "ct1_"
_URLSAFE_ALPHABET = re.compile(r"[A-Za-z0-9_-]*")


class InvalidCallbackTaskId(ValueError):  # noqa: N818 - upstream's error name
    """A ``ct1_`` callback task id that does not decode to ``(run_id, task_key)``."""


def callback_task_id(run_id: str, task_key: str) -> str:
    """Encode ``(run_id, task_key)`` as the opaque ``ct1_`` callback task id.

    Like upstream, the encoder does no validation: an empty part or a part containing NUL
    gives an id that does not parse back.
    """
    payload = run_id.encode() + b"\x00" + task_key.encode()
    return CALLBACK_TASK_ID_PREFIX + base64.urlsafe_b64encode(payload).rstrip(b"=").decode()


def _strict_urlsafe_b64decode(text: str) -> bytes:
    # Python's decoders accept padding, the standard alphabet and non-zero trailing bits;
    # upstream's URL_SAFE_NO_PAD engine rejects all three, so check them here.
    if not _URLSAFE_ALPHABET.fullmatch(text):
        raise ValueError("invalid symbol (only A-Z a-z 0-9 - _ are allowed, without padding)")
    if len(text) % 4 == 1:
        raise ValueError("invalid length")
    decoded = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if base64.urlsafe_b64encode(decoded).rstrip(b"=").decode() != text:
        raise ValueError("invalid last symbol (non-zero trailing bits)")
    return decoded


def parse_callback_task_id(task_id: str) -> tuple[str, str]:
    """Decode a ``ct1_`` callback task id into ``(run_id, task_key)``.

    Raises :class:`InvalidCallbackTaskId` with upstream's messages, checking in upstream's
    order: prefix, strict URL-safe unpadded base64, exactly one NUL, UTF-8, non-empty parts.
    """
    if not task_id.startswith(CALLBACK_TASK_ID_PREFIX):
        raise InvalidCallbackTaskId("callback task id must start with ct1_")
    try:
        payload = _strict_urlsafe_b64decode(task_id[len(CALLBACK_TASK_ID_PREFIX) :])
    except ValueError as exc:
        raise InvalidCallbackTaskId(
            f"callback task id payload is not valid base64: {exc}"
        ) from None
    parts = payload.split(b"\x00")
    if len(parts) != 2:
        raise InvalidCallbackTaskId("callback task id payload must encode run_id and task_key")
    try:
        run_id = parts[0].decode()
        task_key = parts[1].decode()
    except UnicodeDecodeError as exc:
        raise InvalidCallbackTaskId(f"callback task id payload is not valid UTF-8: {exc}") from None
    if not run_id or not task_key:
        raise InvalidCallbackTaskId("callback task id payload must encode run_id and task_key")
    return run_id, task_key


def dispatch_id(run_id: str, task_key: str, attempt: int) -> str:
    """The dispatch id ``dispatch:{run_id}:{task_key}:{attempt}`` (section 1.2)."""
    return f"dispatch:{run_id}:{task_key}:{attempt}"


def attempt_id(dispatch_id: str) -> str:
    """The deterministic attempt id: ``att_`` + hex of the first 12 bytes of
    SHA-256(``"attempt:" + dispatch_id``) (section 1.3)."""
    digest = hashlib.sha256(b"attempt:" + dispatch_id.encode()).digest()
    return "att_" + digest[:12].hex()


def cloud_task_name(dispatch_id: str) -> str:
    """The Cloud Tasks task name: ``d_`` + the first 26 characters of lowercase unpadded
    base32 of SHA-256(dispatch_id) (section 1.4)."""
    digest = hashlib.sha256(dispatch_id.encode()).digest()
    return "d_" + base64.b32encode(digest).decode().rstrip("=").lower()[:26]
