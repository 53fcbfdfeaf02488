"""PostgreSQL LISTEN wake-ups: a state change that makes work NOTIFYs at commit, and the
listener passes it on (the latency mechanism of design D4, asserted without timings)."""

from __future__ import annotations

import threading

import pytest

from arco_dispatcher.listen import LISTEN, NOTIFY, NotifyListener, conninfo
from arco_orchestration.db import Database
from arco_orchestration.facts import NOTIFY_CHANNEL
from arco_testkit.clock import wait_until
from arco_testkit.facts import is_postgres, planned, trigger


def test_a_new_ready_task_wakes_the_listener(database: Database) -> None:
    if not is_postgres(database):
        pytest.skip("SQLite has no NOTIFY; the dispatcher polls it instead")
    reasons: list[str] = []
    lock = threading.Lock()

    def on_wake(reason: str) -> None:
        with lock:
            reasons.append(reason)

    listener = NotifyListener(conninfo(database.engine), NOTIFY_CHANNEL, on_wake)
    listener.start()
    try:
        wait_until(listener.listening.is_set)
        wait_until(lambda: reasons == [LISTEN])
        trigger(database, "run1", [planned("extract")])
        wait_until(lambda: NOTIFY in reasons)
    finally:
        listener.stop()
    assert reasons == [LISTEN, NOTIFY]
