"""The three tasks ``arco-stack conformance`` dispatches, served by the reference worker:

    arco-worker --worker arco_worker.conformance:worker

A worker in another language registers the same three keys to be certified (see "Certify your
worker" in docs/worker-protocol.md).
"""

from __future__ import annotations

from arco_envelope import ErrorCategory, TaskOutput
from arco_worker.context import TaskContext
from arco_worker.errors import TaskFailure
from arco_worker.registry import TaskRegistry
from arco_worker.samples import seconds_of

worker = TaskRegistry("conformance")

_STEP_SECS = 0.5


@worker.task("conformance.ok")
def conformance_ok(ctx: TaskContext) -> TaskOutput:
    """Succeed at once (printing a line: the attempt's log, which the worker uploads)."""
    print(f"conformance.ok ran attempt {ctx.attempt}")
    return TaskOutput(row_count=1)


@worker.task("conformance.fail")
def conformance_fail(ctx: TaskContext) -> None:
    """Fail, not retryable."""
    raise TaskFailure(
        "conformance.fail always fails", category=ErrorCategory.USER_CODE, retryable=False
    )


@worker.task("conformance.sleep")
async def conformance_sleep(ctx: TaskContext) -> TaskOutput:
    """Run ``payload.seconds`` (default 1), reporting progress; stop when cancelled."""
    seconds = seconds_of(ctx, 1.0)
    ctx.report_progress(0, "sleeping", phase="sleeping")
    slept = 0.0
    while slept < seconds:
        step = min(_STEP_SECS, seconds - slept)
        await ctx.sleep(step)  # raises TaskCancelled once cancelled: reported CANCELLED
        slept += step
        ctx.report_progress(min(100, int(100 * slept / seconds)), f"slept {slept:.1f}s")
    return TaskOutput(row_count=0)
