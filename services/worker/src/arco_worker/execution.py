"""Running one dispatched attempt: ``/started``, the handler with heartbeats and cancellation,
then exactly one ``/completed``.

One coroutine (:meth:`AttemptExecution.run`) owns every decision about the attempt, so the
terminal outcome is chosen once, by one place, and sent once (retries resend the same body).
"""

from __future__ import annotations

import asyncio
import math
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any

import structlog
from pydantic import ValidationError

from arco_envelope import (
    ErrorCategory,
    HeartbeatRequest,
    TaskCompletedRequest,
    TaskError,
    TaskOutput,
    TaskStartedRequest,
    WorkerDispatchEnvelope,
    WorkerOutcome,
)
from arco_worker.capture import AttemptOutput, capture_context
from arco_worker.client import (
    CallbackClient,
    CallbackError,
    CallbackRejectedError,
    CallbackUnavailableError,
    Clock,
)
from arco_worker.context import TaskContext
from arco_worker.errors import TaskCancelled, TaskFailure
from arco_worker.handlers import RunningHandler, start_handler
from arco_worker.registry import RegisteredTask

MAX_STACK_TRACE_CHARS = 32_000
CANCEL_REASON_DEFAULT = "user_requested"


class Ack(Enum):
    """How ``/started`` went, which decides the answer to ``POST /dispatch``."""

    STARTED = "started"  # 202: the handler runs in the background
    ATTEMPT_OVER = "attempt_over"  # 200: 409 with a finished-attempt code; run nothing
    TOKEN_REJECTED = "token_rejected"  # noqa: S105 - 200: 401, the token is not valid for this attempt
    UNAVAILABLE = "unavailable"  # 503: network errors, 5xx or 429 after retries
    REJECTED = "rejected"  # 502: any other refusal, so the queue retries and a human looks


@dataclass(frozen=True)
class Timings:
    """Time knobs of an execution; tests shrink them."""

    cancel_grace_secs: float = 30.0
    # None: the envelope's heartbeatTimeoutSec / 5 clamped to [5 s, 60 s].
    heartbeat_interval_secs: float | None = None
    # The first heartbeat goes out this soon (or after one interval, if shorter): the control
    # plane then sees early that the handler is executing, while attempts that finish sooner
    # (no-op tasks) cost no heartbeat at all.
    first_heartbeat_secs: float = 0.5


def heartbeat_interval(envelope: WorkerDispatchEnvelope, timings: Timings) -> float:
    """Seconds between heartbeats: the override, else ``heartbeatTimeoutSec / 5`` clamped to
    [5 s, 60 s] (300 s assumed when absent): several heartbeats may be lost before the control
    plane's staleness sweep (timeout + 30 s) gives up on the attempt."""
    if timings.heartbeat_interval_secs is not None:
        return timings.heartbeat_interval_secs
    return envelope.heartbeat_interval_secs()


def context_for(envelope: WorkerDispatchEnvelope) -> TaskContext:
    """The handler context of a dispatch."""
    return TaskContext(
        tenant_id=envelope.tenant_id,
        workspace_id=envelope.workspace_id,
        run_id=envelope.run_id,
        task_key=envelope.task_key,
        task_id=envelope.task_id,
        attempt=envelope.attempt,
        attempt_id=envelope.attempt_id,
        dispatch_id=envelope.dispatch_id,
        partition_key=envelope.partition_key,
        payload=envelope.payload,
    )


def _stack_trace(exc: BaseException) -> str:
    text = "".join(traceback.format_exception(exc))
    return text if len(text) <= MAX_STACK_TRACE_CHARS else text[-MAX_STACK_TRACE_CHARS:]


def _output(result: Any) -> TaskOutput | None:
    if result is None or isinstance(result, TaskOutput):
        return result
    if isinstance(result, Mapping):
        # Field names or wire names (`row_count` or `rowCount`) are both fine here.
        return TaskOutput.model_validate(dict(result))
    raise TypeError(
        f"a handler returns a TaskOutput, a mapping of its fields or None, not {type(result)}"
    )


