"""Apache Airflow for ``make bench-peers``: installed into a virtual environment of its own,
configured on a PostgreSQL database of its own, run as real processes (api-server, scheduler
with the LocalExecutor, dag-processor) and driven from here through its public REST API
(``/api/v2``, JWT from the simple auth manager's ``/auth/token``), so nothing of Airflow is
imported into the project's environment."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import httpx
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from arco_orchestration.db import normalise_url
from arco_stack.config import free_port
from arco_stack.databases import drop_postgres_database, recreate_postgres_database
from arco_stack.processes import tail
from bench.peers.memory import parent_ids, tree
from bench.support import REPO_ROOT, database_name

AIRFLOW_VERSION = "3.3.2"
PEERS_DIR = Path(__file__).resolve().parent
REQUIREMENTS = PEERS_DIR / "airflow-requirements.txt"
DAGS_FILE = PEERS_DIR / "airflow_dags.py"
DEFAULT_VENV = REPO_ROOT / ".bench-peers" / "airflow-venv"
WIDE_DAG, SINGLE_DAG = "arco_bench_wide", "arco_bench_single"
TERMINAL = ("success", "failed")
# The scheduler tuning of the earlier measurement; the rest is Airflow's default.
SETTINGS = {
    "CORE__EXECUTOR": "LocalExecutor",
    "CORE__PARALLELISM": "32",
    # Default 16 would cap the mapped task below the executor's 32 slots.
    "CORE__MAX_ACTIVE_TASKS_PER_DAG": "32",
    "CORE__LOAD_EXAMPLES": "False",
    "CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
    "SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
    "SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.25",
    "SCHEDULER__MAX_TIS_PER_QUERY": "512",
    # Our bench stack logs at warning too (bench.run.BenchStack).
    "LOGGING__LOGGING_LEVEL": "WARNING",
}
USER = "bench"


def _uv() -> str:
    """The uv the Makefile uses (``UV``), else one on PATH, else the project's own."""
    return os.environ.get("UV") or shutil.which("uv") or str(REPO_ROOT / ".tools" / "bin" / "uv")


