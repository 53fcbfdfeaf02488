"""The ``memory`` provider, for tests: an in-process queue that deduplicates by message
name until the message is taken, and answers queue full at capacity (upstream's in-memory
queue, arco-orchestration 3.2)."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from arco_dispatch.provider import EnqueueResult, EnqueueStatus

DEFAULT_CAPACITY = 10_000


@dataclass(frozen=True)
class QueuedMessage:
    """One message as the provider received it."""

    name: str
    target: str
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)
    deadline: timedelta = timedelta(0)


class MemoryProvider:
    """The in-process queue (tests only)."""

    kind = "memory"
    push_delivery = False

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self.capacity = capacity
        self._lock = threading.Lock()
        self._messages: dict[str, QueuedMessage] = {}

    def enqueue(
        self,
        name: str,
        target: str,
        body: bytes,
        headers: Mapping[str, str],
        deadline: timedelta,
    ) -> EnqueueResult:
        """Queue the message unless its name is queued already or the queue is full."""
        with self._lock:
            if name in self._messages:
                return EnqueueResult(EnqueueStatus.DEDUPLICATED, message_id=name)
            if len(self._messages) >= self.capacity:
                return EnqueueResult(EnqueueStatus.QUEUE_FULL)
            self._messages[name] = QueuedMessage(name, target, body, dict(headers), deadline)
            return EnqueueResult(EnqueueStatus.ENQUEUED, message_id=name)

    def peek(self) -> list[QueuedMessage]:
        """The queued messages, oldest first, left in place."""
        with self._lock:
            return list(self._messages.values())

    def take(self) -> QueuedMessage | None:
        """Remove and return the oldest message; its name may then be enqueued again."""
        with self._lock:
            if not self._messages:
                return None
            return self._messages.pop(next(iter(self._messages)))

    def drain(self) -> list[QueuedMessage]:
        """Remove and return every message."""
        with self._lock:
            messages = list(self._messages.values())
            self._messages.clear()
            return messages

    def close(self) -> None:
        """Nothing to release."""
