"""``make bench``: dispatch latency, end-to-end throughput and memory of the local stack, callback
efficiency (``bench.callbacks``) and sweep cost (``bench.sweep``), on SQLite and PostgreSQL.
Prints figures and writes bench/results/latest.json and the tables in docs/performance.md.
No thresholds: figures only."""

from __future__ import annotations

import argparse
import importlib
import json
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

from sqlalchemy import func, select

from arco_envelope import parse_timestamp
from arco_orchestration.db import Database
from arco_orchestration.models import Run
from arco_orchestration.states import RunState
from arco_stack.client import ApiClient
from arco_stack.config import Ports, service_specs, stack_environment
from arco_stack.databases import drop_postgres_database, recreate_postgres_database
from arco_stack.processes import Stack, migrate
from bench import callbacks, console, sweep
from bench.bench_worker import DEFAULT_ASSETS, TASK_KEYS, bench_manifest
from bench.support import DEFAULT_POSTGRES, database_name, host, percentile

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS = REPO_ROOT / "bench" / "results"
PERFORMANCE_DOC = REPO_ROOT / "docs" / "performance.md"
TABLE_START, TABLE_END = "<!-- bench:start -->", "<!-- bench:end -->"
TERMINAL = [s.value for s in RunState if s.is_terminal]
PARTS = ("latency", "throughput", "callbacks", "sweep", "console", "scale")


class BenchStack:
    def __init__(
        self, backend: str, data_dir: Path, postgres_server: str, assets: int = DEFAULT_ASSETS
    ) -> None:
        # Its own database on the server, dropped again by close().
        self._postgres = (
            (postgres_server, database_name("arco_bench")) if backend == "postgres" else None
        )
        database_url = recreate_postgres_database(*self._postgres) if self._postgres else None
        ports = Ports.free()
        overrides = {
            "PYTHONPATH": str(REPO_ROOT),
            "ARCO_WORKER_CONCURRENCY": "64",
            "ARCO_FLOW_DISPATCH_CONCURRENCY": "64",
            "ARCO_FLOW_DISPATCH_POLL_MS": "20",
            "ARCO_LOG_LEVEL": "warning",
            # Extra worker processes join the first on its port (measure_throughput).
            "ARCO_WORKER_REUSE_PORT": "true",
        }
        self.env = stack_environment(
            data_dir, ports=ports, database_url=database_url, overrides=overrides
        )
        migrate(self.env)
        self.db = Database.from_url(self.env["ARCO_DATABASE_URL"])
        specs = [
            replace(spec, args=("--worker", "bench.bench_worker:worker"))
            if spec.name == "worker"
            else spec
            for spec in service_specs(ports)
        ]
        self.worker_spec = next(spec for spec in specs if spec.name == "worker")
        self.stack = Stack(data_dir, self.env)
        self.stack.start_all(specs)
        self.client = ApiClient.of_stack(self.env)
        started = time.perf_counter()
        self.client.deploy_manifest(bench_manifest(assets))
        self.deploy_s = time.perf_counter() - started

    def unfinished_runs(self) -> int:
        with self.db.transaction() as session:
            return int(
                session.scalar(
                    select(func.count()).select_from(Run).where(Run.state.not_in(TERMINAL))
                )
                or 0
            )

    def add_workers(self, total: int) -> None:
        """Run ``total`` worker processes on the worker port (SO_REUSEPORT)."""
        running = sum(1 for service in self.stack.services if service.spec.command == "arco-worker")
        for index in range(running + 1, total + 1):
            spec = replace(self.worker_spec, name=f"worker-{index}")
            self.stack.wait_ready(self.stack.start(spec), timeout=120)

    def peak_rss_mb(self) -> dict[str, float]:
        peaks: dict[str, float] = {}
        for service in self.stack.services:
            status = Path(f"/proc/{service.process.pid}/status").read_text()
            kib = next(
                int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")
            )
            peaks[service.spec.name] = round(kib / 1024, 1)
        return peaks

    def close(self) -> None:
        self.client.close()
        self.stack.stop()
        self.db.dispose()
        if self._postgres:
            drop_postgres_database(*self._postgres)


