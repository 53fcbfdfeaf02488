"""Errors, limits, defaults and label names shared by the planning modules (upstream's
values; lengths in UTF-8 bytes, as Rust's ``str::len`` counts)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from arco_orchestration.json_shape import ShapeError

MAX_RUN_KEY_LEN = 256
MAX_PARTITION_KEY_LEN = 1024
MAX_SELECTION_ITEMS = 10_000
MAX_SELECTION_ITEM_LEN = 256
MAX_LABELS = 128
MAX_LABEL_KEY_LEN = 128
MAX_LABEL_VALUE_LEN = 2048
MAX_PARTITIONS = 128
MAX_PARTITION_DIM_LEN = 64
MAX_PARTITION_VALUE_LEN = 256

DEFAULT_MAX_ATTEMPTS = 3
DEFAULT_HEARTBEAT_TIMEOUT_SEC = 300

LABEL_PARENT_RUN_ID = "arco.parent_run_id"
LABEL_RERUN_KIND = "arco.rerun.kind"
RESERVED_LABEL_KEYS = (LABEL_PARENT_RUN_ID, LABEL_RERUN_KIND)

NO_MANIFEST_MESSAGE = (
    "no manifest deployed for workspace; deploy a manifest before triggering a run"
)


class PlanningError(ValueError):
    """A rejected trigger or rerun: 400 by default, 422 for body shape, 409 for rerun parents."""

    def __init__(self, message: str, *, status_code: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code


@contextmanager
def shape_errors() -> Iterator[None]:
    """Turn the body-shape errors of :mod:`arco_orchestration.json_shape` into 422
    :class:`PlanningError` (same message)."""
    try:
        yield
    except ShapeError as error:
        raise PlanningError(error.message, status_code=error.status_code) from None


def utf8_len(text: str) -> int:
    """A length as upstream's Rust ``str::len`` counts it: UTF-8 bytes."""
    return len(text.encode("utf-8", "surrogatepass"))