class AttemptExecution:
    """One attempt of one dispatch, from ``/started`` to ``/completed``."""

    def __init__(
        self,
        envelope: WorkerDispatchEnvelope,
        task: RegisteredTask | None,
        client: CallbackClient,
        *,
        worker_id: str,
        timings: Timings,
        shutdown: asyncio.Event,
        clock: Clock,
        upload_logs: bool = True,
    ) -> None:
        self.envelope = envelope
        self._upload_logs = upload_logs
        self.context = context_for(envelope)
        self._task = task
        self._client = client
        self._worker_id = worker_id
        self._timings = timings
        self._shutdown = shutdown
        self._clock = clock
        # A heartbeat response may refresh the token (design D8); later callbacks use it.
        self._token = envelope.task_token
        self._token_expires_at: datetime = envelope.token_expires_at
        self._cancel_reason: str | None = None
        self.log = structlog.get_logger(__name__).bind(
            run_id=envelope.run_id,
            task_key=envelope.task_key,
            task_id=envelope.task_id,
            attempt=envelope.attempt,
            dispatch_id=envelope.dispatch_id,
        )

    @property
    def token(self) -> str:
        """The task token the next callback will carry."""
        return self._token

    async def acknowledge(self) -> Ack:
        """Send ``/started`` and classify the answer."""
        body = TaskStartedRequest(
            attempt=self.envelope.attempt,
            attempt_id=self.envelope.attempt_id,
            worker_id=self._worker_id,
            traceparent=self.envelope.traceparent,
            started_at=self._clock(),
        )
        try:
            await self._client.started(self.envelope, body, token=self._token)
        except CallbackRejectedError as exc:
            if exc.status == 409 and exc.attempt_over:
                self.log.info("attempt_already_over", status=exc.status, error=exc.code)
                return Ack.ATTEMPT_OVER
            if exc.token_rejected:
                self.log.warning("task_token_rejected", phase="started", message=exc.message)
                return Ack.TOKEN_REJECTED
            self.log.error(
                "started_rejected", status=exc.status, error=exc.code, message=exc.message
            )
            return Ack.REJECTED
        except CallbackUnavailableError as exc:
            self.log.warning(
                "started_unavailable", status=exc.status, message=exc.message, tries=exc.attempts
            )
            return Ack.UNAVAILABLE
        self.log.info("attempt_started")
        return Ack.STARTED

    async def run(self) -> None:
        """Run the handler with heartbeats until it ends, is cancelled or the worker shuts
        down; then report the outcome, unless the attempt turned out to be over."""
        if self._shutdown.is_set():
            await self._complete(self._shutdown_body(None))
            return
        context, output = capture_context()
        handler = start_handler(self._task, self.context, context)
        body = await self._supervise(handler)
        if body is not None:
            # Logs first: once the run is seen ending, its logs can already be read.
            if self._upload_logs:
                if body.error is not None and body.error.stack_trace:
                    # As Python prints an uncaught exception: the traceback ends the stderr
                    # the author reads (`arco-stack logs`), not only the completion's error.
                    output.write("stderr", body.error.stack_trace)
                await self._upload(output)
            await self._complete(body)

    async def _upload(self, output: AttemptOutput) -> None:
        """Upload what the handler wrote, best effort (as upstream's worker does): a failed
        upload is logged and changes nothing about the attempt."""
        if output.empty:
            return
        try:
            await self._client.upload_logs(
                self.envelope, stdout=output.stdout, stderr=output.stderr, token=self._token
            )
        except CallbackError as exc:
            self.log.warning("log_upload_failed", status=exc.status, message=exc.message)
            return
        self.log.info("logs_uploaded")

    async def _supervise(self, handler: RunningHandler) -> TaskCompletedRequest | None:
        loop = asyncio.get_running_loop()
        interval = heartbeat_interval(self.envelope, self._timings)
        next_heartbeat = loop.time() + min(interval, self._timings.first_heartbeat_secs)
        cancel_deadline = math.inf
        shutdown = asyncio.ensure_future(self._shutdown.wait())
        try:
            while True:
                wake = min(next_heartbeat, cancel_deadline)
                await asyncio.wait(
                    {handler.future, shutdown},
                    timeout=max(0.0, wake - loop.time()),
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if handler.future.done():
                    return self._result_body(handler)
                if shutdown.done():
                    body = self._shutdown_body(handler)
                    self._abandon(handler, "worker_shutdown")
                    return body
                if loop.time() >= cancel_deadline:
                    self.log.warning(
                        "handler_ignored_cancellation", grace_secs=self._timings.cancel_grace_secs
                    )
                    body = self._cancelled_body(handler)
                    self._abandon(handler, self._cancel_reason or CANCEL_REASON_DEFAULT)
                    return body
                if loop.time() >= next_heartbeat:
                    if await self._heartbeat(handler):
                        # The attempt is over server-side: stop and send nothing more.
                        self._abandon(handler, "attempt_over")
                        return None
                    if self._cancel_reason is not None and cancel_deadline == math.inf:
                        self.context.cancellation.request(self._cancel_reason)
                        cancel_deadline = loop.time() + self._timings.cancel_grace_secs
                    next_heartbeat = loop.time() + interval
        finally:
            shutdown.cancel()

    def _abandon(self, handler: RunningHandler, reason: str) -> None:
        self.context.cancellation.request(reason)
        handler.abandon()

    async def _heartbeat(self, handler: RunningHandler) -> bool:
        """Send one heartbeat; True when the attempt is over (409/410) or the token is refused
        (401). Any other failure is logged and never fails the task."""
        progress = self.context.progress
        body = HeartbeatRequest(
            attempt=self.envelope.attempt,
            attempt_id=self.envelope.attempt_id,
            worker_id=self._worker_id,
            traceparent=self.envelope.traceparent,
            heartbeat_at=self._clock(),
            progress_pct=progress.pct,
            message=progress.message,
        )
        try:
            response = await self._client.heartbeat(self.envelope, body, token=self._token)
        except CallbackRejectedError as exc:
            if exc.status in (409, 410):
                self.log.info("attempt_over_on_heartbeat", status=exc.status, error=exc.code)
                return True
            if exc.token_rejected:
                self.log.warning("task_token_rejected", phase="heartbeat", message=exc.message)
                return True
            self.log.warning("heartbeat_rejected", status=exc.status, error=exc.code)
            return False
        except CallbackUnavailableError as exc:
            self.log.warning("heartbeat_unavailable", status=exc.status, message=exc.message)
            return False
        if response.task_token:
            self._token = response.task_token
            if response.token_expires_at is not None:
                self._token_expires_at = response.token_expires_at
            self.log.info("task_token_refreshed", expires_at=str(self._token_expires_at))
        # A cancel that arrives after the handler already finished changes nothing: its real
        # result is reported (completion is never blocked by cancellation).
        if response.should_cancel and self._cancel_reason is None and not handler.future.done():
            self._cancel_reason = response.cancel_reason or CANCEL_REASON_DEFAULT
            self.log.info("cancel_requested", reason=self._cancel_reason)
        return False

    def _completion(
        self, outcome: WorkerOutcome, handler: RunningHandler | None, **fields: Any
    ) -> TaskCompletedRequest:
        return TaskCompletedRequest(
            attempt=self.envelope.attempt,
            attempt_id=self.envelope.attempt_id,
            worker_id=self._worker_id,
            traceparent=self.envelope.traceparent,
            outcome=outcome,
            completed_at=self._clock(),
            metrics=handler.metrics() if handler is not None else None,
            **fields,
        )

    def _result_body(self, handler: RunningHandler) -> TaskCompletedRequest:
        future = handler.future
        if self._cancel_reason is not None:
            return self._cancelled_body(handler)
        exc = future.exception() if not future.cancelled() else asyncio.CancelledError()
        if isinstance(exc, (TaskCancelled, asyncio.CancelledError)):
            # The handler stopped on its own account: report it as cancelled, too.
            return self._cancelled_body(handler)
        if exc is None:
            try:
                output = _output(future.result())
            except (TypeError, ValidationError) as bad:
                return self._failed_body(
                    handler,
                    TaskFailure(f"handler returned an invalid output: {bad}", retryable=False),
                    bad,
                )
            self.log.info("handler_succeeded")
            return self._completion(WorkerOutcome.SUCCEEDED, handler, output=output)
        return self._failed_body(handler, exc, exc)

    def _failed_body(
        self, handler: RunningHandler, exc: BaseException, trace_of: BaseException
    ) -> TaskCompletedRequest:
        if isinstance(exc, TaskFailure):
            error = TaskError(
                category=exc.category,
                message=exc.message,
                stack_trace=_stack_trace(trace_of),
                retryable=exc.retryable,
            )
        else:
            error = TaskError(
                category=ErrorCategory.USER_CODE,
                message=f"{type(exc).__name__}: {exc}",
                stack_trace=_stack_trace(trace_of),
            )
        self.log.warning("handler_failed", category=error.category.value, message=error.message)
        return self._completion(WorkerOutcome.FAILED, handler, error=error)

    def _cancelled_body(self, handler: RunningHandler) -> TaskCompletedRequest:
        progress = self.context.progress
        partial: dict[str, Any] = {"progressPct": progress.pct or 0}
        if progress.message is not None:
            partial["message"] = progress.message
        reason = self._cancel_reason or self.context.cancellation.reason or "handler_cancelled"
        self.log.info("handler_cancelled", phase=progress.phase, reason=reason)
        return self._completion(
            WorkerOutcome.CANCELLED,
            handler,
            error=TaskError(
                category=ErrorCategory.CANCELLED, message=f"cancelled: {reason}", retryable=False
            ),
            cancelled_during_phase=progress.phase,
            partial_progress=partial,
        )

    def _shutdown_body(self, handler: RunningHandler | None) -> TaskCompletedRequest:
        if self._cancel_reason is not None and handler is not None:
            return self._cancelled_body(handler)
        return self._completion(
            WorkerOutcome.FAILED,
            handler,
            error=TaskError(
                category=ErrorCategory.INFRASTRUCTURE,
                message="worker shut down before the task finished",
                retryable=True,
            ),
        )

    def _refused_success_body(
        self, refused: TaskCompletedRequest, exc: CallbackRejectedError
    ) -> TaskCompletedRequest:
        return refused.model_copy(
            update={
                "outcome": WorkerOutcome.FAILED,
                "output": None,
                "completed_at": self._clock(),
                "error": TaskError(
                    category=ErrorCategory.USER_CODE,
                    message=f"the API refused the task's successful result: {exc.message}",
                    retryable=False,
                ),
            }
        )

    async def _complete(self, body: TaskCompletedRequest) -> None:
        """Send the one terminal report. Transient failures are retried until the token
        expires; whatever happens is logged, so a report is never dropped silently."""
        try:
            await self._client.completed(
                self.envelope, body, token=self._token, give_up_at=self._token_expires_at
            )
        except CallbackRejectedError as exc:
            if exc.attempt_over:
                self.log.info("completion_attempt_over", status=exc.status, error=exc.code)
                return
            self.log.error(
                "completion_rejected",
                outcome=body.outcome.value,
                status=exc.status,
                error=exc.code,
                message=exc.message,
            )
            if body.outcome is WorkerOutcome.SUCCEEDED and exc.status in (400, 422):
                # The API refused what the handler produced (an output value it cannot hold,
                # say). Left there, the task would stay RUNNING until the sweeper failed it
                # for silence and retried work that had succeeded: end it now, truthfully.
                await self._complete(self._refused_success_body(body, exc))
            return
        except CallbackUnavailableError as exc:
            self.log.error(
                "completion_undelivered",
                outcome=body.outcome.value,
                status=exc.status,
                message=exc.message,
                tries=exc.attempts,
            )
            return
        self.log.info("completion_delivered", outcome=body.outcome.value)