def install(venv: Path = DEFAULT_VENV) -> Path:
    """Install the pinned Airflow into ``venv`` unless the same pins are already there;
    returns the ``airflow`` executable."""
    airflow, python = venv / "bin" / "airflow", venv / "bin" / "python"
    stamp = venv / ".arco-bench-peers"
    wanted = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    if airflow.exists() and stamp.exists() and stamp.read_text().strip() == wanted:
        print(f"airflow: {AIRFLOW_VERSION} already installed in {venv}", flush=True)
        return airflow
    print(f"airflow: installing {AIRFLOW_VERSION} into {venv} (a few minutes)", flush=True)
    uv = _uv()
    if not python.exists():
        subprocess.run([uv, "venv", "--python", "3.11", str(venv)], check=True, timeout=300)  # noqa: S603
    subprocess.run(  # noqa: S603 - uv, with our own pinned requirements file
        [uv, "pip", "install", "--python", str(python), "-r", str(REQUIREMENTS)],
        check=True,
        timeout=1800,
    )
    version = subprocess.run(  # noqa: S603
        [str(python), "-c", "import importlib.metadata as m; print(m.version('apache-airflow'))"],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout.strip()
    if version != AIRFLOW_VERSION:
        raise RuntimeError(f"{venv} has apache-airflow {version}, not {AIRFLOW_VERSION}")
    stamp.write_text(wanted + "\n")
    return airflow


@dataclass
class _Process:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    log_file: IO[bytes]

    def failure(self) -> str | None:
        code = self.process.poll()
        if code is None:
            return None
        return f"airflow {self.name} exited with code {code}:\n{tail(self.log_path, 40)}"


class AirflowDeployment:
    """One Airflow on a fresh database and a temporary ``AIRFLOW_HOME``. ``close`` stops every
    process it started (their whole process groups) and drops the database."""

    def __init__(self, airflow: Path, home: Path, postgres_server: str, tasks: int) -> None:
        self.airflow, self.home, self.postgres_server = airflow, home, postgres_server
        self.processes: list[_Process] = []
        self.client: httpx.Client | None = None
        self.db_name = database_name("arco_bench_airflow")
        url = recreate_postgres_database(postgres_server, self.db_name)
        # Ours polls its own database for the end of a run (bench.run._wait_all_terminal);
        # the same here, so the waiting costs neither API server anything.
        self.db: Engine = create_engine(normalise_url(url), pool_size=1)
        airflow_url = make_url(url).set(drivername="postgresql+psycopg2")
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        dags = home / "dags"
        dags.mkdir(parents=True, exist_ok=True)
        shutil.copy(DAGS_FILE, dags / DAGS_FILE.name)
        self.password = secrets.token_urlsafe(16)
        passwords = home / "passwords.json"
        passwords.write_text(json.dumps({USER: self.password}))
        settings = {
            **SETTINGS,
            "CORE__DAGS_FOLDER": str(dags),
            "DATABASE__SQL_ALCHEMY_CONN": airflow_url.render_as_string(hide_password=False),
            "API__HOST": "127.0.0.1",
            "API__PORT": str(self.port),
            "API__BASE_URL": self.base_url,
            "CORE__EXECUTION_API_SERVER_URL": f"{self.base_url}/execution/",
            # One secret for every process: the scheduler signs the task tokens the api-server
            # checks.
            "API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
            "API__SECRET_KEY": secrets.token_urlsafe(32),
            "CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USER}:admin",
            "CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
        }
        inherited = {
            key: value
            for key, value in os.environ.items()
            if key not in ("PYTHONPATH", "VIRTUAL_ENV") and not key.startswith("AIRFLOW")
        }
        self.env = {
            **inherited,
            "AIRFLOW_HOME": str(home),
            "ARCO_BENCH_PEERS_TASKS": str(tasks),
            **{f"AIRFLOW__{key}": value for key, value in settings.items()},
        }

    def _log(self, name: str) -> tuple[Path, IO[bytes]]:
        path = self.home / f"{name}.log"
        return path, path.open("ab")

    def migrate(self, timeout: float = 900) -> None:
        path, log = self._log("db-migrate")
        with log:
            done = subprocess.run(  # noqa: S603 - the Airflow we installed
                [str(self.airflow), "db", "migrate"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                check=False,
            )
        if done.returncode:
            raise RuntimeError(f"airflow db migrate failed:\n{tail(path, 40)}")

    def start(self, timeout: float = 300) -> None:
        for name in ("api-server", "scheduler", "dag-processor"):
            path, log = self._log(name)
            process = subprocess.Popen(  # noqa: S603 - the Airflow we installed
                [str(self.airflow), name],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a group of its own: close() ends its children too
                cwd=self.home,
            )
            self.processes.append(_Process(name, process, path, log))
        self._wait_healthy(timeout)
        token = self._token()
        self.client = httpx.Client(
            base_url=self.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=60
        )

    @property
    def pids(self) -> dict[str, int]:
        return {item.name: item.process.pid for item in self.processes}

    def _check_alive(self) -> None:
        for item in self.processes:
            if reason := item.failure():
                raise RuntimeError(reason)

    def _wait_healthy(self, timeout: float) -> None:
        """Until the api-server answers and reports the database, a scheduler and a
        dag-processor healthy (both heartbeat into the database)."""
        deadline = time.monotonic() + timeout
        health: dict[str, Any] = {}
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                health = httpx.get(f"{self.base_url}/api/v2/monitor/health", timeout=5).json()
            except (httpx.HTTPError, ValueError):
                health = {}
            parts = ("metadatabase", "scheduler", "dag_processor")
            if all((health.get(part) or {}).get("status") == "healthy" for part in parts):
                return
            time.sleep(0.5)
        raise TimeoutError(f"airflow not healthy after {timeout:.0f}s: {health}")

    def _token(self) -> str:
        answer = httpx.post(
            f"{self.base_url}/auth/token",
            json={"username": USER, "password": self.password},
            timeout=30,
        )
        answer.raise_for_status()
        token: str = answer.json()["access_token"]
        return token

    def _api(self) -> httpx.Client:
        if self.client is None:
            raise RuntimeError("airflow is not started")
        return self.client

    def wait_dags(self, dag_ids: tuple[str, ...], timeout: float = 300) -> None:
        """Until the dag-processor has parsed and stored every DAG of ``dag_ids``; each is
        then unpaused (the config already creates them unpaused: this only makes sure)."""
        deadline = time.monotonic() + timeout
        for dag_id in dag_ids:
            while self._api().get(f"/api/v2/dags/{dag_id}").status_code != 200:
                self._check_alive()
                if time.monotonic() > deadline:
                    raise TimeoutError(f"airflow never parsed {dag_id}")
                time.sleep(0.5)
            unpause = self._api().patch(f"/api/v2/dags/{dag_id}", json={"is_paused": False})
            unpause.raise_for_status()

    def trigger(self, dag_id: str) -> str:
        answer = self._api().post(f"/api/v2/dags/{dag_id}/dagRuns", json={"logical_date": None})
        answer.raise_for_status()
        run_id: str = answer.json()["dag_run_id"]
        return run_id

    def wait_run(self, dag_id: str, run_id: str, timeout: float, poll: float = 0.05) -> str:
        """The run's final state, polled from Airflow's database."""
        deadline = time.monotonic() + timeout
        query = text("SELECT state FROM dag_run WHERE dag_id = :dag_id AND run_id = :run_id")
        while True:
            with self.db.connect() as connection:
                state = connection.scalar(query, {"dag_id": dag_id, "run_id": run_id})
            if state in TERMINAL:
                return str(state)
            if time.monotonic() > deadline:
                raise TimeoutError(f"airflow run {dag_id}/{run_id} still {state}")
            self._check_alive()
            time.sleep(poll)

    def run_timings(self, dag_id: str, run_id: str, triggered: datetime) -> dict[str, float]:
        """Where the time of a run went, from Airflow's own records (seconds after
        ``triggered``): first task queued and started, last task ended, mean task duration
        (task process start -> end as the task instance records it)."""
        query = text(
            "SELECT min(queued_dttm), min(start_date), max(end_date), avg(duration), count(*) "
            "FROM task_instance WHERE dag_id = :dag_id AND run_id = :run_id"
        )
        with self.db.connect() as connection:
            row = connection.execute(query, {"dag_id": dag_id, "run_id": run_id}).one()
        queued, started, ended, duration, count = row

        def after(moment: datetime) -> float:
            return round((moment - triggered).total_seconds(), 2)

        return {
            "task_instances": int(count),
            "first_queued_s": after(queued),
            "first_started_s": after(started),
            "last_ended_s": after(ended),
            "mean_task_duration_s": round(float(duration), 3),
        }

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        answer = self._api().get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances")
        answer.raise_for_status()
        instances: list[dict[str, Any]] = answer.json()["task_instances"]
        return instances

    def api_server_pid(self) -> int:
        return self.pids["api-server"]

    def close(self, grace: float = 30) -> None:
        if self.client is not None:
            self.client.close()
        # Task processes lead process groups of their own (Airflow's supervisor calls
        # setpgid): note every descendant now, to end any that outlive their groups' leaders.
        parents = parent_ids()
        descendants = {pid for item in self.processes for pid in tree(item.process.pid, parents)}
        for item in reversed(self.processes):
            _stop_group(item.process, grace)
            item.log_file.close()
        for pid in descendants & set(parent_ids()):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.db.dispose()
        drop_postgres_database(self.postgres_server, self.db_name)


def _stop_group(process: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM the process group ``process`` leads (it was started in a session of its own),
    SIGKILL it after ``grace`` seconds."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if process.poll() is not None and not _group_alive(process.pid):
                return
            time.sleep(0.1)


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


def parse_time(value: str) -> datetime:
    """An Airflow API timestamp (ISO 8601, ``Z`` or an offset)."""
    return datetime.fromisoformat(value).astimezone(UTC)
