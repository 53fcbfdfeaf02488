"""Callback efficiency: ``POST /api/v1/tasks/{taskId}/completed`` requests per second against a
baseline endpoint in the same app, process and database that does one equivalent single-row
UPDATE of the task row with no token check. Reports both rates and their ratio (ours /
baseline), measured in the same run, on SQLite and PostgreSQL.

The baseline route exists only here: :func:`create_bench_app` adds it to the production app
(``arco_api.app.create_app``), and ``python -m bench.callbacks serve`` serves that app with
uvicorn exactly as ``arco-api`` does (same settings, logging and uvicorn options). The tasks are
put in RUNNING through the orchestration facts (trigger, dispatch request, started), and the
client sends each a valid scoped task token and the body the reference worker sends.

Run alone: ``PYTHONPATH=. .tools/bin/uv run --frozen python -m bench.callbacks``."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import httpx
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy import update
from starlette.concurrency import run_in_threadpool
from starlette.routing import BaseRoute

from arco_api.app import create_app
from arco_api.fast_path import Endpoint, FastPath
from arco_api.settings import ApiSettings
from arco_envelope import (
    TaskCompletedRequest,
    TaskMetrics,
    TaskOutput,
    WorkerOutcome,
    callback_task_id,
    format_timestamp,
    parse_callback_task_id,
)
from arco_envelope.tokens import mint_task_token
from arco_logs import configure_logging
from arco_orchestration import facts
from arco_orchestration.db import Database
from arco_orchestration.models import Task
from arco_orchestration.planning import PlannedTask
from arco_orchestration.scope import Scope
from arco_orchestration.states import TaskState
from arco_stack.config import TENANT_ID, WORKSPACE_ID, Ports, free_port, stack_environment
from arco_stack.databases import drop_postgres_database, recreate_postgres_database
from bench.support import (
    DEFAULT_POSTGRES,
    PERFORMANCE_DOC,
    REPO_ROOT,
    RESULTS,
    database_name,
    migrate,
    percentile,
    present,
    run_backends,
)

BASELINE_PATH = "/bench/baseline/{task_id}/completed"
OURS_PATH = "/api/v1/tasks/{task_id}/completed"
POSTGRES_DATABASE = "arco_bench_callbacks"  # plus the process id
SCOPE = Scope(TENANT_ID, WORKSPACE_ID)
WORKER_ID = "bench-worker"
# Facts applied per transaction while preparing tasks: few round trips, bounded memory.
PREPARE_BATCH = 250


def create_bench_app(settings: ApiSettings, db: Database) -> FastAPI:
    """The production API plus the baseline route, on the same ``Database``. The baseline is
    served by the same fast path as ``/completed`` (ahead of FastAPI's router, inside the
    same middleware), so the two differ only in what their endpoints do."""
    app = create_app(settings, db)

    @app.post(BASELINE_PATH, include_in_schema=False)
    async def baseline_completed(request: Request, task_id: str) -> JSONResponse:
        """The floor a ``/completed`` could cost: decode the path id, parse the JSON body and
        write the outcome into the task row with one guarded UPDATE (the columns the real
        completion sets on the row), in one transaction on a pool thread as the real route
        does. No token, no run lock, no history event, no counters."""
        body = json.loads(await request.body())
        run_id, task_key = parse_callback_task_id(task_id)
        now = datetime.now(UTC)

        def apply() -> int:
            with db.transaction() as session:
                result = session.execute(
                    update(Task)
                    .where(
                        Task.run_id == run_id,
                        Task.task_key == task_key,
                        Task.state == TaskState.RUNNING.value,
                    )
                    .values(
                        state=TaskState.SUCCEEDED.value,
                        completed_at=now,
                        heartbeat_deadline=None,
                        output=body.get("output"),
                        metrics=body.get("metrics"),
                        row_version=Task.row_version + 1,
                    )
                )
                return int(getattr(result, "rowcount", 0))

        if await run_in_threadpool(apply) != 1:
            return JSONResponse({"error": "not_running"}, status_code=409)
        return JSONResponse(
            {
                "acknowledged": True,
                "finalState": body["outcome"],
                "serverTime": format_timestamp(now),
            }
        )

    async def baseline_fast(request: Request, params: dict[str, str]) -> Response:
        return await baseline_completed(request, params["task_id"])

    (fast,) = [entry for entry in app.user_middleware if cast(object, entry.cls) is FastPath]
    route = app.router.routes[-1]  # the baseline's, declared above
    routes = cast(list[tuple[BaseRoute, Endpoint]], fast.kwargs["routes"])
    fast.kwargs["routes"] = [*routes, (route, baseline_fast)]
    return app


def serve() -> None:
    """``arco-api``'s startup with the bench app: same logging, settings and uvicorn options."""
    configure_logging()
    settings = ApiSettings()
    if problems := settings.problems():
        raise SystemExit(f"refusing to start: {problems}")
    db = Database.from_url(settings.database_url or None)
    uvicorn.run(
        create_bench_app(settings, db),
        host=settings.http_host,
        port=settings.http_port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=10,
    )


