"""Cost as work grows (issue 14): one wide run of 10,000 no-op tasks against one of 1,000, the
run API with 1,000,000 runs in the database, and each service's peak RSS at both sizes.

Wide runs: for each size a fresh stack (``bench.run.BenchStack``: the real processes, one
worker process) deploys a manifest of that many independent assets (timed), then one run of
every asset is triggered; the figures are the trigger request's time (planning and the insert
of every task, as the client sees it), the time from the run's ``triggered_at`` to the first
task's ``dispatched_at`` and ``started_at``, and tasks per second from sending the trigger to
the run being terminal. The services' peak RSS (``VmHWM``) is read at the end, so each size has
peaks of its own.

Run API: a database of its own gets ``--scale-runs`` runs (``bench.console.load_runs``: one
``INSERT ... SELECT``; mostly SUCCEEDED, 7% FAILED, 2% CANCELLED, 1% RUNNING) and one run of
500 tasks with their history (``bench.console.load_big_run``), then ``VACUUM ANALYZE``. The
API application runs in this process behind the timing ASGI layer of ``bench.console``: server
time from a request's arrival to its last byte, no network (the client's round trip through
the in-process transport is recorded too). Each request is asked 5 times untimed, then timed
``--scale-repeats`` times: p50 and p99 in milliseconds.

Run alone: ``PYTHONPATH=. .tools/bin/uv run --frozen python -m bench.scale``
(``--scale-sizes 200,2000 --scale-runs 100000`` sizes it down)."""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from arco_api.app import create_app
from arco_api.settings import ApiSettings
from arco_orchestration import queries
from arco_orchestration.db import Database
from arco_orchestration.models import Run, Task, TaskEvent
from arco_stack.databases import drop_postgres_database, recreate_postgres_database
from bench import console
from bench.bench_worker import MAX_TASKS, TASK_KEYS
from bench.run import BenchStack
from bench.support import (
    DEFAULT_POSTGRES,
    PERFORMANCE_DOC,
    RESULTS,
    database_name,
    migrate,
    percentile,
    present,
    run_backends,
)

POLL_S = 0.2


def _seconds(later: datetime | None, earlier: datetime | None) -> float | None:
    if later is None or earlier is None:
        return None
    return round((later - earlier).total_seconds(), 2)


