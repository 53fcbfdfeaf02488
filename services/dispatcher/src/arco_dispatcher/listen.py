"""Wake-ups from PostgreSQL ``LISTEN``: the state changes that make work for the dispatcher
``NOTIFY`` the ``arco_dispatch`` channel at commit (``facts.notify_dispatcher``)."""

from __future__ import annotations

import threading
from collections.abc import Callable

import psycopg
import structlog
from sqlalchemy import Engine

log = structlog.get_logger("arco.dispatch.listen")

POLL_SECS = 0.5
RECONNECT_SECS = 1.0


def conninfo(engine: Engine) -> str:
    """The engine's URL in the form psycopg connects with."""
    return engine.url.set(drivername="postgresql").render_as_string(hide_password=False)


NOTIFY = "notify"
LISTEN = "listen"


class NotifyListener:
    """Listens on ``channel`` in a daemon thread and calls ``on_wake("notify")`` per
    notification, and ``on_wake("listen")`` each time it starts listening, since
    notifications sent while it was not listening are lost."""

    def __init__(self, url: str, channel: str, on_wake: Callable[[str], None]) -> None:
        self._url = url
        self._channel = channel
        self._on_wake = on_wake
        self._stop = threading.Event()
        self.listening = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"listen-{channel}", daemon=True)

    def start(self) -> None:
        """Start listening in the background."""
        self._thread.start()

    def stop(self) -> None:
        """Stop listening (within about a second)."""
        self._stop.set()
        self._thread.join(timeout=POLL_SECS * 4)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with psycopg.connect(self._url, autocommit=True) as connection:
                    connection.execute(f'LISTEN "{self._channel}"')
                    self.listening.set()
                    self._on_wake(LISTEN)
                    while not self._stop.is_set():
                        for _ in connection.notifies(timeout=POLL_SECS):
                            self._on_wake(NOTIFY)
            except psycopg.Error as exc:
                self.listening.clear()
                log.warning("listen_failed", channel=self._channel, error=str(exc))
                self._stop.wait(RECONNECT_SECS)