def _percentiles(values: list[float]) -> dict[str, float]:
    picks = {f"p{round(q * 100)}": round(percentile(values, q), 1) for q in (0.50, 0.95, 0.99)}
    return {**picks, "n": len(values)}


def measure_latency(bench: BenchStack, runs: int) -> dict[str, Any]:
    """Trigger returning -> dispatch enqueued / worker's /started recorded, one run at a time."""
    enqueued_ms: list[float] = []
    started_ms: list[float] = []
    for _ in range(runs):
        run_id = bench.client.trigger_run({"selection": [TASK_KEYS[0]]})["runId"]
        returned = datetime.now(UTC)
        while bench.client.get_run(run_id)["state"] not in ("SUCCEEDED", "FAILED"):
            time.sleep(0.005)
        history = bench.client.run_tasks(run_id)[0]["history"]
        at = {event["kind"]: parse_timestamp(event["at"]) for event in history}
        enqueued_ms.append((at["dispatch_enqueued"] - returned).total_seconds() * 1000)
        started_ms.append((at["started"] - returned).total_seconds() * 1000)
    return {"to_enqueued_ms": _percentiles(enqueued_ms), "to_started_ms": _percentiles(started_ms)}


def _wait_all_terminal(bench: BenchStack, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while bench.unfinished_runs():
        if time.monotonic() > deadline:
            raise TimeoutError("runs still unfinished")
        time.sleep(0.05)


def measure_throughput(bench: BenchStack, tasks: int) -> dict[str, Any]:
    keys = list(TASK_KEYS[:tasks])
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda key: bench.client.trigger_run({"selection": [key]}), keys))
    triggered = time.monotonic() - started
    _wait_all_terminal(bench, timeout=900)
    independent = time.monotonic() - started
    started = time.monotonic()
    bench.client.trigger_run({"selection": keys})
    _wait_all_terminal(bench, timeout=900)
    wide = time.monotonic() - started
    return {
        "tasks": tasks,
        "independent_runs_tasks_per_s": round(tasks / independent, 1),
        "independent_runs_trigger_s": round(triggered, 1),
        "wide_run_tasks_per_s": round(tasks / wide, 1),
    }


def _table(results: dict[str, Any]) -> str:
    rows = [
        "| backend | trigger -> enqueued p50/p95/p99 ms | trigger -> /started p50/p95/p99 ms "
        "| independent runs tasks/s | one wide run tasks/s "
        "| same, several worker processes "
        "| peak RSS MB (api, dispatcher, sweeper, worker) |",
        "|---|---|---|---|---|---|---|",
    ]
    missing = {"p50": "-", "p95": "-", "p99": "-"}
    for backend, figures in results["backends"].items():
        lat, thr, rss = (
            figures.get("latency", {}),
            figures.get("throughput", {}),
            figures["peak_rss_mb"],
        )
        enq, sta = lat.get("to_enqueued_ms", missing), lat.get("to_started_ms", missing)
        several = figures.get("throughput_workers")
        several_cell = (
            f"{several['independent_runs_tasks_per_s']} / {several['wide_run_tasks_per_s']} "
            f"({several['worker_processes']} processes)"
            if several
            else "-"
        )
        rows.append(
            f"| {backend} | {enq['p50']} / {enq['p95']} / {enq['p99']} "
            f"| {sta['p50']} / {sta['p95']} / {sta['p99']} "
            f"| {thr.get('independent_runs_tasks_per_s', '-')} "
            f"| {thr.get('wide_run_tasks_per_s', '-')} "
            f"| {several_cell} "
            f"| {rss.get('api')}, {rss.get('dispatcher')}, {rss.get('sweeper')}, "
            f"{rss.get('worker')} |"
        )
    host = results["host"]
    rows.append("")
    rows.append(
        f"Measured {results['at']} on {host['cpus']} CPUs ({host['machine']}, "
        f"Python {host['python']}), {results['tasks']} no-op tasks, "
        f"{results['latency_runs']} latency runs."
    )
    return "\n".join(rows)


