"""The ``http`` provider (the default): a durable push queue kept in the outbox table.

Its queue is the outbox row: recording the enqueue (``record_enqueued`` with
``push_delivery``) queues the row, and the dispatcher's :class:`DeliveryPump` POSTs it. The
message is rendered again at each delivery with the same envelope builder and a freshly
minted token, because a queued message may wait (backoff, an expired lease) and a stored
body would carry a token that can expire first; tokens are never stored.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta

from arco_dispatch.provider import EnqueueResult, EnqueueStatus


class HttpQueueProvider:
    """The push queue in the outbox table (see the module doc)."""

    kind = "http"
    push_delivery = True

    def enqueue(
        self,
        name: str,
        target: str,
        body: bytes,
        headers: Mapping[str, str],
        deadline: timedelta,
    ) -> EnqueueResult:
        """Accept the message: the outbox row is its queue entry (see the module doc)."""
        return EnqueueResult(EnqueueStatus.ENQUEUED, message_id=name)

    def close(self) -> None:
        """Nothing to release: the queue is the database."""
