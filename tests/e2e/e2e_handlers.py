"""Handlers of the worker that the end-to-end suite runs (``arco-worker --worker``)."""

from __future__ import annotations

import sys

from arco_envelope import ErrorCategory, TaskOutput
from arco_worker import TaskCancelled, TaskContext, TaskFailure, Worker

worker = Worker("e2e")
ITEM_KEYS = tuple(f"e2e.item_{index:02d}" for index in range(20))
BLOCK_SECS = 120.0


@worker.task("e2e.ok")
def ok(ctx: TaskContext) -> TaskOutput:
    return TaskOutput(row_count=1)


@worker.task("e2e.flaky")
def flaky(ctx: TaskContext) -> TaskOutput:
    if ctx.attempt == 1:
        raise TaskFailure("first attempt fails", category=ErrorCategory.INFRASTRUCTURE)
    return TaskOutput(row_count=ctx.attempt)


@worker.task("e2e.fail")
def fail(ctx: TaskContext) -> None:
    """Writes to stdout and stderr first: the worker uploads both as the attempt's logs."""
    print("loading rows\nchecking quality")
    print("quality check failed: 3 rows without a key", file=sys.stderr)
    raise TaskFailure("always fails", category=ErrorCategory.DATA_QUALITY, retryable=False)


@worker.task("e2e.after")
def after(ctx: TaskContext) -> TaskOutput:
    return TaskOutput(row_count=1)


def _block(ctx: TaskContext) -> None:
    if ctx.cancellation.wait(BLOCK_SECS):
        raise TaskCancelled(ctx.cancellation.reason or "cancelled")


@worker.task("e2e.long")
def long_running(ctx: TaskContext) -> TaskOutput:
    """Runs until cancelled."""
    _block(ctx)
    return TaskOutput(row_count=0)


@worker.task("e2e.crashy")
def crashy(ctx: TaskContext) -> TaskOutput:
    """Attempt 1 blocks (the test kills the worker meanwhile); later attempts succeed."""
    if ctx.attempt == 1:
        _block(ctx)
    return TaskOutput(row_count=ctx.attempt)


def _item(ctx: TaskContext) -> TaskOutput:
    ctx.cancellation.wait(0.2)
    return TaskOutput(row_count=1)


for _key in ITEM_KEYS:
    worker.task(_key)(_item)


def e2e_manifest() -> dict[str, object]:
    """Assets for every handler: ``e2e.flaky -> e2e.ok`` and ``e2e.fail -> e2e.after``."""

    def asset(name: str, upstream: tuple[str, ...] = ()) -> dict[str, object]:
        return {
            "id": f"e2e-{name}",
            "key": {"namespace": "e2e", "name": name},
            "dependencies": [
                {"upstreamKey": {"namespace": "e2e", "name": up}, "parameterName": up}
                for up in upstream
            ],
            "partitioning": {"isPartitioned": False, "dimensions": []},
        }

    names = [key.split(".", 1)[1] for key in ITEM_KEYS]
    return {
        "manifestVersion": "1.0",
        "codeVersionId": "e2e-1",
        "assets": [
            asset("flaky"),
            asset("ok", ("flaky",)),
            asset("fail"),
            asset("after", ("fail",)),
            asset("long"),
            asset("crashy"),
            *(asset(name) for name in names),
        ],
        "schedules": [],
    }