# --- preparing RUNNING tasks ------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One ready-made ``/completed`` request: path id, headers and body."""

    task_id: str
    headers: dict[str, str]
    body: bytes


def prepare_running(db: Database, env: dict[str, str], prefix: str, count: int) -> list[Call]:
    """``count`` one-task runs whose task is RUNNING (attempt 1), each with the request its
    worker would send on success. Independent runs, as a busy workspace has them: one run
    per task keeps the run-row lock of ``/completed`` from serialising the requests."""
    config = ApiSettings(
        task_token_secret=env["ARCO_TASK_TOKEN_SECRET"],
        task_token_issuer=env["ARCO_TASK_TOKEN_ISSUER"],
        task_token_audience=env["ARCO_TASK_TOKEN_AUDIENCE"],
        task_token_ttl_secs=int(env["ARCO_TASK_TOKEN_TTL_SECS"]),
    ).task_token_config()
    calls: list[Call] = []
    for start in range(0, count, PREPARE_BATCH):
        run_ids = [
            f"{prefix}-{index:06d}" for index in range(start, min(count, start + PREPARE_BATCH))
        ]
        now = datetime.now(UTC)
        key = "bench.t_0000"
        with db.transaction() as session:
            for run_id in run_ids:
                facts.trigger_run(
                    session,
                    SCOPE,
                    run_id=run_id,
                    plan_id=f"plan-{run_id}",
                    tasks=[PlannedTask(key=key, asset_key=key)],
                    now=now,
                    triggered_by="bench",
                )
        with db.transaction() as session:
            requests = [
                facts.request_dispatch(session, SCOPE, run_id, key, now=now) for run_id in run_ids
            ]
        with db.transaction() as session:
            for run_id in run_ids:
                run = present(facts.lock_run(session, SCOPE, run_id), run_id)
                task = present(facts.get_task(session, SCOPE, run_id, key), f"task of {run_id}")
                facts.apply_started(session, run, task, worker_id=WORKER_ID, now=now)
        for maybe in requests:
            request = present(maybe, "dispatch request")
            task_id = callback_task_id(request.run_id, request.task_key)
            token, _ = mint_task_token(
                config,
                task_id=task_id,
                tenant_id=SCOPE.tenant_id,
                workspace_id=SCOPE.workspace_id,
                run_id=request.run_id,
                attempt=request.attempt,
                attempt_id=request.attempt_id,
            )
            body = TaskCompletedRequest(
                attempt=request.attempt,
                attempt_id=request.attempt_id,
                worker_id=WORKER_ID,
                outcome=WorkerOutcome.SUCCEEDED,
                completed_at=now,
                output=TaskOutput(row_count=0),
                metrics=TaskMetrics(cpu_time_ms=1),
            )
            calls.append(
                Call(
                    task_id=task_id,
                    headers={
                        "Authorization": f"Bearer {token}",
                        "Content-Type": "application/json",
                    },
                    body=body.to_json().encode(),
                )
            )
    return calls


# --- firing -----------------------------------------------------------------------------------


@dataclass
class Fired:
    """What one burst of requests gave."""

    seconds: float
    statuses: Counter[int]
    latencies_ms: list[float]


def fire(base_url: str, path: str, calls: list[Call], clients: int) -> Fired:
    """Send ``calls`` from ``clients`` threads, each with its own keep-alive connection;
    the wall time runs from the first request to the last answer."""
    statuses: Counter[int] = Counter()
    latencies: list[float] = []
    lock = threading.Lock()
    shares = [calls[index::clients] for index in range(clients)]
    sessions = [httpx.Client(base_url=base_url, timeout=60) for _ in range(clients)]
    for session in sessions:  # connect before the clock starts
        session.get("/health").raise_for_status()

    def send(share: list[Call], session: httpx.Client) -> None:
        mine: Counter[int] = Counter()
        timings: list[float] = []
        for call in share:
            sent = time.perf_counter()
            response = session.post(
                path.format(task_id=call.task_id), content=call.body, headers=call.headers
            )
            timings.append((time.perf_counter() - sent) * 1000)
            mine[response.status_code] += 1
        with lock:
            statuses.update(mine)
            latencies.extend(timings)

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        list(pool.map(send, shares, sessions))
    seconds = time.perf_counter() - started
    for session in sessions:
        session.close()
    return Fired(seconds, statuses, latencies)


class BenchApi:
    """The bench app served by uvicorn in a subprocess, on a migrated database."""

    def __init__(self, database_url: str, data_dir: Path) -> None:
        port = free_port()
        self.env = stack_environment(data_dir, ports=Ports(api=port), database_url=database_url)
        self.base_url = f"http://127.0.0.1:{port}"
        self.log_path = data_dir / "api.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.callbacks", "serve"],
            env={
                **os.environ,
                **self.env,
                "ARCO_HTTP_PORT": str(port),
                "PYTHONPATH": str(REPO_ROOT),
            },
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self._wait_ready()

    def _wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"bench api exited:\n{self.log_path.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.base_url}/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise TimeoutError("bench api not ready")

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()


