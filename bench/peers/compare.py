"""``make bench-peers``: the same workloads on Apache Airflow 3.3.2 and on our stack, both on the
local PostgreSQL, side by side with the ratios. Prints the figures and writes
bench/results/peers.json and the ``bench-peers`` section of docs/performance.md.
Figures, no thresholds; not part of ``make test``."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.peers.airflow_deploy import AIRFLOW_VERSION, DEFAULT_VENV, SETTINGS, install
from bench.peers.workloads import measure_airflow, measure_ours
from bench.support import (
    DEFAULT_POSTGRES,
    PERFORMANCE_DOC,
    RESULTS,
    host,
    measured_line,
    write_doc_section,
)

SIDES = ("airflow", "ours")


def _ratio(numerator: float | None, denominator: float | None) -> str:
    if not numerator or not denominator:
        return "-"
    return f"{numerator / denominator:.2f}x"


def render(results: dict[str, Any]) -> str:
    airflow, ours = results["airflow"], results["ours"]

    def row(label: str, a: float | None, o: float | None, ratio: str) -> str:
        return f"| {label} | {a} | {o} | {ratio} |"

    a_lat, o_lat = airflow["latency"]["to_started_ms"], ours["latency"]["to_started_ms"]
    a_tps = airflow["throughput"]["wide_run_tasks_per_s"]
    o_tps = ours["throughput"]["wide_run_tasks_per_s"]
    a_mem, o_mem = airflow["memory"], ours["memory"]
    tasks = ours["throughput"]["tasks"]
    rows = [
        f"| | Airflow {AIRFLOW_VERSION} | ours | ratio |",
        "|---|---|---|---|",
        row(
            f"one run of {tasks} no-op tasks, tasks/s",
            a_tps,
            o_tps,
            f"{_ratio(o_tps, a_tps)} (ours / Airflow)",
        ),
    ]
    for pick in ("p50", "p95"):
        rows.append(
            row(
                f"trigger -> task started {pick} ms ({o_lat['n']} runs)",
                a_lat[pick],
                o_lat[pick],
                f"{_ratio(a_lat[pick], o_lat[pick])} (Airflow / ours)",
            )
        )
    a_api, o_api = airflow["api_peak_rss_mb"], ours["api_peak_rss_mb"]
    rows.append(
        row("API server peak RSS MB", a_api, o_api, f"{_ratio(a_api, o_api)} (Airflow / ours)")
    )
    a_total, o_total = a_mem["peak_total_pss_mb"], o_mem["peak_total_pss_mb"]
    rows.append(
        row(
            f"whole deployment peak {a_mem['measure'].upper()} MB",
            a_total,
            o_total,
            f"{_ratio(a_total, o_total)} (Airflow / ours)",
        )
    )
    rows.append(row("processes at the peak", a_mem["peak_processes"], o_mem["peak_processes"], "-"))
    a_trees = ", ".join(f"{name} {mb}" for name, mb in a_mem["peak_tree_pss_mb"].items())
    o_trees = ", ".join(f"{name} {mb}" for name, mb in o_mem["peak_tree_pss_mb"].items())
    rows += [
        "",
        f"Peak {a_mem['measure'].upper()} MB of each process tree: Airflow {a_trees}; "
        f"ours {o_trees}. Peak RSS (`VmHWM`) of our services: "
        + ", ".join(f"{name} {mb}" for name, mb in ours["service_peak_rss_mb"].items())
        + f". Trigger -> task queued p50/p95 ms: Airflow "
        f"{airflow['latency']['to_queued_ms']['p50']} / "
        f"{airflow['latency']['to_queued_ms']['p95']}, ours (to the enqueue) "
        f"{ours['latency']['to_enqueued_ms']['p50']} / {ours['latency']['to_enqueued_ms']['p95']}.",
    ]
    return "\n".join(rows)


def _load_after() -> dict[str, float]:
    # The 1-minute load average lags: the figure before ours still holds most of Airflow's
    # own load; the one after a side says more about the side.
    return {"load_average_1m_after": round(os.getloadavg()[0], 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=500)
    parser.add_argument("--latency-runs", type=int, default=20)
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES)
    parser.add_argument("--venv", type=Path, default=DEFAULT_VENV, help="Airflow's own venv")
    parser.add_argument("--sample-interval", type=float, default=0.5, help="memory, seconds")
    parser.add_argument(
        "--only",
        default=",".join(SIDES),
        help="airflow or ours alone (the other side's figures are kept from the last run)",
    )
    args = parser.parse_args()
    # SIGTERM unwinds like Ctrl-C does, through the finally blocks that stop every process
    # the bench started and drop its databases.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    only = set(args.only.split(","))
    results_file = RESULTS / "peers.json"
    previous: dict[str, Any] = json.loads(results_file.read_text()) if results_file.exists() else {}
    results: dict[str, Any] = {
        "airflow_version": AIRFLOW_VERSION,
        "airflow_settings": {f"AIRFLOW__{key}": value for key, value in SETTINGS.items()},
        "tasks": args.tasks,
        "latency_runs": args.latency_runs,
    }
    if "airflow" in only:
        airflow_bin = install(args.venv)
        load = round(os.getloadavg()[0], 2)
        figures = measure_airflow(
            airflow_bin, args.postgres, args.tasks, args.latency_runs, args.sample_interval
        )
        results["airflow"] = {"load_average_1m_before": load, **figures, **_load_after()}
        print(f"airflow: {json.dumps(results['airflow'])}", flush=True)
    if "ours" in only:
        load = round(os.getloadavg()[0], 2)
        figures = measure_ours(args.postgres, args.tasks, args.latency_runs, args.sample_interval)
        results["ours"] = {"load_average_1m_before": load, **figures, **_load_after()}
        print(f"ours: {json.dumps(results['ours'])}", flush=True)
    for side in SIDES:
        if side not in results and side in previous:
            results[side] = previous[side]
    results["at"] = datetime.now(UTC).isoformat(timespec="seconds")
    results["host"] = host()
    RESULTS.mkdir(parents=True, exist_ok=True)
    results_file.write_text(json.dumps(results, indent=2) + "\n")
    if not all(side in results for side in SIDES):
        return
    loads = ", ".join(f"{side} {results[side]['load_average_1m_before']}" for side in SIDES)
    detail = (
        f"{args.tasks} tasks in one run, {args.latency_runs} latency runs, both on the local "
        f"PostgreSQL; 1-minute load average before each side: {loads}"
    )
    section = "\n\n".join([render(results), measured_line(results, detail)])
    print(section)
    write_doc_section("peers", section, PERFORMANCE_DOC)
