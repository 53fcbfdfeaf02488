"""Sweep cost: the wall time of one sweeper cycle (``Sweeper.run``, in-process, as the sweeper's
tests call it) with 10,000 and with 1,000,000 terminal tasks in the table plus the same 100
stuck candidates, and the ratio of the two. On PostgreSQL and SQLite.

The terminal rows (runs of 100 tasks, mostly SUCCEEDED, some FAILED and SKIPPED, one run in
20 cancelled) are loaded with one ``INSERT ... SELECT`` over ``generate_series`` (PostgreSQL)
or a recursive CTE (SQLite), into a database of the benchmark's own. The 100 candidates are 25
of each rule, each in a run of its own, put in place through the orchestration facts:

- R1: READY for an hour (gets its dispatch request),
- R2: DISPATCHED and enqueued an hour ago (re-sent through the memory provider),
- R3: RETRY_WAIT with the retry due (gets the next attempt's dispatch request),
- R4: RUNNING with its heartbeat deadline an hour past (failed by the reaper).

Before every timed cycle the candidates' runs are deleted (with everything that cascades from
them) and created again, so each repetition repairs the same 100 tasks. The two sizes live in
two databases and the repetitions alternate between them, so a change in the machine's load
falls on both; the figure is the median of the repetitions, after one untimed warm-up cycle
each. A cycle without candidates (the scans alone) is timed the same way.

Run alone: ``PYTHONPATH=. .tools/bin/uv run --frozen python -m bench.sweep``
(``--sweep-rows 100000`` scales the large size down)."""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import structlog
from sqlalchemy import bindparam, delete, text
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from arco_dispatch.memory_provider import MemoryProvider
from arco_orchestration import facts
from arco_orchestration.db import Database
from arco_orchestration.models import Run, Task, UTCDateTime
from arco_orchestration.planning import PlannedTask
from arco_stack.databases import drop_postgres_database, recreate_postgres_database
from arco_sweeper.app import build_sweeper
from arco_sweeper.rules import SweepSummary
from arco_sweeper.settings import SweeperSettings
from arco_testkit.dispatching import settings_values
from arco_testkit.values import SCOPE
from bench.support import (
    DEFAULT_POSTGRES,
    PERFORMANCE_DOC,
    RESULTS,
    SERIES_SQL,
    database_name,
    median,
    migrate,
    present,
    run_backends,
)

POSTGRES_DATABASE = "arco_bench_sweep"
TASKS_PER_RUN = 100
CANDIDATES_PER_RULE = 25
RULES = ("R1", "R2", "R3", "R4")
KEY = "bench.stuck"
HOUR = timedelta(hours=1)
# When every terminal row ran; far enough back that no scan window reaches it.
LONG_AGO = datetime(2026, 1, 1, tzinfo=UTC)

_PAD = {"postgresql": "lpad(({x})::text, 8, '0')", "sqlite": "printf('%08d', {x})"}

_RUNS_SQL = """
INSERT INTO runs (run_id, tenant_id, workspace_id, plan_id, state, labels, triggered_by,
    cancel_requested, cancel_reason, cancel_requested_at, tasks_total, tasks_completed,
    tasks_succeeded, tasks_failed, tasks_skipped, tasks_cancelled, triggered_at, completed_at,
    row_version)
SELECT 'done-' || {pad_i}, :tenant, :workspace, 'plan-' || {pad_i},
    CASE WHEN i % 20 = 0 THEN 'CANCELLED' ELSE 'FAILED' END, '{{}}', 'bench',
    i % 20 = 0, CASE WHEN i % 20 = 0 THEN 'bench' END, CASE WHEN i % 20 = 0 THEN :at END,
    :per_run, :per_run,
    CASE WHEN i % 20 = 0 THEN 0 ELSE :per_run - 4 END,
    CASE WHEN i % 20 = 0 THEN 0 ELSE 2 END,
    CASE WHEN i % 20 = 0 THEN 0 ELSE 2 END,
    CASE WHEN i % 20 = 0 THEN :per_run ELSE 0 END,
    :at, :at, 3
FROM ({series}) AS series
"""

