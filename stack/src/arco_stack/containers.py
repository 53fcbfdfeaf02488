"""PostgreSQL in a container for test suites (testcontainers), and whether Docker is there."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

DEFAULT_POSTGRES_IMAGE = "postgres:16"


class ContainerError(RuntimeError):
    """The container could not be started; the message says why."""


def docker_engine_problem() -> str | None:
    """Why no Docker engine answers, or None when one does (at ``DOCKER_HOST`` or the default
    socket, where testcontainers looks). A plain socket: httpcore leaks one when a Unix
    socket connect fails, and docker's client leaks one when the engine is absent."""
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    address: str | tuple[str, int]
    if host.startswith("unix://"):
        family, address = socket.AF_UNIX, host.removeprefix("unix://")
    else:
        parts = urlsplit(host)
        family, address = socket.AF_INET, (parts.hostname or "", parts.port or 2375)
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.settimeout(5.0)
            probe.connect(address)
            probe.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            answer = probe.recv(64)
    except OSError as exc:
        return f"no Docker engine at {host}: {exc}"
    if b" 200 " not in answer:
        return f"the Docker engine at {host} answered {answer!r}"
    return None


@contextmanager
def postgres_container() -> Iterator[str]:
    """A PostgreSQL server in a container of image ``$ARCO_TEST_POSTGRES_IMAGE`` (default
    ``postgres:16``) for the duration of the block; yields its URL."""
    from testcontainers.community.postgres import PostgresContainer  # noqa: PLC0415 - heavy

    image = os.environ.get("ARCO_TEST_POSTGRES_IMAGE", DEFAULT_POSTGRES_IMAGE)
    try:
        container = PostgresContainer(image, driver=None).start()
    except Exception as exc:  # noqa: BLE001 - docker raises many kinds; all mean "no database"
        raise ContainerError(f"cannot start a PostgreSQL container from {image}: {exc}") from None
    try:
        yield container.get_connection_url()
    finally:
        container.stop()