def _wait_terminal(bench: BenchStack, run_id: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while True:
        with bench.db.transaction() as session:
            state = session.scalar(select(Run.state).where(Run.run_id == run_id))
        if state in ("SUCCEEDED", "FAILED", "CANCELLED"):
            return str(state)
        if time.monotonic() > deadline:
            raise TimeoutError(f"run {run_id} still {state} after {timeout:.0f}s")
        time.sleep(POLL_S)


def wide_run(backend: str, tasks: int, postgres: str) -> dict[str, Any]:
    """One run of ``tasks`` no-op tasks on a fresh stack that deployed ``tasks`` assets."""
    if tasks > MAX_TASKS:
        raise ValueError(f"the bench worker has {MAX_TASKS} task keys, not {tasks}")
    data_dir = Path(tempfile.mkdtemp(prefix=f"arco-bench-scale-{backend}-"))
    bench = BenchStack(backend, data_dir, postgres, assets=tasks)
    try:
        started = time.perf_counter()
        run_id = bench.client.trigger_run({"selection": list(TASK_KEYS[:tasks])})["runId"]
        trigger_s = time.perf_counter() - started
        state = _wait_terminal(bench, run_id, timeout=max(600.0, tasks * 0.5))
        total_s = time.perf_counter() - started
        with bench.db.transaction() as session:
            triggered_at = session.scalar(select(Run.triggered_at).where(Run.run_id == run_id))
            first_dispatched, first_started, last_completed = session.execute(
                select(
                    func.min(Task.dispatched_at),
                    func.min(Task.started_at),
                    func.max(Task.completed_at),
                ).where(Task.run_id == run_id)
            ).one()
            # Tasks the sweeper re-sent because they waited in DISPATCHED longer than its
            # threshold (10 minutes): the tail of a run larger than the rate can clear in time.
            redispatched = session.scalar(
                select(func.count())
                .select_from(TaskEvent)
                .where(TaskEvent.run_id == run_id, TaskEvent.kind == "redispatched")
            )
        return {
            "tasks": tasks,
            "state": state,
            "deploy_s": round(bench.deploy_s, 2),
            "trigger_request_s": round(trigger_s, 2),
            "to_first_dispatch_s": _seconds(first_dispatched, triggered_at),
            "to_first_started_s": _seconds(first_started, triggered_at),
            "triggered_to_last_completed_s": _seconds(last_completed, triggered_at),
            "total_s": round(total_s, 1),
            "tasks_per_s": round(tasks / total_s, 1),
            "redispatched": redispatched,
            "peak_rss_mb": bench.peak_rss_mb(),
        }
    finally:
        bench.close()  # drops the stack's database too


def _time_get(
    client: TestClient, timer: console.ServerTimer, path: str, repeats: int
) -> dict[str, Any]:
    server, round_trip = [], []
    size = 0
    for index in range(repeats + 5):
        started = time.perf_counter()
        response = client.get(path)
        elapsed = (time.perf_counter() - started) * 1000
        if response.status_code != 200:
            raise RuntimeError(f"{path} answered {response.status_code}: {response.text[:200]}")
        size = len(response.content)
        if index >= 5:
            server.append(timer.last_ms)
            round_trip.append(elapsed)
    return {
        "p50_ms": round(percentile(server, 0.5), 1),
        "p99_ms": round(percentile(server, 0.99), 1),
        "client_p50_ms": round(percentile(round_trip, 0.5), 1),
        "kb": round(size / 1024, 1),
    }


def api_requests(client: TestClient, db: Database, runs: int) -> dict[str, str]:
    """The measured requests: the runs list in its shapes, a run's detail and its tasks."""
    base = f"/api/v1/workspaces/{console.WORKSPACE}/runs"
    middle = f"R{max(1, runs // 2):08d}"
    with db.transaction() as session:
        # The page that follows the run in the middle of the table, as its cursor names it.
        deep = queries.encode_cursor(present(session.get(Run, middle), middle))
    # A later page: the 51st of 20 runs (or the last there is), reached by following cursors.
    cursor, pages = "", 1
    while pages < 51:
        answer = client.get(f"{base}?cursor={cursor}" if cursor else base).json()
        if "nextCursor" not in answer:
            break
        cursor, pages = answer["nextCursor"], pages + 1
    return {
        "runs, first page": base,
        "runs, 51st page" if pages == 51 else f"runs, page {pages}": f"{base}?cursor={cursor}",
        f"runs, page after run {max(1, runs // 2):,}": f"{base}?cursor={deep}",
        "runs, state FAILED": f"{base}?state=FAILED",
        "runs, state RUNNING": f"{base}?state=RUNNING",
        # A run in the middle of the table (its task rows are not loaded: the counters are).
        "run detail, loaded run": f"{base}/{middle}",
        "run detail, 500 tasks": f"{base}/{console.BIG_RUN}",
        "run tasks, 500 tasks": f"{base}/{console.BIG_RUN}/tasks",
    }


def run_api(backend: str, args: argparse.Namespace) -> dict[str, Any]:
    pg_name = database_name("arco_bench_scale")
    if backend == "postgres":
        url = recreate_postgres_database(args.postgres, pg_name)
    else:
        url = f"sqlite:///{Path(tempfile.mkdtemp(prefix='arco-bench-scale-')) / 'scale.db'}"
    try:
        migrate(url)
        db = Database.from_url(url)
        started = time.perf_counter()
        console.load_runs(db, args.scale_runs)
        console.load_big_run(db)
        console.analyse(db)
        load_s = time.perf_counter() - started
        settings = ApiSettings(environment="staging", debug=False, jwt_secret=console.SECRET)
        timer = console.ServerTimer(create_app(settings, db))
        headers = {"Authorization": f"Bearer {console.token()}"}
        with TestClient(timer, base_url="http://testserver", headers=headers) as client:
            figures = {
                name: _time_get(client, timer, path, args.scale_repeats)
                for name, path in api_requests(client, db, args.scale_runs).items()
            }
        db.engine.dispose()
        return {"runs": args.scale_runs, "load_s": round(load_s, 1), "requests": figures}
    finally:
        if backend == "postgres":
            drop_postgres_database(args.postgres, pg_name)


def measure(backend: str, args: argparse.Namespace) -> dict[str, Any]:
    sizes = [int(size) for size in args.scale_sizes.split(",")]
    wide = {str(size): wide_run(backend, size, args.postgres) for size in sizes}
    small, large = wide[str(sizes[0])], wide[str(sizes[-1])]
    figures: dict[str, Any] = {
        "wide_runs": wide,
        "rate_ratio": round(large["tasks_per_s"] / small["tasks_per_s"], 2),
    }
    if args.scale_runs:
        figures["api"] = run_api(backend, args)
    return figures


def _wide_table(backends: dict[str, Any]) -> list[str]:
    lines = [
        "| backend | tasks | deploy s | trigger request s | to first dispatch s "
        "| to first /started s | tasks/s | rate vs smallest "
        "| peak RSS MB (api, dispatcher, sweeper, worker) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for backend, figures in backends.items():
        runs = figures["wide_runs"]
        first = next(iter(runs.values()))
        for size, run in runs.items():
            rss = run["peak_rss_mb"]
            lines.append(
                f"| {backend} | {int(size):,} | {run['deploy_s']} | {run['trigger_request_s']} "
                f"| {run['to_first_dispatch_s']} | {run['to_first_started_s']} "
                f"| {run['tasks_per_s']} | {run['tasks_per_s'] / first['tasks_per_s']:.2f} "
                f"| {rss.get('api')}, {rss.get('dispatcher')}, {rss.get('sweeper')}, "
                f"{rss.get('worker')} |"
            )
    return lines


def _api_table(backends: dict[str, Any]) -> list[str]:
    measured = {backend: f["api"] for backend, f in backends.items() if "api" in f}
    if not measured:
        return []
    names = list(next(iter(measured.values()))["requests"])
    lines = [
        "| request | "
        + " | ".join(
            f"{backend} p50 / p99 ms ({figures['runs']:,} runs)"
            for backend, figures in measured.items()
        )
        + " | size KB |",
        "|---|" + "---|" * len(measured) + "---|",
    ]
    for name in names:
        cells = [
            f"{figures['requests'][name]['p50_ms']} / {figures['requests'][name]['p99_ms']}"
            for figures in measured.values()
        ]
        size = next(iter(measured.values()))["requests"][name]["kb"]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {size} |")
    return lines


def render(backends: dict[str, Any]) -> str:
    api = _api_table(backends)
    return "\n".join(_wide_table(backends) + (["", *api] if api else []))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--scale-backends",
        default="postgres",
        help="backends of this part (PostgreSQL only by default: a long part)",
    )
    parser.add_argument(
        "--scale-sizes",
        default="1000,10000",
        help="task counts of the wide runs, smallest first (at most 10,000)",
    )
    parser.add_argument(
        "--scale-runs", type=int, default=1_000_000, help="runs loaded for the API (0: skip)"
    )
    parser.add_argument("--scale-repeats", type=int, default=40)


def run(
    backends: list[str], args: argparse.Namespace, results_dir: Path, doc: Path
) -> dict[str, Any]:
    measure_one: Callable[[str], dict[str, Any]] = lambda backend: measure(backend, args)  # noqa: E731
    return run_backends(
        "scale",
        backends,
        measure_one,
        render=render,
        detail=(
            f"wide runs of {args.scale_sizes.replace(',', ' and ')} no-op tasks, each on a fresh "
            f"stack with one worker process; the run API with {args.scale_runs:,} runs loaded, "
            "server time in process (the outermost ASGI layer, no network), "
            f"{args.scale_repeats} requests after 5 untimed"
        ),
        results_dir=results_dir,
        doc=doc,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES)
    add_arguments(parser)
    args = parser.parse_args()
    run(args.scale_backends.split(","), args, RESULTS, PERFORMANCE_DOC)


if __name__ == "__main__":
    main()
