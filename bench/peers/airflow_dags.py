"""The two DAGs of ``make bench-peers``, parsed and run by Airflow in its own virtual
environment (bench/peers/airflow_deploy.py copies this file into a temporary dags folder).
Excluded from mypy: the project's environment has no Airflow to check it against.

- ``arco_bench_wide``: one no-op task mapped over ``range(N)`` (N from
  ``ARCO_BENCH_PEERS_TASKS``), the counterpart of our one run of N tasks;
- ``arco_bench_single``: one no-op task, the counterpart of our single-task latency runs."""

from __future__ import annotations

import os
from datetime import datetime

from airflow.sdk import dag, task

TASKS = int(os.environ.get("ARCO_BENCH_PEERS_TASKS", "500"))
START = datetime(2025, 1, 1)  # Airflow reads a naive start date as UTC


@task
def noop(index: int = 0) -> None:
    """Does nothing: the bench measures the orchestration around the task, not the task."""


@dag(dag_id="arco_bench_wide", schedule=None, start_date=START, catchup=False)
def arco_bench_wide() -> None:
    noop.expand(index=list(range(TASKS)))


@dag(dag_id="arco_bench_single", schedule=None, start_date=START, catchup=False)
def arco_bench_single() -> None:
    noop()


arco_bench_wide()
arco_bench_single()
