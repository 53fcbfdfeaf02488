"""``make bench-peers`` itself needs Airflow and minutes, so it never runs in the tests; these
check its two pieces that do not: the memory sampler and the side-by-side table."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

from bench.peers.compare import render
from bench.peers.memory import TreeSampler, parent_ids, tree


def test_the_sampler_counts_a_process_and_its_children() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
    )
    try:
        assert child.pid in tree(os.getpid(), parent_ids())
        sampler = TreeSampler({"self": os.getpid()})
        sampler.sample()
        assert sampler.peak_processes >= 2
        assert sampler.peak_pss_kib["self"] > 0
        assert sampler.peak_rss_kib["self"] >= sampler.peak_pss_kib["self"]
    finally:
        child.communicate(timeout=30)


def _side(tasks_per_s: float, started_p50: float, api: float, total: float) -> dict[str, Any]:
    percentiles = {"p50": started_p50, "p95": started_p50 * 2, "p99": started_p50 * 3, "n": 20}
    return {
        "latency": {
            "to_started_ms": percentiles,
            "to_queued_ms": percentiles,
            "to_enqueued_ms": percentiles,
        },
        "throughput": {"tasks": 500, "wide_run_tasks_per_s": tasks_per_s},
        "api_peak_rss_mb": api,
        "service_peak_rss_mb": {"api": api},
        "memory": {
            "peak_total_pss_mb": total,
            "peak_tree_pss_mb": {"api": api},
            "peak_processes": 4,
            "measure": "pss",
        },
    }


def test_the_table_puts_the_ratios_the_right_way_round() -> None:
    table = render({"airflow": _side(10, 1000, 300, 2000), "ours": _side(40, 25, 150, 500)})
    assert "| one run of 500 no-op tasks, tasks/s | 10 | 40 | 4.00x (ours / Airflow) |" in table
    assert (
        "| trigger -> task started p50 ms (20 runs) | 1000 | 25 | 40.00x (Airflow / ours) |"
        in table
    )
    assert "| API server peak RSS MB | 300 | 150 | 2.00x (Airflow / ours) |" in table
    assert "| whole deployment peak PSS MB | 2000 | 500 | 4.00x (Airflow / ours) |" in table
