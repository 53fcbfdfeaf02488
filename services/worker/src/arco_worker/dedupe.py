"""Process-local deduplication of deliveries by ``dispatchId`` (arco-contract 3.2 item 5).

Delivery is at least once, so the same dispatch may arrive again while it runs or after it
finished. In-flight ids are kept until the attempt is settled; finished ids are remembered in
a bounded LRU so memory stays flat on a long-lived worker.
"""

from __future__ import annotations

from collections import OrderedDict
from enum import Enum

DEFAULT_REMEMBERED = 1024


class DeliveryState(Enum):
    """What the registry knows about a dispatch id."""

    NEW = "new"
    IN_FLIGHT = "in_flight"
    FINISHED = "finished"


class DispatchRegistry:
    """In-flight and recently finished dispatch ids.

    Only the service's event loop touches it, so no lock is needed: every check-and-claim
    happens without an ``await`` in between.
    """

    def __init__(self, remembered: int = DEFAULT_REMEMBERED) -> None:
        if remembered < 1:
            raise ValueError("remembered must be >= 1")
        self._remembered = remembered
        self._in_flight: set[str] = set()
        self._finished: OrderedDict[str, None] = OrderedDict()

    def state(self, dispatch_id: str) -> DeliveryState:
        """The state of ``dispatch_id``."""
        if dispatch_id in self._in_flight:
            return DeliveryState.IN_FLIGHT
        if dispatch_id in self._finished:
            self._finished.move_to_end(dispatch_id)
            return DeliveryState.FINISHED
        return DeliveryState.NEW

    @property
    def in_flight(self) -> int:
        """How many dispatches are being acknowledged, run or reported right now."""
        return len(self._in_flight)

    def claim(self, dispatch_id: str) -> None:
        """Mark a NEW dispatch as in flight."""
        if self.state(dispatch_id) is not DeliveryState.NEW:
            raise ValueError(f"dispatch {dispatch_id!r} is already known")
        self._in_flight.add(dispatch_id)

    def release(self, dispatch_id: str) -> None:
        """Forget an in-flight dispatch that did not start, so a redelivery runs it."""
        self._in_flight.discard(dispatch_id)

    def finish(self, dispatch_id: str) -> None:
        """Mark a dispatch as settled: a redelivery is answered 200 and runs nothing."""
        self._in_flight.discard(dispatch_id)
        self._finished[dispatch_id] = None
        self._finished.move_to_end(dispatch_id)
        while len(self._finished) > self._remembered:
            self._finished.popitem(last=False)
