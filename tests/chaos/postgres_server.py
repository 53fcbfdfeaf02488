"""A throwaway PostgreSQL server the chaos suite may crash and restart without touching the
server every other test shares. Built with the local PostgreSQL binaries (``initdb``,
``pg_ctl``); as root they run as the ``postgres`` user, since PostgreSQL refuses root."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

PG_USER = "postgres"


def find_bindir() -> Path | None:
    """``ARCO_CHAOS_PG_BINDIR``, else ``pg_config --bindir``, else the newest
    ``/usr/lib/postgresql/*/bin`` holding ``initdb``."""
    configured = os.environ.get("ARCO_CHAOS_PG_BINDIR", "").strip()
    candidates = [Path(configured)] if configured else []
    if pg_config := shutil.which("pg_config"):
        result = subprocess.run(  # noqa: S603 - a local binary found on PATH
            [pg_config, "--bindir"], capture_output=True, text=True, check=False
        )
        candidates.append(Path(result.stdout.strip()))
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name), reverse=True
    )
    candidates.extend(versions)
    return next((path for path in candidates if (path / "initdb").is_file()), None)


@dataclass
class PostgresServer:
    """One server on ``port`` with its cluster in a fresh temporary directory."""

    bindir: Path
    port: int
    root: Path

    @classmethod
    def create(cls, bindir: Path, port: int) -> PostgresServer:
        root = Path(tempfile.mkdtemp(prefix="arco-chaos-pg-"))
        server = cls(bindir, port, root)
        if os.geteuid() == 0:
            shutil.chown(root, PG_USER, PG_USER)
        server._run(
            "initdb", "-D", str(server.data_dir), "-U", PG_USER, "-A", "trust", "-E", "UTF8"
        )
        return server

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def url(self) -> str:
        return f"postgresql://{PG_USER}@127.0.0.1:{self.port}/{PG_USER}"

    def _run(self, tool: str, *args: str) -> None:
        command = [str(self.bindir / tool), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", PG_USER, "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
        if result.returncode != 0:
            raise RuntimeError(
                f"{tool} failed ({result.returncode}):\n{result.stdout}{result.stderr}"
            )

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c max_connections=300"
        )
        self._run(
            "pg_ctl",
            "-D",
            str(self.data_dir),
            "-o",
            options,
            "-l",
            str(self.log_path),
            "-w",
            "-t",
            "60",
            "start",
        )

    def crash(self) -> None:
        """Stop without a shutdown checkpoint, as a crash would: the next start recovers
        from the write-ahead log."""
        self._run("pg_ctl", "-D", str(self.data_dir), "-m", "immediate", "-w", "stop")

    @property
    def log_path(self) -> Path:
        return self.root / "server.log"

    def destroy(self) -> None:
        if (self.data_dir / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data_dir), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)
