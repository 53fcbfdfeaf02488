"""Serve a worker over HTTP with graceful SIGTERM handling: load the configuration, build the
registry (plus the sample handlers when enabled), set up logs, run uvicorn until drained."""

from __future__ import annotations

import asyncio
import importlib
import os
import signal
import socket
import sys
import time
from pathlib import Path
from types import FrameType

import structlog
import uvicorn

from arco_logs import configure_logging
from arco_worker import capture
from arco_worker.app import create_app
from arco_worker.errors import RegistrationError
from arco_worker.registry import TaskRegistry
from arco_worker.samples import samples
from arco_worker.service import ServiceOptions, WorkerService
from arco_worker.settings import SettingsError, WorkerSettings, load_settings

log = structlog.get_logger(__name__)

EXIT_CONFIG = 2
# A second signal this soon after the first is the same request delivered twice (a wrapper
# such as `uv run`, npm or a shell forwards the signal its process group also received).
REPEATED_SIGNAL_WINDOW_SECS = 1.0


class GracefulServer(uvicorn.Server):
    """A uvicorn server whose first SIGTERM/SIGINT drains the worker before exiting.

    uvicorn alone would close the listening socket at once. Here the socket stays open and
    new dispatches get 503 while running handlers get the shutdown grace; then the rest are
    reported FAILED and the server exits. A second signal within
    :data:`REPEATED_SIGNAL_WINDOW_SECS` of the first changes nothing; a later one exits at once.
    """

    def __init__(self, config: uvicorn.Config, service: WorkerService) -> None:
        super().__init__(config)
        self._service = service
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drain: asyncio.Task[None] | None = None
        self._first_signal_at: float | None = None

    async def serve(self, sockets: list[object] | None = None) -> None:  # type: ignore[override]
        """Serve until drained (see the class docstring)."""
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)  # type: ignore[arg-type]

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """Signal handler: start draining on the first signal; force the exit on a second one
        that comes later than the repeat window."""
        now = time.monotonic()
        name = signal.Signals(sig).name
        if self._loop is None:  # not serving yet: nothing to drain
            self.force_exit = True
            super().handle_exit(sig, frame)
            return
        if self._first_signal_at is None:
            self._first_signal_at = now
            log.info("shutdown_signal", signal=name)
            self._loop.call_soon_threadsafe(self._start_drain)
            return
        if now - self._first_signal_at < REPEATED_SIGNAL_WINDOW_SECS:
            log.info("shutdown_signal_repeated", signal=name)
            return
        log.warning("shutdown_forced", signal=name)
        self.force_exit = True
        super().handle_exit(sig, frame)

    def _start_drain(self) -> None:
        if self._drain is None:
            self._drain = asyncio.ensure_future(self._drain_then_exit())

    async def _drain_then_exit(self) -> None:
        try:
            await self._service.shutdown()
        finally:
            self.should_exit = True


def load_worker(spec: str, worker_dir: str | Path | None = None) -> TaskRegistry:
    """Import ``module:attribute`` and return that :class:`Worker`.

    The module is looked up in ``worker_dir`` (default: the current folder) first, as
    ``python -m`` would: a console script alone does not put the current folder on the path.
    """
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise RegistrationError(f"--worker must look like package.module:attribute, not {spec!r}")
    folder = str(Path(worker_dir or os.getcwd()).resolve())
    if folder not in sys.path:
        sys.path.insert(0, folder)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise RegistrationError(f"cannot import {module_name!r} (from {folder}): {exc}") from None
    worker = getattr(module, attribute, None)
    if not isinstance(worker, TaskRegistry):
        raise RegistrationError(f"{spec!r} is not an arco_worker.Worker")
    return worker


def build_worker(
    settings: WorkerSettings,
    spec: str | None = None,
    worker: TaskRegistry | None = None,
    worker_dir: str | None = None,
) -> TaskRegistry:
    """The worker to serve (``worker``, else ``spec``'s, else an empty one), plus the sample
    handlers when ``ARCO_WORKER_SAMPLE_TASKS=true``; validated."""
    if worker is None:
        worker = load_worker(spec, worker_dir) if spec else TaskRegistry()
    if settings.sample_tasks:
        worker.include(samples)
    worker.validate()
    return worker


def serve(
    settings: WorkerSettings, worker: TaskRegistry, *, options: ServiceOptions | None = None
) -> None:
    """Serve ``worker`` on ``ARCO_HTTP_HOST:ARCO_HTTP_PORT`` until SIGTERM/SIGINT."""
    app = create_app(settings, worker, options=options)
    config = uvicorn.Config(
        app,
        host=settings.http_host,
        port=settings.http_port,
        lifespan="on",
        log_config=None,  # stdlib records go through our JSON formatter
        ws="none",
    )
    sockets = None
    if settings.reuse_port:
        # Each process binds its own socket; with SO_REUSEPORT on all of them the kernel
        # balances new connections between the processes.
        sockets = [socket.create_server((settings.http_host, settings.http_port), reuse_port=True)]
    GracefulServer(config, app.state.service).run(sockets=sockets)


def run(
    worker: TaskRegistry | None = None, spec: str | None = None, worker_dir: str | None = None
) -> int:
    """Load the configuration, build the worker and serve it; returns the exit code.

    Refuses to start (exit code 2), naming every problem, on bad configuration or an
    unusable worker.
    """
    try:
        settings = load_settings()
    except SettingsError as exc:
        print("arco-worker: refusing to start, invalid configuration:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  - {problem}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        worker = build_worker(settings, spec, worker, worker_dir)
    except RegistrationError as exc:
        print(f"arco-worker: refusing to start: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    for warning in settings.warnings():
        print(
            f"arco-worker: warning (accepted only in the dev posture): {warning}", file=sys.stderr
        )
    # The worker's own log lines go through the same stdout tee as the tasks' prints, so one
    # lock orders every write to the real stream.
    capture.install()
    configure_logging(settings.log_level, stream=sys.stdout)
    log.info(
        "worker_starting",
        worker_id=settings.worker_id,
        host=settings.http_host,
        port=settings.http_port,
        tasks=sorted(worker.tasks),
        concurrency=settings.concurrency,
    )
    serve(settings, worker)
    return 0
