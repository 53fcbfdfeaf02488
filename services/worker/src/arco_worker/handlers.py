"""Starting a task handler and measuring it.

Sync handlers run in a daemon thread of their own rather than the loop's default executor:
a handler that ignores cancellation must not keep the process alive at shutdown, and its
CPU time can be read exactly with ``time.thread_time``. Async handlers run as tasks on the
service's event loop; their CPU time is the process's (other work on the loop included).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from arco_envelope import ErrorCategory, TaskMetrics
from arco_worker.context import TaskContext
from arco_worker.errors import TaskFailure
from arco_worker.registry import RegisteredTask


def peak_memory_bytes() -> int | None:
    """Peak resident set size of this process so far (the kernel's high-water mark)."""
    try:
        import resource  # noqa: PLC0415 - Unix only
    except ImportError:  # pragma: no cover - Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports kilobytes, macOS bytes.
    return int(peak if sys.platform == "darwin" else peak * 1024)


@dataclass
class RunningHandler:
    """A started handler: its result future, its CPU clock and how to abandon it."""

    future: asyncio.Future[Any]
    _cpu_seconds: Callable[[], float]

    def metrics(self) -> TaskMetrics:
        """CPU time and peak memory so far."""
        peak = peak_memory_bytes()
        return TaskMetrics(
            cpu_time_ms=max(0, round(self._cpu_seconds() * 1000)), peak_memory_bytes=peak
        )

    def abandon(self) -> None:
        """Stop waiting for the handler: cancel an async one; a sync thread cannot be killed,
        so it is left to notice its cancellation signal (it is a daemon thread)."""
        if not self.future.done():
            self.future.cancel()
        # Retrieve a late exception so asyncio does not log "exception was never retrieved".
        self.future.add_done_callback(_swallow)


def _swallow(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def _start_sync(
    task: RegisteredTask, ctx: TaskContext, context: contextvars.Context
) -> RunningHandler:
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()
    started = time.process_time()
    thread_cpu: list[float] = []

    def target() -> None:
        begin = time.thread_time()
        result: Any = None
        error: BaseException | None = None
        try:
            result = context.run(task.handler, ctx)
        except Exception as exc:  # noqa: BLE001 - handed to the supervisor, which reports it
            error = exc
        except BaseException as exc:  # noqa: BLE001 - SystemExit & co must not vanish silently
            error = RuntimeError(f"handler raised {type(exc).__name__}: {exc}")
            error.__cause__ = exc
        thread_cpu.append(time.thread_time() - begin)
        # A closed loop means the worker is gone and nobody wants the result.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(_settle, future, result, error)

    threading.Thread(target=target, name=f"task:{ctx.task_key}:{ctx.attempt}", daemon=True).start()

    def cpu_seconds() -> float:
        return thread_cpu[0] if thread_cpu else time.process_time() - started

    return RunningHandler(future, cpu_seconds)


def _start_async(
    task: RegisteredTask, ctx: TaskContext, context: contextvars.Context
) -> RunningHandler:
    started = time.process_time()
    ended: list[float] = []
    future = asyncio.get_running_loop().create_task(task.handler(ctx), context=context)
    future.add_done_callback(lambda _: ended.append(time.process_time()))

    def cpu_seconds() -> float:
        return (ended[0] if ended else time.process_time()) - started

    return RunningHandler(future, cpu_seconds)


def start_handler(
    task: RegisteredTask | None, ctx: TaskContext, context: contextvars.Context | None = None
) -> RunningHandler:
    """Start ``task`` for ``ctx`` in ``context`` (default: a copy of the current one; the
    worker passes the attempt's capture context, see capture.py); a missing handler fails at
    once as ``CONFIGURATION``."""
    if task is None:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        future.set_exception(
            TaskFailure(
                f"no handler is registered for task key {ctx.task_key!r} on this worker",
                category=ErrorCategory.CONFIGURATION,
                retryable=False,
            )
        )
        return RunningHandler(future, lambda: 0.0)
    context = context or contextvars.copy_context()
    if task.is_async:
        return _start_async(task, ctx, context)
    return _start_sync(task, ctx, context)
