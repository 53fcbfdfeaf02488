"""Real service processes for the crash and concurrency tests (started the way an operator
starts them: the console entry point with environment variables)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from arco_testkit.values import (
    CALLBACK_BASE_URL,
    DISPATCH_SECRET,
    RUN_TOKEN,
    SCOPE,
    TASK_AUDIENCE,
    TASK_ISSUER,
    TASK_SECRET,
)


def service_env(database_url: str, target_url: str, **extra: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("ARCO_")  # only what the test sets
    }
    env.update(
        ARCO_TENANT_ID=SCOPE.tenant_id,
        ARCO_WORKSPACE_ID=SCOPE.workspace_id,
        ARCO_DATABASE_URL=database_url,
        ARCO_HTTP_PORT="0",
        ARCO_FLOW_DISPATCH_TARGET_URL=target_url,
        ARCO_FLOW_CALLBACK_BASE_URL=CALLBACK_BASE_URL,
        ARCO_FLOW_WORKER_DISPATCH_SECRET=DISPATCH_SECRET,
        ARCO_FLOW_TASK_TOKEN_SECRET=TASK_SECRET,
        ARCO_FLOW_RUN_TOKEN=RUN_TOKEN,
        ARCO_FLOW_TASK_TOKEN_ISSUER=TASK_ISSUER,
        ARCO_FLOW_TASK_TOKEN_AUDIENCE=TASK_AUDIENCE,
    )
    env.update(extra)
    return env


class ServiceProcess:
    """``python -m arco_<service>.cli`` with its output in ``log_dir``."""

    def __init__(self, service: str, env: dict[str, str], log_dir: Path, name: str) -> None:
        self.log = log_dir / f"{name}.log"
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(  # noqa: S603 - our own entry point
                [sys.executable, "-m", f"arco_{service}.cli"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def kill(self) -> None:
        """SIGKILL: no shutdown, no lease released."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    def output(self) -> str:
        return self.log.read_text(errors="replace")
