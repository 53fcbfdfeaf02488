"""Child processes of a local stack: migrate, start, wait until ready, watch, stop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx

from arco_stack.config import ServiceSpec

STOP_GRACE_SECS = 15.0


def _reap(service: Service, timeout: float) -> None:
    """Wait up to ``timeout`` for the process to exit, then SIGKILL it; close its log."""
    try:
        service.process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        service.process.kill()
        service.process.wait()
    service.log_file.close()


def _terminate(service: Service, grace: float) -> None:
    if service.process.poll() is None:
        service.process.send_signal(signal.SIGTERM)
    _reap(service, grace)


class StackError(RuntimeError):
    """The stack could not start or a service died; the message says which and why."""


def executable(command: str) -> str:
    """A console script of this environment (next to the running Python), else from PATH."""
    local = Path(sys.executable).parent / command
    return str(local) if local.exists() else command


def migrate(env: Mapping[str, str]) -> None:
    """Upgrade the stack's database to the head revision."""
    result = subprocess.run(  # noqa: S603 - our own console script
        [executable("arco-orchestration"), "migrate"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise StackError(f"migration failed:\n{result.stderr or result.stdout}")


def tail(path: Path, lines: int = 20) -> str:
    """The last ``lines`` lines of a log file ("" when it does not exist)."""
    if not path.is_file():
        return ""
    return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])


@dataclass
class Service:
    spec: ServiceSpec
    process: subprocess.Popen[bytes]
    log_path: Path
    log_file: IO[bytes]

    @property
    def ready_url(self) -> str:
        # The worker has no database to be ready for: it serves /health only.
        path = "/health" if self.spec.command == "arco-worker" else "/ready"
        return f"http://127.0.0.1:{self.spec.port}{path}"

    def failure(self) -> str | None:
        """Why the process is gone, or ``None`` while it runs."""
        code = self.process.poll()
        if code is None:
            return None
        return (
            f"{self.spec.name} exited with code {code}; last log lines "
            f"({self.log_path}):\n{tail(self.log_path)}"
        )


@dataclass
class Stack:
    """The running services of one data directory."""

    data_dir: Path
    env: dict[str, str]
    services: list[Service] = field(default_factory=list)

    def start(self, spec: ServiceSpec) -> Service:
        logs = self.data_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        log_path = logs / f"{spec.name}.log"
        log_file = log_path.open("ab")
        env = {**os.environ, **self.env, "ARCO_HTTP_PORT": str(spec.port)}
        process = subprocess.Popen(  # noqa: S603 - our own console scripts
            [executable(spec.command), *spec.args],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=spec.cwd,
        )
        service = Service(spec, process, log_path, log_file)
        self.services.append(service)
        return service

    def wait_ready(self, service: Service, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if reason := service.failure():
                raise StackError(reason)
            try:
                if httpx.get(service.ready_url, timeout=2.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise StackError(
            f"{service.spec.name} not ready after {timeout:.0f}s ({service.ready_url}); "
            f"last log lines:\n{tail(service.log_path)}"
        )

    def start_all(self, specs: Iterable[ServiceSpec], timeout: float = 120.0) -> list[Service]:
        """Start every service at once (each needs only the migrated database), then wait
        for each in turn; on failure stop what was started and raise."""
        try:
            services = [self.start(spec) for spec in specs]
            for service in services:
                self.wait_ready(service, timeout=timeout)
        except BaseException:
            self.stop()
            raise
        return services

    def first_failure(self) -> str | None:
        for service in self.services:
            if reason := service.failure():
                return reason
        return None

    def service(self, name: str) -> Service:
        for service in self.services:
            if service.spec.name == name:
                return service
        raise KeyError(name)

    def restart(self, name: str, grace: float = STOP_GRACE_SECS) -> Service:
        """Stop one service (SIGTERM, then SIGKILL after ``grace``) and start it again."""
        service = self.service(name)
        _terminate(service, grace)
        self.services.remove(service)
        return self.start(service.spec)

    def kill(self, name: str) -> None:
        """SIGKILL one service (no chance to clean up, as in a crash) and forget it."""
        service = self.service(name)
        service.process.kill()
        service.process.wait()
        service.log_file.close()
        self.services.remove(service)

    def stop(self, grace: float = STOP_GRACE_SECS) -> None:
        """SIGTERM every service (reverse start order), then SIGKILL what is left."""
        for service in reversed(self.services):
            if service.process.poll() is None:
                service.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for service in reversed(self.services):
            _reap(service, max(0.0, deadline - time.monotonic()))
        self.services.clear()
