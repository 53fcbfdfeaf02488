"""The dispatcher's and sweeper's server: a signal repeated within a second of the first is
the same shutdown request (issue 15 finding 10); only a later SIGINT forces the exit."""

from __future__ import annotations

import signal
import time

import uvicorn
from fastapi import FastAPI

from arco_dispatch.startup import REPEATED_SIGNAL_WINDOW_SECS, GracefulServer


def _server() -> GracefulServer:
    return GracefulServer(uvicorn.Config(FastAPI()))


def test_a_repeated_sigint_within_the_window_keeps_the_graceful_shutdown() -> None:
    server = _server()
    server.handle_exit(signal.SIGINT, None)
    server.handle_exit(signal.SIGINT, None)
    assert (server.should_exit, server.force_exit) == (True, False)


def test_a_later_sigint_still_forces_the_exit() -> None:
    server = _server()
    server.handle_exit(signal.SIGTERM, None)
    time.sleep(REPEATED_SIGNAL_WINDOW_SECS + 0.05)
    server.handle_exit(signal.SIGINT, None)
    assert (server.should_exit, server.force_exit) == (True, True)
