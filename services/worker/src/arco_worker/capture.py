"""Capturing what one attempt writes: its stdout, its stderr and its log records.

The capture of the running attempt lives in a context variable, so concurrent attempts never
mix: async handlers inherit it as asyncio tasks do, sync handlers run in a thread started with
a copy of the attempt's context (see ``handlers.py``). ``sys.stdout`` and ``sys.stderr`` are
replaced once per process by tees that still write everything to the real stream (the
worker's own console keeps showing it) and also append to the current attempt's capture.
The worker's own logs (structlog, uvicorn, httpx) are never captured: they are about the
worker, not about the task.
"""

from __future__ import annotations

import contextvars
import logging
import sys
import threading
from dataclasses import dataclass, field
from typing import Any, TextIO

# The upload body is limited to 2 MiB (arco-orchestration section 2.5); each stream keeps at
# most this much, its end, which is where a failure usually shows.
MAX_CAPTURED_CHARS = 512 * 1024
TRUNCATED_MARK = "[... earlier output truncated ...]\n"
# Loggers of the worker itself and its HTTP stack: not the task's output.
_INTERNAL_LOGGERS = ("arco_worker", "uvicorn", "httpx", "httpcore", "asyncio")
_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@dataclass
class _Stream:
    parts: list[str] = field(default_factory=list)
    size: int = 0
    truncated: bool = False

    def append(self, text: str) -> None:
        self.parts.append(text)
        self.size += len(text)
        if self.size > 2 * MAX_CAPTURED_CHARS:
            self._trim()

    def _trim(self) -> None:
        joined = "".join(self.parts)[-MAX_CAPTURED_CHARS:]
        self.parts, self.size, self.truncated = [joined], len(joined), True

    def text(self) -> str:
        if self.size > MAX_CAPTURED_CHARS:
            self._trim()
        body = "".join(self.parts)
        return TRUNCATED_MARK + body if self.truncated else body


class AttemptOutput:
    """What one attempt wrote; safe to append to from several threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stdout = _Stream()
        self._stderr = _Stream()

    def write(self, stream: str, text: str) -> None:
        with self._lock:
            (self._stdout if stream == "stdout" else self._stderr).append(text)

    @property
    def stdout(self) -> str:
        with self._lock:
            return self._stdout.text()

    @property
    def stderr(self) -> str:
        with self._lock:
            return self._stderr.text()

    @property
    def empty(self) -> bool:
        with self._lock:
            return self._stdout.size == 0 and self._stderr.size == 0


_current: contextvars.ContextVar[AttemptOutput | None] = contextvars.ContextVar(
    "arco_worker_attempt_output", default=None
)


class _Tee:
    """A text stream that writes to the real stream and to the current attempt's capture."""

    def __init__(self, real: TextIO, name: str) -> None:
        self._real = real
        self._name = name
        # Handler threads print while the loop logs: one writer at a time on the real stream
        # (Python 3.11's text files are not safe to write from two threads at once).
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        output = _current.get()
        if output is not None and text:
            output.write(self._name, text)
        with self._lock:
            return self._real.write(text)

    def flush(self) -> None:
        with self._lock:
            self._real.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


class _RecordHandler(logging.Handler):
    """Appends the task's own log records (not the worker's) to its capture's stderr, as
    Python's default logging configuration would print them."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter(_LOG_FORMAT))

    def emit(self, record: logging.LogRecord) -> None:
        output = _current.get()
        if output is None or record.name.startswith(_INTERNAL_LOGGERS):
            return
        try:
            output.write("stderr", self.format(record) + "\n")
        except Exception:  # noqa: BLE001 - logging must never fail the task
            self.handleError(record)


_installed = threading.Lock()
_handler = _RecordHandler()


def install() -> None:
    """Put the tees on ``sys.stdout``/``sys.stderr`` and the record handler on the root logger
    (idempotent; the handler survives a later ``configure_logging``, which re-adds it)."""
    with _installed:
        if not isinstance(sys.stdout, _Tee):
            sys.stdout = _Tee(sys.stdout, "stdout")
        if not isinstance(sys.stderr, _Tee):
            sys.stderr = _Tee(sys.stderr, "stderr")
        root = logging.getLogger()
        if _handler not in root.handlers:
            root.addHandler(_handler)


def capture_context() -> tuple[contextvars.Context, AttemptOutput]:
    """A copy of the current context in which what runs (and the tasks and copied contexts
    started from it) is captured into the returned output. Only the handler runs in it: the
    worker's own supervision of the attempt stays outside."""
    install()
    output = AttemptOutput()
    context = contextvars.copy_context()
    context.run(_current.set, output)
    return context, output
