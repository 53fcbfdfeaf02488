"""Console cost: server time of the console's pages with 100,000 runs in the workspace, on
SQLite and PostgreSQL.

The runs (mostly SUCCEEDED, some FAILED, CANCELLED and RUNNING, one in ten with a run key) are
loaded with one ``INSERT ... SELECT`` over ``generate_series`` (PostgreSQL) or a recursive CTE
(SQLite); one more run of 500 tasks (ten layers of 50, each task depending on two of the
layer before, each with a dispatched, running and succeeded event) is inserted row by row.
The API application runs in this process behind a timing wrapper, the outermost ASGI layer,
which measures each request from its arrival to the last byte of the answer: server time,
without a network or a browser. Each page is asked 5 times untimed, then timed
``--console-repeats`` times; the figures are p50 and p95 in milliseconds.

Run alone: ``PYTHONPATH=. .tools/bin/uv run --frozen python -m bench.console``
(``--console-runs 10000`` scales it down)."""

from __future__ import annotations

import argparse
import re
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
from fastapi.testclient import TestClient
from sqlalchemy import bindparam, insert, text
from sqlalchemy.engine import Connection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from arco_api.app import create_app
from arco_api.settings import ApiSettings
from arco_orchestration.db import Database
from arco_orchestration.models import Task, TaskDependency, TaskEvent, UTCDateTime
from arco_stack.databases import drop_postgres_database, recreate_postgres_database
from bench.support import (
    DEFAULT_POSTGRES,
    PERFORMANCE_DOC,
    RESULTS,
    SERIES_SQL,
    database_name,
    migrate,
    percentile,
    run_backends,
)

TENANT, WORKSPACE = "bench", "console"
SECRET = "bench-console-secret-0123456789abcdef"  # noqa: S105 - a throwaway bench key
BIG_RUN = "R-BIG-500"
LAYERS, PER_LAYER = 10, 50
START = datetime(2026, 1, 1, tzinfo=UTC)

_PAD = {"postgresql": "lpad((i)::text, 8, '0')", "sqlite": "printf('%08d', i)"}
_SECONDS = {
    "postgresql": "CAST(:at AS timestamptz) + i * interval '1 second'",
    # SQLAlchemy's text form of a SQLite datetime: microseconds always written.
    "sqlite": "strftime('%Y-%m-%d %H:%M:%f', :at, '+' || i || ' seconds') || '000'",
}
_STATE = (
    "CASE WHEN i % 100 < 90 THEN 'SUCCEEDED' WHEN i % 100 < 97 THEN 'FAILED' "
    "WHEN i % 100 < 99 THEN 'CANCELLED' ELSE 'RUNNING' END"
)
_RUNS_SQL = """
INSERT INTO runs (run_id, tenant_id, workspace_id, plan_id, state, run_key, labels,
    triggered_by, cancel_requested, tasks_total, tasks_completed, tasks_succeeded, tasks_failed,
    tasks_skipped, tasks_cancelled, triggered_at, completed_at, row_version)
SELECT 'R' || {pad}, :tenant, :workspace, 'P' || {pad}, {state},
    CASE WHEN i % 10 = 0 THEN 'nightly-' || {pad} END, '{{}}', 'bench', 1 = 0, 4, 4, 3, 1, 0, 0,
    {at}, {at}, 1
FROM ({series}) AS series
"""
_RUN_KEYS_SQL = """
INSERT INTO run_keys (tenant_id, workspace_id, run_key, run_id, plan_id, fingerprint, created_at)
SELECT :tenant, :workspace, 'nightly-' || {pad}, 'R' || {pad}, 'P' || {pad}, 'f', {at}
FROM ({series}) AS series WHERE i % 10 = 0
"""


def load_runs(db: Database, runs: int) -> float:
    """Insert ``runs`` runs (and the run keys of one in ten) in one transaction; seconds."""
    dialect = db.engine.dialect.name
    parts = {
        "series": SERIES_SQL[dialect],
        "pad": _PAD[dialect],
        "state": _STATE,
        "at": _SECONDS[dialect],
    }
    params = {"tenant": TENANT, "workspace": WORKSPACE, "lo": 1, "hi": runs}
    # SQLite's datetime() wants the stored text form; PostgreSQL a timestamptz.
    at: Any = START.strftime("%Y-%m-%d %H:%M:%S") if dialect == "sqlite" else START
    started = time.perf_counter()
    with db.engine.begin() as connection:
        connection.execute(text(_RUNS_SQL.format(**parts)), {**params, "at": at})
        connection.execute(text(_RUN_KEYS_SQL.format(**parts)), {**params, "at": at})
    return time.perf_counter() - started


