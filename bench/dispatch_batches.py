"""CPU of the dispatcher's request transaction per task, by batch size: ``request_dispatches``
(DispatchRequested plus the push queue's enqueue, as the dispatcher's ready phase runs it)
on READY tasks, in a PostgreSQL database of the benchmark's own. The stack's profile
(``bench.profile``) mixes this with cycles, scans and delivery, and how many tasks a batch
holds there depends on the load; this isolates it. The figure is this process's CPU time
(``time.process_time``) per task, after untimed warm-up batches.

Run alone: ``PYTHONPATH=. .venv/bin/python -m bench.dispatch_batches``."""

from __future__ import annotations

import argparse
import time

from arco_orchestration.db import Database
from arco_orchestration.facts import DispatchSnapshot, Enqueued, request_dispatches
from arco_stack.databases import drop_postgres_database, recreate_postgres_database
from arco_testkit.clock import T0
from arco_testkit.facts import planned, trigger
from arco_testkit.values import SCOPE
from bench.support import DEFAULT_POSTGRES, database_name, migrate

SIZES = (1, 3, 10, 50)
WARM_UP = 60


def queue_now(dispatch: DispatchSnapshot) -> Enqueued:
    return Enqueued(dispatch.dispatch_id, dispatch.run_id, f"name-{dispatch.dispatch_id}", ["k"])


def cpu_ms_per_task(db: Database, prefix: str, size: int, tasks: int) -> float:
    refs: list[tuple[str, str]] = []
    for index in range((tasks + WARM_UP) // 2):
        run_id = f"{prefix}-{index}"
        trigger(db, run_id, [planned("a"), planned("b")])
        refs += [(run_id, "a"), (run_id, "b")]
    warm, timed = refs[:WARM_UP], refs[WARM_UP:]
    started = 0.0
    for part in (warm, timed):
        started = time.process_time()
        for first in range(0, len(part), size):
            with db.transaction() as session:
                chunk = part[first : first + size]
                request_dispatches(session, SCOPE, chunk, now=T0, queue=queue_now)
    return 1000 * (time.process_time() - started) / len(timed)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=600, help="timed tasks per batch size")
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES, help="server URL")
    args = parser.parse_args(argv)
    name = database_name("arco_bench_dispatch")
    url = recreate_postgres_database(args.postgres, name)
    try:
        migrate(url)
        db = Database.from_url(url)
        try:
            print("| tasks per batch | CPU ms per task |\n|---|---|")
            for size in SIZES:
                figure = cpu_ms_per_task(db, f"b{size}", size, args.tasks)
                print(f"| {size} | {figure:.2f} |")
        finally:
            db.dispose()
    finally:
        drop_postgres_database(args.postgres, name)


if __name__ == "__main__":
    main()
