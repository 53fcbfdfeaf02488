"""The provider adapter interface (design D5): ``enqueue(name, target, body, headers,
deadline)`` answers enqueued, deduplicated, queue full or error (arco-orchestration 3.2)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Protocol


class EnqueueStatus(StrEnum):
    """What the provider made of one message."""

    ENQUEUED = "enqueued"
    DEDUPLICATED = "deduplicated"  # a message of that name already exists
    QUEUE_FULL = "queue_full"
    ERROR = "error"


@dataclass(frozen=True)
class EnqueueResult:
    """The provider's answer: status, its message id, or an error text."""

    status: EnqueueStatus
    message_id: str | None = None
    error: str | None = None

    @property
    def accepted(self) -> bool:
        """Whether the provider holds the message (new or deduplicated)."""
        return self.status in (EnqueueStatus.ENQUEUED, EnqueueStatus.DEDUPLICATED)


class Provider(Protocol):
    """Hands one dispatch to a transport that POSTs it to the worker.

    ``name`` is deterministic per dispatch (``cloud_task_name``), so a repeat is
    deduplicated. ``push_delivery`` is true for the built-in http provider, whose queue is
    the outbox row itself: the dispatcher's delivery pump then sends it.
    """

    @property
    def kind(self) -> str:
        """``http``, ``cloudtasks`` or ``memory``."""
        ...

    @property
    def push_delivery(self) -> bool:
        """Whether the outbox row is the queue (the dispatcher's pump delivers it)."""
        ...

    def enqueue(
        self,
        name: str,
        target: str,
        body: bytes,
        headers: Mapping[str, str],
        deadline: timedelta,
    ) -> EnqueueResult:
        """Hand one message to the transport; never raises for a provider answer."""
        ...

    def close(self) -> None:
        """Release the transport."""
        ...
