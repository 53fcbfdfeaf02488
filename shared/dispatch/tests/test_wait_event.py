"""``wait_event``: the pause of the dispatch loops must stop when its task is cancelled,
even if the event is set in the same loop iteration (3.11's ``wait_for`` swallows that
cancellation, and a loop built on it never ends)."""

from __future__ import annotations

import asyncio

import pytest

from arco_dispatch.clock import wait_event


def test_it_reports_a_set_event_and_a_timeout() -> None:
    async def scenario() -> tuple[bool, bool]:
        event = asyncio.Event()
        timed_out = await wait_event(event, 0.001)
        event.set()
        return timed_out, await wait_event(event, 5)

    assert asyncio.run(scenario()) == (False, True)


def test_a_cancellation_arriving_with_the_event_is_not_swallowed() -> None:
    async def scenario() -> None:
        event = asyncio.Event()
        waiter = asyncio.create_task(wait_event(event, 60))
        await asyncio.sleep(0)  # the waiter is now parked on the event
        event.set()
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter

    asyncio.run(scenario())