_TASKS_SQL = """
INSERT INTO tasks (run_id, task_key, tenant_id, workspace_id, state, attempt, attempt_id,
    asset_key, deps_total, deps_satisfied_count, max_attempts, heartbeat_timeout_sec,
    requires_visible_output, ready_at, dispatched_at, started_at, completed_at,
    execution_lineage_ref, row_version)
SELECT 'done-' || {pad_run}, 'bench.t_' || {pad_key}, :tenant, :workspace,
    CASE WHEN (i / :per_run) % 20 = 0 THEN 'CANCELLED'
         WHEN i % 50 = 1 THEN 'FAILED' WHEN i % 50 = 2 THEN 'SKIPPED'
         ELSE 'SUCCEEDED' END,
    1, 'att-' || {pad_i}, 'bench.t_' || {pad_key}, 0, 0, 3, 300, 1 = 1,
    :at, :at, :at, :at, '{{"runId":"done"}}', 4
FROM ({series}) AS series
"""


def _insert_sql(template: str, dialect: str) -> str:
    pad = _PAD[dialect]
    return template.format(
        series=SERIES_SQL[dialect],
        pad_i=pad.format(x="i"),
        pad_run=pad.format(x="i / :per_run"),
        pad_key=pad.format(x="i % :per_run"),
    )


_INDEX_DEFINITIONS = {
    "postgresql": "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = :table "
    "AND indexname NOT IN (SELECT conname FROM pg_constraint)",
    "sqlite": "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = :table "
    "AND sql IS NOT NULL",
}


