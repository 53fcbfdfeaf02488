"""A full worker's 429 asks for the shortest Retry-After HTTP can say (one second): a slot
frees whenever any handler ends, and the dispatcher paces itself after a 429."""

from __future__ import annotations

import threading
from typing import Any

from services.worker.tests.worker_test_support import (
    FakeCallbackApi,
    make_envelope,
    running_worker,
)

from arco_worker import TaskContext, Worker


def test_a_full_worker_asks_to_retry_in_one_second(api: FakeCallbackApi) -> None:
    release = threading.Event()

    def held(_: TaskContext) -> dict[str, Any]:
        release.wait(10)
        return {"rowCount": 1}

    worker = Worker()
    worker.add("test.held", held)
    with running_worker(worker, api, ARCO_WORKER_CONCURRENCY="1") as running:
        try:
            assert running.dispatch(make_envelope(api.base_url, "test.held")).status_code == 202
            busy = running.dispatch(make_envelope(api.base_url, "test.held"))
            assert busy.status_code == 429
            assert busy.headers["Retry-After"] == "1"
            assert busy.json()["error"] == "worker_busy"
        finally:
            release.set()
        running.wait_idle()
