"""What a task handler receives: the attempt's identity, its payload, a progress reporter
and a cancellation signal. Safe to use from sync handlers (which run in their own thread)
and from async handlers (which run on the service's event loop)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from dataclasses import dataclass, field
from typing import Any

from arco_worker.errors import TaskCancelled

DEFAULT_PHASE = "running"


class CancellationSignal:
    """Set when the control plane asked to cancel the run, or when the worker shuts down.

    Cancellation is cooperative: the handler checks :meth:`is_set`, waits with :meth:`wait` /
    :meth:`wait_async`, or calls ``TaskContext.raise_if_cancelled()``.
    """

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._reason: str | None = None
        # Async waiters, each woken on its own loop: the signal may be set from any thread.
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []

    def is_set(self) -> bool:
        """Whether cancellation was requested."""
        return self._event.is_set()

    @property
    def reason(self) -> str | None:
        """Why cancellation was requested (e.g. ``user_requested``), once it was."""
        return self._reason

    def wait(self, timeout: float | None = None) -> bool:
        """Block up to ``timeout`` seconds; returns True when cancellation was requested.

        Use it as an interruptible sleep in sync handlers.
        """
        return self._event.wait(timeout)

    async def wait_async(self, timeout: float | None = None) -> bool:
        """Async version of :meth:`wait`."""
        waiter = (asyncio.get_running_loop(), asyncio.Event())
        with self._lock:
            if self._event.is_set():
                return True
            self._waiters.append(waiter)
        try:
            # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancellation.
            async with asyncio.timeout(timeout):
                await waiter[1].wait()
        except TimeoutError:
            pass
        finally:
            with self._lock:
                self._waiters.remove(waiter)
        return self._event.is_set()

    def request(self, reason: str) -> None:
        """Ask the handler to stop. The first reason given is kept."""
        with self._lock:
            if self._event.is_set():
                return
            self._reason = reason
            self._event.set()
            waiters = list(self._waiters)
        for loop, event in waiters:
            # A closed loop has nobody waiting any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(event.set)


@dataclass(frozen=True)
class ProgressSnapshot:
    """The latest progress a handler reported."""

    pct: int | None = None
    message: str | None = None
    phase: str = DEFAULT_PHASE


@dataclass
class TaskContext:
    """The attempt a handler is running, as dispatched in the envelope."""

    tenant_id: str
    workspace_id: str
    run_id: str
    task_key: str
    task_id: str
    attempt: int
    attempt_id: str
    dispatch_id: str
    partition_key: str | None
    payload: Any
    cancellation: CancellationSignal = field(default_factory=CancellationSignal)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _progress: ProgressSnapshot = field(default_factory=ProgressSnapshot, repr=False)

    @classmethod
    def for_test(
        cls,
        task_key: str,
        *,
        payload: Any = None,
        partition_key: str | None = None,
        run_id: str = "test-run",
        attempt: int = 1,
    ) -> TaskContext:
        """A context to call a handler directly in a unit test, without a stack."""
        return cls(
            tenant_id="test",
            workspace_id="test",
            run_id=run_id,
            task_key=task_key,
            task_id=f"{run_id}:{task_key}",
            attempt=attempt,
            attempt_id=f"{run_id}:{task_key}:{attempt}",
            dispatch_id=f"dispatch:{run_id}:{task_key}:{attempt}",
            partition_key=partition_key,
            payload={} if payload is None else payload,
        )

    def report_progress(
        self, pct: float | None = None, message: str | None = None, *, phase: str | None = None
    ) -> None:
        """Record progress (0-100), a status message and/or the current phase.

        The next heartbeat carries the latest values; a cancelled attempt reports the phase as
        ``cancelledDuringPhase`` and the progress as ``partialProgress``.
        """
        if pct is not None and not 0 <= pct <= 100:
            raise ValueError(f"progress must be between 0 and 100, got {pct}")
        with self._lock:
            current = self._progress
            self._progress = ProgressSnapshot(
                pct=current.pct if pct is None else round(pct),
                message=current.message if message is None else message,
                phase=current.phase if phase is None else phase,
            )

    @property
    def progress(self) -> ProgressSnapshot:
        """The latest reported progress."""
        with self._lock:
            return self._progress

    @property
    def cancelled(self) -> bool:
        """Whether cancellation was requested."""
        return self.cancellation.is_set()

    def raise_if_cancelled(self) -> None:
        """Raise :class:`TaskCancelled` when cancellation was requested."""
        if self.cancellation.is_set():
            raise TaskCancelled(self.cancellation.reason or "cancelled")

    async def sleep(self, seconds: float) -> None:
        """Sleep up to ``seconds``; raises :class:`TaskCancelled` as soon as cancelled."""
        if await self.cancellation.wait_async(seconds):
            raise TaskCancelled(self.cancellation.reason or "cancelled")
