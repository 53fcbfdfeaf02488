"""``make bench`` keeps working: the callback and sweep benchmarks run end to end at a tiny
size (figures are not checked, only that every request and repair went as the benchmark
requires). The stack benchmarks drive the same launcher as the e2e suite."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pytest
from bench import callbacks, console, profile, scale, sweep

pytestmark = pytest.mark.timeout(300)


def _backends() -> list[str]:
    return ["sqlite", "postgres"] if os.environ.get("ARCO_TEST_DATABASE_URL") else ["sqlite"]


def _args(**values: object) -> argparse.Namespace:
    postgres = os.environ.get("ARCO_TEST_DATABASE_URL", "")
    return argparse.Namespace(postgres=postgres, **values)


def test_the_callback_benchmark_runs(tmp_path: Path) -> None:
    args = _args(callback_requests=20, callback_clients=2)
    results = callbacks.run(_backends(), args, tmp_path, tmp_path / "performance.md")
    assert (tmp_path / "callbacks.json").exists()
    for backend in _backends():
        figures = results["backends"][backend]
        for endpoint in ("ours", "baseline"):
            assert figures[endpoint]["requests"] == 20
            assert figures[endpoint]["non_200"] == {}, figures
        assert figures["ratio"] > 0


def test_the_sweep_benchmark_runs(tmp_path: Path) -> None:
    args = _args(sweep_small_rows=100, sweep_rows=1000, sweep_repetitions=1)
    results = sweep.run(_backends(), args, tmp_path, tmp_path / "performance.md")
    assert (tmp_path / "sweep.json").exists()
    for backend in _backends():
        assert results["backends"][backend]["ratio"] > 0


def test_the_console_benchmark_runs(tmp_path: Path) -> None:
    args = _args(console_runs=300, console_repeats=2)
    results = console.run(_backends(), args, tmp_path, tmp_path / "performance.md")
    assert (tmp_path / "console.json").exists()
    for backend in _backends():
        pages = results["backends"][backend]["pages"]
        assert set(pages) >= {"runs, newest page", "run, 500 tasks"}
        assert all(page["p50_ms"] > 0 for page in pages.values())


def test_the_scale_benchmark_runs(tmp_path: Path) -> None:
    """Two tiny wide runs on fresh stacks and the run API over a few hundred runs."""
    args = _args(scale_sizes="2,4", scale_runs=300, scale_repeats=2)
    results = scale.run(_backends(), args, tmp_path, tmp_path / "performance.md")
    assert (tmp_path / "scale.json").exists()
    for backend in _backends():
        figures = results["backends"][backend]
        runs = figures["wide_runs"]
        assert [run["state"] for run in runs.values()] == ["SUCCEEDED", "SUCCEEDED"]
        assert all(set(run["peak_rss_mb"]) >= {"api", "worker"} for run in runs.values())
        requests = figures["api"]["requests"]
        assert {"runs, first page", "runs, state RUNNING", "run tasks, 500 tasks"} <= set(requests)
        assert all(request["p50_ms"] > 0 for request in requests.values())


def test_the_profile_reads_py_spy_samples(tmp_path: Path) -> None:
    """``bench.profile`` ranks py-spy's raw samples: self time by the innermost frame,
    inclusive time by our own frames; idle waits do not count."""
    raw = tmp_path / "api.txt"
    ours = "handle (/repo/services/api/src/arco_api/callback_routes.py:10)"
    lib = "execute (/v/lib/python3.11/site-packages/sqlalchemy/engine/base.py:5)"
    idle = "select (/usr/lib/python3.11/selectors.py:468)"
    raw.write_text(f"{ours};{lib} 3\n{ours} 1\nmain (/x.py:1);{idle} 6\n")
    own, inclusive = profile.top_frames(raw, limit=5)
    assert own == [
        ("execute (sqlalchemy/engine/base.py:5)", 75.0),
        ("handle (arco_api/callback_routes.py:10)", 25.0),
    ]
    assert inclusive == [("handle (arco_api/callback_routes.py:10)", 100.0)]