def load_terminal(db: Database, first: int, last: int) -> float:
    """Insert terminal tasks ``first`` to ``last`` (exclusive; whole runs of
    ``TASKS_PER_RUN``) and their runs in one transaction; the seconds it took.

    The secondary indexes of ``tasks`` are dropped for the load and rebuilt from their own
    definitions after it: building an index once is many times faster than updating six of
    them row by row (minutes for a million rows on a small machine)."""
    dialect = db.engine.dialect.name
    params = {"tenant": SCOPE.tenant_id, "workspace": SCOPE.workspace_id, "per_run": TASKS_PER_RUN}
    at = bindparam("at", LONG_AGO, type_=UTCDateTime())
    started = time.perf_counter()
    with db.engine.begin() as connection:
        indexes = list(connection.execute(text(_INDEX_DEFINITIONS[dialect]), {"table": "tasks"}))
        for name, _ in indexes:
            connection.execute(text(f'DROP INDEX "{name}"'))
        runs = text(_insert_sql(_RUNS_SQL, dialect)).bindparams(at)
        connection.execute(
            runs, {**params, "lo": first // TASKS_PER_RUN, "hi": last // TASKS_PER_RUN - 1}
        )
        tasks = text(_insert_sql(_TASKS_SQL, dialect)).bindparams(at)
        connection.execute(tasks, {**params, "lo": first, "hi": last - 1})
        for _, definition in indexes:
            connection.execute(text(definition))
    _analyse(db)
    return time.perf_counter() - started


def _analyse(db: Database) -> None:
    """PostgreSQL: ``VACUUM ANALYZE``, what autovacuum does soon after a bulk load (statistics,
    and the visibility map that index-only scans need). SQLite: nothing, as the stack never
    runs ``ANALYZE`` there; the planner goes by the schema alone."""
    if db.engine.dialect.name != "postgresql":
        return
    with db.engine.connect() as connection:
        auto: Connection = connection.execution_options(isolation_level="AUTOCOMMIT")
        auto.execute(text("VACUUM ANALYZE runs"))
        auto.execute(text("VACUUM ANALYZE tasks"))


def candidate_runs() -> dict[str, list[str]]:
    return {
        rule: [f"stuck-{rule.lower()}-{n:03d}" for n in range(CANDIDATES_PER_RULE)]
        for rule in RULES
    }


def plant_candidates(db: Database, now: datetime) -> None:
    """Delete the candidates' runs (cascading to tasks, outbox rows and history) and create
    them again, each stuck for an hour by the rule of its name."""
    runs = candidate_runs()
    every = [run_id for ids in runs.values() for run_id in ids]
    with db.transaction() as session:
        session.execute(delete(Run).where(Run.run_id.in_(every)))
    earlier = now - 2 * HOUR
    with db.transaction() as session:
        for rule, ids in runs.items():
            triggered = now - HOUR if rule == "R1" else earlier
            for run_id in ids:
                facts.trigger_run(
                    session,
                    SCOPE,
                    run_id=run_id,
                    plan_id=f"plan-{run_id}",
                    tasks=[PlannedTask(key=KEY, asset_key=KEY)],
                    now=triggered,
                    triggered_by="bench",
                )
    with db.transaction() as session:
        for run_id in runs["R2"]:
            request = present(
                facts.request_dispatch(session, SCOPE, run_id, KEY, now=now - HOUR), run_id
            )
            facts.record_enqueued(
                session,
                SCOPE,
                request.dispatch_id,
                cloud_task_id=f"bench-{run_id}",
                now=now - HOUR,
                envelope_keys=[],
                push_delivery=False,
            )
        for run_id in runs["R3"]:
            run, task = _started(session, run_id, at=earlier)
            failure = facts.Completion(outcome="FAILED", worker_id="bench", error_message="boom")
            facts.apply_completion(session, run, task, failure, now=now - HOUR)
        for run_id in runs["R4"]:
            _started(session, run_id, at=now - HOUR)


def _started(session: Session, run_id: str, *, at: datetime) -> tuple[Run, Task]:
    facts.request_dispatch(session, SCOPE, run_id, KEY, now=at)
    run = present(facts.lock_run(session, SCOPE, run_id), run_id)
    task = present(facts.get_task(session, SCOPE, run_id, KEY), f"task of {run_id}")
    facts.apply_started(session, run, task, worker_id="bench", now=at)
    return run, task


def remove_candidates(db: Database) -> None:
    every = [run_id for ids in candidate_runs().values() for run_id in ids]
    with db.transaction() as session:
        session.execute(delete(Run).where(Run.run_id.in_(every)))


def _sweep_once(db: Database) -> tuple[float, SweepSummary]:
    # A fresh memory provider per cycle: the re-sends' deterministic names are then new to it,
    # so every repetition enqueues instead of finding duplicates.
    settings = SweeperSettings(**settings_values())
    sweeper = build_sweeper(settings, db, provider=MemoryProvider()).sweeper
    started = time.perf_counter()
    summary = sweeper.run()
    return time.perf_counter() - started, summary


def sweep_with_candidates(db: Database) -> float:
    """Plant the 100 candidates, then time one cycle; checks it repaired exactly them."""
    plant_candidates(db, datetime.now(UTC))
    seconds, summary = _sweep_once(db)
    rules = Counter(repair.rule for repair in summary.repairs)
    if summary.errors or dict(rules) != dict.fromkeys(RULES, CANDIDATES_PER_RULE):
        raise RuntimeError(f"the sweep did other work than planned: {rules} {summary.errors}")
    return seconds


def _database(backend: str, postgres_server: str, name: str, data_dir: Path) -> Database:
    url = (
        recreate_postgres_database(postgres_server, name)
        if backend == "postgres"
        else f"sqlite:///{data_dir / f'{name}.db'}"
    )
    migrate(url)
    return Database.from_url(url)


def measure_sweep(
    backend: str, postgres_server: str, small: int, large: int, repetitions: int
) -> dict[str, Any]:
    """One database with ``small`` terminal tasks and one with ``large``; the repetitions
    alternate between them, so a change in the machine's load falls on both sizes alike."""
    # The sweeper logs every repair at INFO; 100 lines per cycle would drown the figures.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    data_dir = Path(tempfile.mkdtemp(prefix=f"arco-bench-sweep-{backend}-"))
    names = {size: database_name(f"{POSTGRES_DATABASE}_{size}") for size in (small, large)}
    databases: dict[int, Database] = {}
    result: dict[str, Any] = {
        "small": small,
        "large": large,
        "repetitions": repetitions,
        "candidates": len(RULES) * CANDIDATES_PER_RULE,
    }
    try:
        for size, name in names.items():
            databases[size] = _database(backend, postgres_server, name, data_dir)
            load_s = load_terminal(databases[size], 0, size)
            result[str(size)] = {"load_s": round(load_s, 1)}
            print(f"{backend}: {size} terminal tasks loaded in {load_s:.1f}s", flush=True)
        timed: dict[int, list[float]] = {size: [] for size in databases}
        empty: dict[int, list[float]] = {size: [] for size in databases}
        for db in databases.values():  # warm-up: connections, caches, lazy imports
            sweep_with_candidates(db)
        for number in range(repetitions):
            order = list(databases.items())
            for size, db in order if number % 2 == 0 else reversed(order):
                timed[size].append(sweep_with_candidates(db))
        for db in databases.values():
            remove_candidates(db)
        for number in range(repetitions):
            order = list(databases.items())
            for size, db in order if number % 2 == 0 else reversed(order):
                empty[size].append(_sweep_once(db)[0])
        for size in databases:
            result[str(size)].update(
                sweep_ms=round(median(timed[size]) * 1000, 1),
                sweep_ms_all=[round(s * 1000, 1) for s in timed[size]],
                empty_sweep_ms=round(median(empty[size]) * 1000, 2),
            )
        result["ratio"] = round(result[str(large)]["sweep_ms"] / result[str(small)]["sweep_ms"], 3)
        result["empty_ratio"] = round(
            result[str(large)]["empty_sweep_ms"] / result[str(small)]["empty_sweep_ms"], 3
        )
        return result
    finally:
        for db in databases.values():
            db.dispose()
        if backend == "postgres":
            for name in names.values():
                drop_postgres_database(postgres_server, name)
        else:
            for leftover in data_dir.glob("*.db*"):
                leftover.unlink()


def table(results: dict[str, Any]) -> str:
    rows = [
        "| backend | terminal tasks (small / large) | sweep ms, 100 candidates (small / large) "
        "| ratio | scans only ms (small / large) |",
        "|---|---|---|---|---|",
    ]
    for backend, figures in results.items():
        small, large = figures[str(figures["small"])], figures[str(figures["large"])]
        rows.append(
            f"| {backend} | {figures['small']:,} / {figures['large']:,} "
            f"| {small['sweep_ms']} / {large['sweep_ms']} | {figures['ratio']} "
            f"| {small['empty_sweep_ms']} / {large['empty_sweep_ms']} |"
        )
    return "\n".join(rows)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sweep-small-rows", type=int, default=10_000)
    parser.add_argument(
        "--sweep-rows", type=int, default=1_000_000, help="the large size (terminal tasks)"
    )
    parser.add_argument("--sweep-repetitions", type=int, default=7)


def run(
    backends: list[str],
    args: argparse.Namespace,
    results_dir: Path = RESULTS,
    doc: Path = PERFORMANCE_DOC,
) -> dict[str, Any]:
    """Measure each backend; write ``sweep.json`` in ``results_dir`` and the section of
    ``doc``."""
    return run_backends(
        "sweep",
        backends,
        lambda backend: measure_sweep(
            backend,
            args.postgres,
            args.sweep_small_rows,
            args.sweep_rows,
            args.sweep_repetitions,
        ),
        render=table,
        detail=(
            f"median of {args.sweep_repetitions} cycles per size, each repairing "
            f"{len(RULES) * CANDIDATES_PER_RULE} candidates"
        ),
        results_dir=results_dir,
        doc=doc,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backends", default="postgres,sqlite")
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES)
    add_arguments(parser)
    args = parser.parse_args(argv)
    run(args.backends.split(","), args)


if __name__ == "__main__":
    main()
