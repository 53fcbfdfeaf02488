"""The worker service: admits dispatches, runs them in the background, shuts down gracefully.

Admission order for one envelope: shutting down (503), envelope checks and scope (400),
dedupe by ``dispatchId`` (503 in flight / 200 finished), concurrency (429), then ``/started``
(202, 200 or 503 as design D6 says).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import httpx
import structlog

from arco_envelope import WorkerDispatchEnvelope
from arco_worker.client import CallbackClient, Clock, RetryPolicy, utc_now
from arco_worker.dedupe import DeliveryState, DispatchRegistry
from arco_worker.dispatch_checks import InvalidDispatchError, check_envelope, check_scope
from arco_worker.execution import Ack, AttemptExecution, Timings
from arco_worker.registry import TaskRegistry
from arco_worker.settings import WorkerSettings
from arco_worker.transport import AiohttpTransport, Transport, as_transport

log = structlog.get_logger(__name__)

# Retry-After values (seconds). A duplicate in flight is retried soon, as upstream does; a
# shutting-down worker asks for a longer pause so another instance can take it.
RETRY_AFTER_IN_FLIGHT = 1
# A full worker frees a slot whenever any handler ends, which is usually well within a
# second, and Retry-After counts whole seconds: 1 is the shortest wait it can ask for. The
# dispatcher's own backpressure (a claiming pause and a smaller in-flight limit after a
# 429) keeps such a short wait from turning into a stream of refused requests.
RETRY_AFTER_BUSY = 1
RETRY_AFTER_UNAVAILABLE = 10
RETRY_AFTER_SHUTTING_DOWN = 5


@dataclass(frozen=True)
class ServiceOptions:
    """Knobs that are not environment configuration; tests shrink the time-dependent ones."""

    retry: RetryPolicy = field(default_factory=RetryPolicy)
    heartbeat_interval_secs: float | None = None  # None: derived from each envelope
    completion_flush_secs: float = 30.0  # at shutdown, how long final reports may take
    callback_timeout_secs: float = 10.0
    clock: Clock = utc_now


@dataclass(frozen=True)
class Admission:
    """The answer to one ``POST /dispatch``."""

    status: int
    body: dict[str, Any]
    retry_after: int | None = None


def _answer(status: int, result: str, message: str, retry_after: int | None = None) -> Admission:
    key = "status" if status < 300 else "error"
    return Admission(status, {key: result, "message": message}, retry_after)


class WorkerService:
    """Runs dispatched attempts of one :class:`TaskRegistry`'s handlers."""

    def __init__(
        self,
        settings: WorkerSettings,
        worker: TaskRegistry,
        *,
        options: ServiceOptions | None = None,
        http: httpx.AsyncClient | Transport | None = None,
    ) -> None:
        """``http`` sends the callbacks; by default an :class:`AiohttpTransport` of the
        service's own, opened by :meth:`start`."""
        worker.validate()
        self.settings = settings
        self.worker = worker
        self.options = options or ServiceOptions()
        self.registry = DispatchRegistry()
        self._timings = Timings(
            cancel_grace_secs=settings.cancel_grace_secs,
            heartbeat_interval_secs=self.options.heartbeat_interval_secs,
            first_heartbeat_secs=settings.first_heartbeat_secs,
        )
        self._http = None if http is None else as_transport(http)
        self._owns_http = http is None
        self._client: CallbackClient | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._accepting = True
        # Set when the shutdown grace is over: running attempts then report FAILED.
        self._shutdown_expired = asyncio.Event()
        self._shutdown_done: asyncio.Future[None] | None = None

    async def start(self) -> None:
        """Open the callback HTTP client (call from the loop that will serve)."""
        if self._http is None:
            self._http = AiohttpTransport(self.options.callback_timeout_secs)
        self._client = CallbackClient(
            self._http, retry=self.options.retry, clock=self.options.clock
        )

    async def aclose(self) -> None:
        """Close the HTTP client if this service opened it."""
        if self._http is not None and self._owns_http:
            await self._http.aclose()

    @property
    def accepting(self) -> bool:
        """False once shutdown began: new dispatches get 503."""
        return self._accepting

    @property
    def running(self) -> int:
        """Dispatches in flight (acknowledging, running or reporting)."""
        return len(self._tasks)

    async def dispatch(self, envelope: WorkerDispatchEnvelope) -> Admission:
        """Admit one parsed envelope and, when ``/started`` is accepted, run it."""
        if not self._accepting or self._client is None:
            return _answer(
                503, "shutting_down", "worker is shutting down", RETRY_AFTER_SHUTTING_DOWN
            )
        try:
            check_envelope(envelope, self.options.clock())
            check_scope(envelope, self.settings)
        except InvalidDispatchError as exc:
            log.warning("dispatch_rejected", dispatch_id=envelope.dispatch_id, error=exc.message)
            return Admission(400, exc.body)
        dispatch_id = envelope.dispatch_id
        state = self.registry.state(dispatch_id)
        if state is DeliveryState.IN_FLIGHT:
            return _answer(
                503, "dispatch_in_flight", "this dispatch is running", RETRY_AFTER_IN_FLIGHT
            )
        if state is DeliveryState.FINISHED:
            return _answer(200, "duplicate", "this dispatch already finished; nothing was run")
        if self.registry.in_flight >= self.settings.concurrency:
            return _answer(429, "worker_busy", "all handler slots are busy", RETRY_AFTER_BUSY)
        self.registry.claim(dispatch_id)
        execution = AttemptExecution(
            envelope,
            self.worker.get(envelope.task_key),
            self._client,
            worker_id=self.settings.worker_id,
            timings=self._timings,
            shutdown=self._shutdown_expired,
            clock=self.options.clock,
            upload_logs=self.settings.upload_logs,
        )
        acked: asyncio.Future[Ack] = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(self._drive(execution, acked), name=f"dispatch:{dispatch_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        # Shielded: if the dispatcher hangs up, the attempt still runs to its end.
        try:
            ack = await asyncio.shield(acked)
        except RuntimeError as exc:
            return _answer(500, "internal_error", str(exc))
        return _admission_for(ack)

    async def _drive(self, execution: AttemptExecution, acked: asyncio.Future[Ack]) -> None:
        dispatch_id = execution.envelope.dispatch_id
        ack: Ack | None = None
        try:
            ack = await execution.acknowledge()
            acked.set_result(ack)
            if ack is Ack.STARTED:
                await execution.run()
        except Exception:
            execution.log.exception("dispatch_crashed")
        finally:
            if not acked.done():  # crashed or cancelled before /started was answered
                acked.set_exception(RuntimeError("the dispatch was aborted"))
            # Settled attempts are remembered so a redelivery runs nothing; one that never
            # started is forgotten so the queue's redelivery runs it.
            if ack in (Ack.STARTED, Ack.ATTEMPT_OVER, Ack.TOKEN_REJECTED):
                self.registry.finish(dispatch_id)
            else:
                self.registry.release(dispatch_id)

    async def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until no dispatch is in flight; False on timeout."""
        tasks = set(self._tasks)
        if not tasks:
            return True
        _, pending = await asyncio.wait(tasks, timeout=timeout)
        return not pending

    def stop_accepting(self) -> None:
        """Answer 503 to every new dispatch from now on."""
        if self._accepting:
            log.info("worker_stop_accepting", running=self.running)
        self._accepting = False

    async def shutdown(self, grace_secs: float | None = None) -> None:
        """Stop accepting, let running handlers finish within the grace period, then report
        the rest as ``FAILED``/``INFRASTRUCTURE`` (retryable) and wait for those reports.
        Idempotent: later calls wait for the first one."""
        self.stop_accepting()  # at once, not when the drain task first runs
        if self._shutdown_done is None:
            self._shutdown_done = asyncio.ensure_future(self._shutdown(grace_secs))
        await asyncio.shield(self._shutdown_done)

    async def _shutdown(self, grace_secs: float | None) -> None:
        grace = self.settings.shutdown_grace_secs if grace_secs is None else grace_secs
        if not await self.wait_idle(grace):
            log.warning("shutdown_grace_expired", running=self.running, grace_secs=grace)
        self._shutdown_expired.set()
        if not await self.wait_idle(self.options.completion_flush_secs):
            for task in list(self._tasks):
                log.error("completion_not_delivered_before_exit", task=task.get_name())
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        log.info("worker_stopped")


def _admission_for(ack: Ack) -> Admission:
    if ack is Ack.STARTED:
        return _answer(202, "accepted", "started; the handler runs in the background")
    if ack is Ack.ATTEMPT_OVER:
        return _answer(200, "attempt_over", "the attempt is already over; nothing was run")
    if ack is Ack.TOKEN_REJECTED:
        return _answer(200, "token_rejected", "the task token was refused; nothing was run")
    if ack is Ack.UNAVAILABLE:
        return _answer(
            503, "callback_unavailable", "the callback API is unavailable", RETRY_AFTER_UNAVAILABLE
        )
    return _answer(502, "started_rejected", "the callback API refused /started")
