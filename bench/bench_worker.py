"""The worker of the benchmarks: one no-op handler per benchmark asset."""

from __future__ import annotations

from arco_envelope import TaskOutput
from arco_worker import TaskContext, Worker

# The worker registers every key (cheap); each stack deploys the first ``assets`` of them
# (``bench_manifest``), 2,000 unless a part asks for more (``bench.scale`` runs 10,000).
MAX_TASKS = 10_000
DEFAULT_ASSETS = 2000
TASK_KEYS = tuple(f"bench.t_{index:04d}" for index in range(MAX_TASKS))

worker = Worker("bench")


def _noop(ctx: TaskContext) -> TaskOutput:
    return TaskOutput(row_count=0)


for _key in TASK_KEYS:
    worker.task(_key)(_noop)


def bench_manifest(assets: int = DEFAULT_ASSETS) -> dict[str, object]:
    """One independent asset for each of the first ``assets`` task keys."""
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
            for key in TASK_KEYS[:assets]
        ],
        "schedules": [],
    }
