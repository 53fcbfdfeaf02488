"""A user's worker: the one the sample project's tests run a stack around."""

from __future__ import annotations

from arco_worker import TaskContext, TaskFailure, Worker

worker = Worker("shop")


@worker.task("shop.report")
def report(ctx: TaskContext) -> dict[str, int]:
    print(f"hello from {ctx.task_key}")
    return {"rowCount": 1}


@worker.task("shop.broken")
def broken(ctx: TaskContext) -> None:
    raise TaskFailure("shop.broken always fails", retryable=False)


@worker.task("shop.slow")
async def slow(ctx: TaskContext) -> None:
    await ctx.sleep(120)  # raises TaskCancelled when the run is cancelled
