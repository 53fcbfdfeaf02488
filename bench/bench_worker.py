"""The worker of the benchmarks: one no-op handler per benchmark asset."""

from __future__ import annotations

from arco_envelope import TaskOutput
from arco_worker import TaskContext, Worker

MAX_TASKS = 2000
TASK_KEYS = tuple(f"bench.t_{index:04d}" for index in range(MAX_TASKS))

worker = Worker("bench")


def _noop(ctx: TaskContext) -> TaskOutput:
    return TaskOutput(row_count=0)


for _key in TASK_KEYS:
    worker.task(_key)(_noop)


def bench_manifest() -> dict[str, object]:
    """One independent asset per task key."""
    return {
        "manifestVersion": "1.0",
        "codeVersionId": "bench-1",
        "assets": [
            {
                "id": f"bench-{key}",
                "key": {"namespace": "bench", "name": key.split(".", 1)[1]},
                "dependencies": [],
                "partitioning": {"isPartitioned": False, "dimensions": []},
            }
            for key in TASK_KEYS
        ],
        "schedules": [],
    }