def load_big_run(db: Database) -> None:
    """The 500-task run the run page is measured on, newest of all, every task succeeded."""
    at = START + timedelta(days=30)
    keys = [
        [f"bench.layer{layer}_task{n:02d}" for n in range(PER_LAYER)] for layer in range(LAYERS)
    ]
    scope = {"tenant_id": TENANT, "workspace_id": WORKSPACE, "run_id": BIG_RUN}
    tasks, edges, events = [], [], []
    for layer, row in enumerate(keys):
        for n, key in enumerate(row):
            begin = at + timedelta(seconds=layer * 10 + n % 7)
            end = begin + timedelta(seconds=5 + n % 4)
            tasks.append(
                {
                    **scope,
                    "task_key": key,
                    "state": "SUCCEEDED",
                    "attempt": 1,
                    "attempt_id": f"a-{layer}-{n}",
                    "asset_key": key,
                    "deps_total": 0 if layer == 0 else 2,
                    "deps_satisfied_count": 0 if layer == 0 else 2,
                    "started_at": begin,
                    "completed_at": end,
                }
            )
            for state, moment in (("DISPATCHED", begin), ("RUNNING", begin), ("SUCCEEDED", end)):
                events.append(
                    {
                        **scope,
                        "task_key": key,
                        "attempt": 1,
                        "kind": state.lower(),
                        "to_state": state,
                        "at": moment,
                    }
                )
            if layer:
                for upstream in {keys[layer - 1][n], keys[layer - 1][(n * 7 + 3) % PER_LAYER]}:
                    edges.append(
                        {
                            **scope,
                            "upstream_key": upstream,
                            "downstream_key": key,
                            "satisfied": True,
                            "resolution": "SUCCESS",
                        }
                    )
    with db.engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO runs (run_id, tenant_id, workspace_id, plan_id, state, labels, "
                "triggered_by, cancel_requested, tasks_total, tasks_completed, tasks_succeeded, "
                "tasks_failed, tasks_skipped, tasks_cancelled, triggered_at, completed_at, "
                "row_version) VALUES (:run, :tenant, :workspace, 'P-BIG', 'SUCCEEDED', '{}', "
                "'bench', :no, :n, :n, :n, 0, 0, 0, :at, :done, 1)"
            ).bindparams(
                bindparam("at", at, type_=UTCDateTime()),
                bindparam("done", at + timedelta(minutes=3), type_=UTCDateTime()),
            ),
            {
                "run": BIG_RUN,
                "tenant": TENANT,
                "workspace": WORKSPACE,
                "no": False,
                "n": LAYERS * PER_LAYER,
            },
        )
        connection.execute(insert(Task), tasks)
        connection.execute(insert(TaskDependency), edges)
        connection.execute(insert(TaskEvent), events)


def analyse(db: Database) -> None:
    """PostgreSQL: ``VACUUM ANALYZE`` after the bulk load, as autovacuum soon would."""
    if db.engine.dialect.name != "postgresql":
        return
    with db.engine.connect() as connection:
        auto: Connection = connection.execution_options(isolation_level="AUTOCOMMIT")
        for table in ("runs", "run_keys", "tasks", "task_dependencies", "task_events"):
            auto.execute(text(f"VACUUM ANALYZE {table}"))