def scale_part() -> ModuleType:
    """``bench.scale``, imported here: it starts its stacks with this module's BenchStack."""
    return importlib.import_module("bench.scale")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--latency-runs", type=int, default=200)
    parser.add_argument(
        "--worker-processes",
        type=int,
        default=4,
        help="the throughput runs again with this many worker processes (1: once only)",
    )
    parser.add_argument("--only", default=",".join(PARTS), help=f"any of {', '.join(PARTS)}")
    callbacks.add_arguments(parser)
    sweep.add_arguments(parser)
    console.add_arguments(parser)
    scale_part().add_arguments(parser)
    parser.add_argument(
        "--postgres",
        default=DEFAULT_POSTGRES,
    )
    args = parser.parse_args()
    only = set(args.only.split(","))
    backends = args.backends.split(",")
    results: dict[str, Any] = {
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": host(),
        "tasks": args.tasks,
        "latency_runs": args.latency_runs,
        "backends": {},
    }
    for backend in backends if only & {"latency", "throughput"} else []:
        data_dir = Path(tempfile.mkdtemp(prefix=f"arco-bench-{backend}-"))
        bench = BenchStack(backend, data_dir, args.postgres)
        try:
            figures: dict[str, Any] = {}
            if "latency" in only:
                figures["latency"] = measure_latency(bench, args.latency_runs)
                print(f"{backend}: latency {json.dumps(figures['latency'])}", flush=True)
            if "throughput" in only:
                figures["throughput"] = measure_throughput(bench, args.tasks)
                print(f"{backend}: throughput {json.dumps(figures['throughput'])}", flush=True)
                if args.worker_processes > 1:
                    bench.add_workers(args.worker_processes)
                    several = measure_throughput(bench, args.tasks)
                    figures["throughput_workers"] = {
                        "worker_processes": args.worker_processes,
                        **several,
                    }
                    print(
                        f"{backend}: throughput, {args.worker_processes} worker processes "
                        f"{json.dumps(several)}",
                        flush=True,
                    )
            figures["peak_rss_mb"] = bench.peak_rss_mb()
            print(f"{backend}: peak RSS MB {json.dumps(figures['peak_rss_mb'])}", flush=True)
            results["backends"][backend] = figures
        finally:
            bench.close()
    # Each writes its own results file and docs section too.
    if "callbacks" in only:
        results["callbacks"] = callbacks.run(backends, args, RESULTS, PERFORMANCE_DOC)
    if "sweep" in only:
        results["sweep"] = sweep.run(backends, args, RESULTS, PERFORMANCE_DOC)
    if "console" in only:
        results["console"] = console.run(backends, args, RESULTS, PERFORMANCE_DOC)
    if "scale" in only:
        # PostgreSQL only unless --scale-backends says otherwise: the part takes long.
        scale_backends = args.scale_backends.split(",")
        results["scale"] = scale_part().run(scale_backends, args, RESULTS, PERFORMANCE_DOC)
    RESULTS.mkdir(parents=True, exist_ok=True)
    latest = RESULTS / "latest.json"
    stack_measured = bool(results["backends"])
    if not stack_measured and latest.exists():
        # A run of the callback, sweep or console benchmarks alone keeps the last stack figures.
        previous = json.loads(latest.read_text())
        parts = ("callbacks", "sweep", "console", "scale")
        previous.update({part: results[part] for part in parts if part in results})
        results = previous
    latest.write_text(json.dumps(results, indent=2) + "\n")
    if not stack_measured:
        return
    table = _table(results)
    print(table)
    if PERFORMANCE_DOC.exists():
        doc = PERFORMANCE_DOC.read_text()
        if TABLE_START in doc and TABLE_END in doc:
            head, rest = doc.split(TABLE_START, 1)
            _, tail = rest.split(TABLE_END, 1)
            PERFORMANCE_DOC.write_text(f"{head}{TABLE_START}\n{table}\n{TABLE_END}{tail}")


if __name__ == "__main__":
    main()
