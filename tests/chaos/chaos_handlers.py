"""The chaos suite's worker (``arco-worker --worker tests.chaos.chaos_handlers:worker``).

Every handler appends ``start`` and ``end`` lines to the executions file
(``ARCO_CHAOS_EXECUTIONS``) so the suite can count what really ran, across worker restarts:
one ``os.write`` of a short line to an ``O_APPEND`` file is atomic and survives SIGKILL of
the writer."""

from __future__ import annotations

import json
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

from arco_envelope import TaskOutput
from arco_worker import TaskContext, Worker

EXECUTIONS_ENV = "ARCO_CHAOS_EXECUTIONS"
TASKS_ENV = "ARCO_CHAOS_TASKS"
DEFAULT_TASKS = 200
LAYERS = 4  # tasks depend on the task one layer up, so readiness is exercised too
MIN_SECS, SPREAD_SECS = 0.2, 1.3

worker = Worker("chaos")


def task_count() -> int:
    return int(os.environ.get(TASKS_ENV, DEFAULT_TASKS))


def task_keys(count: int) -> list[str]:
    return [f"chaos.t{index:04d}" for index in range(count)]


def _record(phase: str, ctx: TaskContext) -> None:
    line = json.dumps(
        {
            "phase": phase,
            "runId": ctx.run_id,
            "taskKey": ctx.task_key,
            "attempt": ctx.attempt,
            "pid": os.getpid(),
        }
    )
    fd = os.open(os.environ[EXECUTIONS_ENV], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def _work(ctx: TaskContext) -> TaskOutput:
    _record("start", ctx)
    # A fixed duration per task and attempt (0.2-1.5 s) keeps a run of the suite comparable.
    spread = zlib.crc32(f"{ctx.task_key}:{ctx.attempt}".encode()) / 0xFFFFFFFF
    ctx.cancellation.wait(MIN_SECS + SPREAD_SECS * spread)
    _record("end", ctx)
    return TaskOutput(row_count=1)


for _key in task_keys(task_count()):
    worker.add(_key, _work)


def chaos_manifest(count: int) -> dict[str, object]:
    """``count`` assets in ``LAYERS`` layers; each asset below the first layer depends on the
    asset at the same position one layer up."""
    width = max(1, count // LAYERS)

    def name(index: int) -> str:
        return task_keys(count)[index].split(".", 1)[1]

    assets = []
    for index in range(count):
        upstream = [name(index - width)] if index >= width else []
        assets.append(
            {
                "id": f"chaos-{name(index)}",
                "key": {"namespace": "chaos", "name": name(index)},
                "dependencies": [
                    {"upstreamKey": {"namespace": "chaos", "name": up}, "parameterName": up}
                    for up in upstream
                ],
                "partitioning": {"isPartitioned": False, "dimensions": []},
            }
        )
    return {
        "manifestVersion": "1.0",
        "codeVersionId": f"chaos-{count}",
        "assets": assets,
        "schedules": [],
    }


@dataclass(frozen=True)
class Execution:
    phase: str
    run_id: str
    task_key: str
    attempt: int
    pid: int


def read_executions(path: Path) -> list[Execution]:
    """Every line the handlers wrote (a line cut short by SIGKILL cannot happen: each is one
    atomic write)."""
    if not path.exists():
        return []
    executions = []
    for line in path.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        executions.append(
            Execution(
                record["phase"],
                record["runId"],
                record["taskKey"],
                record["attempt"],
                record["pid"],
            )
        )
    return executions