def _rate(fired: list[Fired]) -> dict[str, Any]:
    count = sum(sum(f.statuses.values()) for f in fired)
    seconds = sum(f.seconds for f in fired)
    statuses: Counter[int] = Counter()
    latencies: list[float] = []
    for f in fired:
        statuses.update(f.statuses)
        latencies.extend(f.latencies_ms)
    return {
        "requests": count,
        "requests_per_s": round(count / seconds, 1),
        "p50_ms": round(percentile(latencies, 0.5), 1),
        "p99_ms": round(percentile(latencies, 0.99), 1),
        "non_200": {str(code): n for code, n in statuses.items() if code != 200},
    }


def measure_callbacks(
    backend: str, postgres_server: str, requests: int, clients: int, rounds: int = 2
) -> dict[str, Any]:
    """Both endpoints, ``requests`` each, in ``rounds`` alternating bursts (the order flips
    every round, so drift of the machine's load falls on both)."""
    data_dir = Path(tempfile.mkdtemp(prefix=f"arco-bench-callbacks-{backend}-"))
    database = database_name(POSTGRES_DATABASE)
    url = (
        recreate_postgres_database(postgres_server, database)
        if backend == "postgres"
        else f"sqlite:///{data_dir / 'arco.db'}"
    )
    migrate(url)
    db = Database.from_url(url)
    api = BenchApi(url, data_dir)
    try:
        warmup = max(20, requests // 20)
        prepared = time.perf_counter()
        ours = prepare_running(db, api.env, "ours", requests + warmup)
        baseline = prepare_running(db, api.env, "base", requests + warmup)
        prepare_s = time.perf_counter() - prepared
        # Warm-up: the first requests pay for imports, pool connections and caches.
        fire(api.base_url, OURS_PATH, ours[:warmup], clients)
        fire(api.base_url, BASELINE_PATH, baseline[:warmup], clients)
        ours, baseline = ours[warmup:], baseline[warmup:]
        fired: dict[str, list[Fired]] = {"ours": [], "baseline": []}
        per_round = -(-requests // rounds)
        for number in range(rounds):
            chunk = slice(number * per_round, (number + 1) * per_round)
            order = [("baseline", BASELINE_PATH, baseline), ("ours", OURS_PATH, ours)]
            for name, path, calls in order if number % 2 == 0 else reversed(order):
                fired[name].append(fire(api.base_url, path, calls[chunk], clients))
        result: dict[str, Any] = {
            "clients": clients,
            "ours": _rate(fired["ours"]),
            "baseline": _rate(fired["baseline"]),
            "prepare_s": round(prepare_s, 1),
        }
        result["ratio"] = round(
            result["ours"]["requests_per_s"] / result["baseline"]["requests_per_s"], 3
        )
        return result
    finally:
        api.close()
        db.dispose()
        if backend == "postgres":
            drop_postgres_database(postgres_server, database)


def table(results: dict[str, Any]) -> str:
    rows = [
        "| backend | `/completed` req/s | baseline req/s | ratio (ours / baseline) "
        "| `/completed` p50 / p99 ms | baseline p50 / p99 ms |",
        "|---|---|---|---|---|---|",
    ]
    for backend, figures in results.items():
        ours, base = figures["ours"], figures["baseline"]
        rows.append(
            f"| {backend} | {ours['requests_per_s']} | {base['requests_per_s']} "
            f"| {figures['ratio']} | {ours['p50_ms']} / {ours['p99_ms']} "
            f"| {base['p50_ms']} / {base['p99_ms']} |"
        )
    return "\n".join(rows)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--callback-requests", type=int, default=2000)
    parser.add_argument("--callback-clients", type=int, default=4)


def run(
    backends: list[str],
    args: argparse.Namespace,
    results_dir: Path = RESULTS,
    doc: Path = PERFORMANCE_DOC,
) -> dict[str, Any]:
    """Measure each backend; write ``callbacks.json`` in ``results_dir`` and the section of
    ``doc``."""
    return run_backends(
        "callbacks",
        backends,
        lambda backend: measure_callbacks(
            backend, args.postgres, args.callback_requests, args.callback_clients
        ),
        render=table,
        detail=(
            f"{args.callback_requests} requests per endpoint from "
            f"{args.callback_clients} client threads"
        ),
        results_dir=results_dir,
        doc=doc,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("mode", nargs="?", choices=["measure", "serve"], default="measure")
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES)
    add_arguments(parser)
    args = parser.parse_args(argv)
    if args.mode == "serve":
        serve()
        return
    run(args.backends.split(","), args)


if __name__ == "__main__":
    main()
