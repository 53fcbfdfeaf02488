"""The same workloads on Airflow and on our stack: one untimed warm-up run, ``latency_runs``
single-task runs one after the other (trigger returning -> the task started), then one run of
``tasks`` no-op tasks (tasks per second from the trigger to the run finishing), with the memory
of every process of the deployment sampled throughout."""

from __future__ import annotations

import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.bench_worker import TASK_KEYS
from bench.peers.airflow_deploy import (
    SINGLE_DAG,
    WIDE_DAG,
    AirflowDeployment,
    parse_time,
)
from bench.peers.memory import TreeSampler, peak_hwm_mb
from bench.run import BenchStack, _percentiles, _wait_all_terminal, measure_latency

RUN_TIMEOUT_S = 900.0


def _airflow_single_run(airflow: AirflowDeployment) -> tuple[float, float]:
    """One single-task run: (trigger returned -> task queued, -> task started) in ms, from the
    task instance's ``queued_when`` and ``start_date`` (set when the task process calls the
    execution API's ``/run``: the counterpart of our worker's ``/started``)."""
    run_id = airflow.trigger(SINGLE_DAG)
    returned = datetime.now(UTC)
    state = airflow.wait_run(SINGLE_DAG, run_id, timeout=120)
    if state != "success":
        raise RuntimeError(f"airflow {SINGLE_DAG} run {run_id} ended {state}")
    (instance,) = airflow.task_instances(SINGLE_DAG, run_id)
    queued = (parse_time(instance["queued_when"]) - returned).total_seconds() * 1000
    started = (parse_time(instance["start_date"]) - returned).total_seconds() * 1000
    return queued, started


def measure_airflow(
    airflow_bin: Path, postgres: str, tasks: int, latency_runs: int, interval: float
) -> dict[str, Any]:
    home = Path(tempfile.mkdtemp(prefix="arco-bench-airflow-"))
    airflow: AirflowDeployment | None = None
    completed = False
    try:
        airflow = AirflowDeployment(airflow_bin, home, postgres, tasks)
        started = time.monotonic()
        airflow.migrate()
        migrate_s = time.monotonic() - started
        airflow.start()
        airflow.wait_dags((SINGLE_DAG, WIDE_DAG))
        print(f"airflow: up in {time.monotonic() - started:.0f}s", flush=True)
        with TreeSampler(airflow.pids, interval=interval) as sampler:
            _airflow_single_run(airflow)  # warm-up
            queued_ms: list[float] = []
            started_ms: list[float] = []
            for _ in range(latency_runs):
                queued, start = _airflow_single_run(airflow)
                queued_ms.append(queued)
                started_ms.append(start)
            began, triggered = time.monotonic(), datetime.now(UTC)
            run_id = airflow.trigger(WIDE_DAG)
            state = airflow.wait_run(WIDE_DAG, run_id, timeout=RUN_TIMEOUT_S)
            wide_s = time.monotonic() - began
            if state != "success":
                raise RuntimeError(f"airflow {WIDE_DAG} run {run_id} ended {state}")
        timings = airflow.run_timings(WIDE_DAG, run_id, triggered)
        completed = True
        return {
            "latency": {
                "to_queued_ms": _percentiles(queued_ms),
                "to_started_ms": _percentiles(started_ms),
            },
            "throughput": {
                "tasks": tasks,
                "wide_run_tasks_per_s": round(tasks / wide_s, 1),
                "wide_run_s": round(wide_s, 1),
                "airflow_records": timings,
            },
            "api_peak_rss_mb": peak_hwm_mb(airflow.api_server_pid()),
            "memory": sampler.figures(),
            "db_migrate_s": round(migrate_s, 1),
        }
    finally:
        if airflow is not None:
            airflow.close()
        if completed:
            shutil.rmtree(home, ignore_errors=True)
        else:
            print(f"airflow: logs kept in {home}", flush=True)


def measure_ours(postgres: str, tasks: int, latency_runs: int, interval: float) -> dict[str, Any]:
    """Our stack as ``make bench`` runs it on PostgreSQL (bench.run.BenchStack)."""
    data_dir = Path(tempfile.mkdtemp(prefix="arco-bench-peers-"))
    bench: BenchStack | None = None
    try:
        bench = BenchStack("postgres", data_dir, postgres)
        roots = {service.spec.name: service.process.pid for service in bench.stack.services}
        with TreeSampler(roots, interval=interval) as sampler:
            measure_latency(bench, 1)  # warm-up
            latency = measure_latency(bench, latency_runs)
            began = time.monotonic()
            run_id = bench.client.trigger_run({"selection": list(TASK_KEYS[:tasks])})["runId"]
            _wait_all_terminal(bench, timeout=RUN_TIMEOUT_S)
            wide_s = time.monotonic() - began
        state = bench.client.get_run(run_id)["state"]
        if state != "SUCCEEDED":
            raise RuntimeError(f"our run of {tasks} tasks ended {state}")
        peaks = bench.peak_rss_mb()
        return {
            "latency": latency,
            "throughput": {
                "tasks": tasks,
                "wide_run_tasks_per_s": round(tasks / wide_s, 1),
                "wide_run_s": round(wide_s, 1),
            },
            "api_peak_rss_mb": peaks["api"],
            "service_peak_rss_mb": peaks,
            "services_peak_rss_sum_mb": round(sum(peaks.values()), 1),
            "memory": sampler.figures(),
        }
    finally:
        if bench is not None:
            bench.close()  # drops the stack's database too
        shutil.rmtree(data_dir, ignore_errors=True)