class ServerTimer:
    """The outermost ASGI layer: the time from a request's arrival to its last byte."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.last_ms = 0.0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()

        async def timed_send(message: Message) -> None:
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                self.last_ms = (time.perf_counter() - started) * 1000

        await self.app(scope, receive, timed_send)


def token() -> str:
    exp = int((datetime.now(UTC) + timedelta(hours=2)).timestamp())
    claims = {"tenant": TENANT, "workspace": WORKSPACE, "sub": "bench", "exp": exp}
    return jwt.encode(claims, SECRET, algorithm="HS256")


def _signed_in(client: TestClient) -> None:
    form = client.get("/ui/login")
    nonce = re.search(r'name="csrf" value="([^"]+)"', form.text)
    if nonce is None:
        raise RuntimeError("bench setup: the login form has no CSRF value")
    answer = client.post(
        "/ui/login",
        data={"token": token(), "csrf": nonce.group(1), "next": "/ui/runs"},
        follow_redirects=False,
    )
    if answer.status_code != 303:
        raise RuntimeError(f"bench setup: login answered {answer.status_code}")


def _time_page(client: TestClient, timer: ServerTimer, path: str, repeats: int) -> dict[str, Any]:
    samples = []
    size = 0
    for index in range(repeats + 5):
        response = client.get(path)
        if response.status_code != 200:
            raise RuntimeError(f"{path} answered {response.status_code}: {response.text[:200]}")
        size = len(response.content)
        if index >= 5:
            samples.append(timer.last_ms)
    return {
        "p50_ms": round(percentile(samples, 0.5), 1),
        "p95_ms": round(percentile(samples, 0.95), 1),
        "kb": round(size / 1024, 1),
    }


def pages(client: TestClient) -> dict[str, str]:
    """The measured pages: the runs page in its shapes, and the 500-task run page."""
    first = client.get("/ui/runs").text
    older = re.search(r'rel="next" href="([^"]+)"', first)
    if older is None:
        raise RuntimeError("bench setup: the runs page has no next page")
    return {
        "runs, newest page": "/ui/runs",
        "runs, live refresh": "/ui/runs?fragment=live",
        "runs, second page": older.group(1).replace("&amp;", "&"),
        "runs, state FAILED": "/ui/runs?state=FAILED",
        "runs, state RUNNING": "/ui/runs?state=RUNNING",
        "runs, run-id prefix": "/ui/runs?q=R0005",
        "runs, run key": "/ui/runs?q=nightly-00050000",
        "run, 500 tasks": f"/ui/runs/{BIG_RUN}",
        "run, 500 tasks, live refresh": f"/ui/runs/{BIG_RUN}?fragment=live",
    }


def measure(backend: str, args: argparse.Namespace) -> dict[str, Any]:
    pg_name = database_name("arco_bench_console")
    if backend == "postgres":
        url = recreate_postgres_database(args.postgres, pg_name)
    else:
        url = f"sqlite:///{Path(tempfile.mkdtemp(prefix='arco-bench-console-')) / 'console.db'}"
    try:
        migrate(url)
        db = Database.from_url(url)
        load_s = load_runs(db, args.console_runs)
        load_big_run(db)
        analyse(db)
        settings = ApiSettings(environment="staging", debug=False, jwt_secret=SECRET)
        timer = ServerTimer(create_app(settings, db))
        with TestClient(timer, base_url="http://testserver") as client:
            _signed_in(client)
            figures: dict[str, Any] = {
                name: _time_page(client, timer, path, args.console_repeats)
                for name, path in pages(client).items()
            }
        db.engine.dispose()
        return {"runs": args.console_runs, "load_s": round(load_s, 1), "pages": figures}
    finally:
        if backend == "postgres":
            drop_postgres_database(args.postgres, pg_name)


def render(backends: dict[str, Any]) -> str:
    names = list(next(iter(backends.values()))["pages"])
    header = "| Page | " + " | ".join(f"{b} p50 / p95 ms" for b in backends) + " | size KB |"
    lines = [header, "|---|" + "---|" * len(backends) + "---|"]
    for name in names:
        cells = [
            f"{figures['pages'][name]['p50_ms']} / {figures['pages'][name]['p95_ms']}"
            for figures in backends.values()
        ]
        size = next(iter(backends.values()))["pages"][name]["kb"]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {size} |")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--console-runs", type=int, default=100_000)
    parser.add_argument("--console-repeats", type=int, default=40)


def run(
    backends: list[str], args: argparse.Namespace, results_dir: Path, doc: Path
) -> dict[str, Any]:
    measure_one: Callable[[str], dict[str, Any]] = lambda backend: measure(backend, args)  # noqa: E731
    return run_backends(
        "console",
        backends,
        measure_one,
        render=render,
        detail=(
            f"{args.console_runs:,} runs in the workspace plus one run of 500 tasks; server time "
            "of each page in process (the outermost ASGI layer, no network), "
            f"{args.console_repeats} requests after 5 untimed"
        ),
        results_dir=results_dir,
        doc=doc,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES)
    add_arguments(parser)
    args = parser.parse_args()
    run(args.backends.split(","), args, RESULTS, PERFORMANCE_DOC)


if __name__ == "__main__":
    main()
