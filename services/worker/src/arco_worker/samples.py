"""Sample handlers for demos and end-to-end tests (``ARCO_WORKER_SAMPLE_TASKS=true``).

They double as examples: ``demo.sleep`` and ``demo.long`` show cooperative cancellation in an
async and a sync handler, ``demo.fail`` and ``demo.flaky`` show typed failures.
"""

from __future__ import annotations

import math
import time
from typing import Any

from arco_envelope import ErrorCategory, TaskOutput
from arco_worker.context import TaskContext
from arco_worker.errors import TaskCancelled, TaskFailure
from arco_worker.registry import TaskRegistry

samples = TaskRegistry("samples")

_PROGRESS_STEPS = 10


def seconds_of(ctx: TaskContext, default: float) -> float:
    """``payload.seconds`` (``default`` when absent); a bad value fails the task, not retryable."""
    payload: Any = ctx.payload
    value = payload.get("seconds", default) if isinstance(payload, dict) else default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise TaskFailure(
            f"payload.seconds must be a number, got {value!r}",
            category=ErrorCategory.CONFIGURATION,
            retryable=False,
        )
    if value < 0:
        raise TaskFailure(
            "payload.seconds must not be negative",
            category=ErrorCategory.CONFIGURATION,
            retryable=False,
        )
    return float(value)


@samples.task("demo.sleep")
async def demo_sleep(ctx: TaskContext) -> TaskOutput:
    """Sleep ``payload.seconds`` (default 1) in ten steps, reporting progress."""
    seconds = seconds_of(ctx, 1.0)
    ctx.report_progress(0, "sleeping", phase="sleeping")
    for step in range(1, _PROGRESS_STEPS + 1):
        await ctx.sleep(seconds / _PROGRESS_STEPS)
        ctx.report_progress(step * 100 // _PROGRESS_STEPS, f"slept {step}/{_PROGRESS_STEPS}")
    return TaskOutput(row_count=0)


@samples.task("demo.fail")
def demo_fail(ctx: TaskContext) -> None:
    """Always fail as ``USER_CODE`` (not retryable, so a demo run ends at once)."""
    raise TaskFailure(
        f"demo.fail always fails (attempt {ctx.attempt})",
        category=ErrorCategory.USER_CODE,
        retryable=False,
    )


@samples.task("demo.flaky")
def demo_flaky(ctx: TaskContext) -> TaskOutput:
    """Fail attempt 1 with a retryable ``INFRASTRUCTURE`` error; succeed on later attempts."""
    if ctx.attempt == 1:
        raise TaskFailure(
            "demo.flaky fails its first attempt",
            category=ErrorCategory.INFRASTRUCTURE,
            retryable=True,
        )
    return TaskOutput(row_count=ctx.attempt)


@samples.task("demo.long")
def demo_long(ctx: TaskContext) -> TaskOutput:
    """Run until cancelled or for ``payload.seconds`` (default 3600), checking cancellation."""
    seconds = seconds_of(ctx, 3600.0)
    ctx.report_progress(0, "working", phase="working")
    started = time.monotonic()
    while (elapsed := time.monotonic() - started) < seconds:
        # An interruptible sleep: returns True as soon as cancellation is requested.
        if ctx.cancellation.wait(min(1.0, seconds - elapsed)):
            raise TaskCancelled(ctx.cancellation.reason or "cancelled")
        ctx.report_progress(min(99, int(100 * (time.monotonic() - started) / seconds)))
    ctx.report_progress(100, "done")
    return TaskOutput(row_count=0)
