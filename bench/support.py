"""Helpers shared by the benchmarks that do not start the whole stack (``bench.callbacks``,
``bench.sweep``): databases of their own, free ports, host facts, percentiles."""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from arco_orchestration.db import make_engine
from arco_orchestration.migrate import upgrade

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS = REPO_ROOT / "bench" / "results"
T = TypeVar("T")
DEFAULT_POSTGRES = os.environ.get(
    "ARCO_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


# Integers :lo to :hi as a row source ``series(i)``, for bulk loads with INSERT ... SELECT.
SERIES_SQL = {
    "postgresql": "SELECT i FROM generate_series(CAST(:lo AS integer), CAST(:hi AS integer)) AS i",
    "sqlite": "WITH RECURSIVE s(i) AS (SELECT :lo UNION ALL SELECT i + 1 FROM s WHERE i < :hi) "
    "SELECT i FROM s",
}


def database_name(prefix: str) -> str:
    """``prefix`` plus this process id: two benchmarks running at once on one server (two
    people measuring) never drop each other's database."""
    return f"{prefix}_{os.getpid()}"


def migrate(url: str) -> None:
    """Bring the schema to head, as ``arco-orchestration migrate`` does."""
    engine = make_engine(url)
    try:
        upgrade(engine)
    finally:
        engine.dispose()


def host() -> dict[str, Any]:
    """The machine, and how busy it was: the figures are only comparable at equal load."""
    return {
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "load_average_1m": round(os.getloadavg()[0], 2),
    }


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2


def present(value: T | None, what: str) -> T:
    """``value``, which the setup just wrote; a bench that set up something else must stop."""
    if value is None:
        raise RuntimeError(f"bench setup: {what} is missing")
    return value


PERFORMANCE_DOC = REPO_ROOT / "docs" / "performance.md"


def write_doc_section(name: str, body: str, doc: Path = PERFORMANCE_DOC) -> None:
    """Replace the text between ``<!-- bench-NAME:start -->`` and ``<!-- bench-NAME:end -->``
    in ``doc``; a doc without those markers is left alone."""
    start, end = f"<!-- bench-{name}:start -->", f"<!-- bench-{name}:end -->"
    if not doc.exists():
        return
    text = doc.read_text()
    if start not in text or end not in text:
        return
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    doc.write_text(f"{head}{start}\n{body}\n{end}{tail}")


def measured_line(results: dict[str, Any], detail: str) -> str:
    machine = results["host"]
    return (
        f"Measured {results['at']} on {machine['cpus']} CPUs ({machine['machine']}, "
        f"Python {machine['python']}, 1-minute load average {machine['load_average_1m']} at the "
        f"end), {detail}."
    )


def run_backends(
    part: str,
    backends: list[str],
    measure: Callable[[str], dict[str, Any]],
    *,
    render: Callable[[dict[str, Any]], str],
    detail: str,
    results_dir: Path,
    doc: Path,
) -> dict[str, Any]:
    """Measure each backend with ``measure``; print the figures, write ``PART.json`` in
    ``results_dir`` and the ``PART`` section of ``doc`` (the table ``render`` makes of the
    figures by backend, then how they were measured)."""
    results: dict[str, Any] = {"at": "", "host": {}, "backends": {}}
    for backend in backends:
        started = time.perf_counter()
        figures = measure(backend)
        figures["wall_s"] = round(time.perf_counter() - started, 1)
        results["backends"][backend] = figures
        print(f"{backend}: {part} {json.dumps(figures)}", flush=True)
    results["at"] = datetime.now(UTC).isoformat(timespec="seconds")
    results["host"] = host()
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / f"{part}.json").write_text(json.dumps(results, indent=2) + "\n")
    section = "\n\n".join([render(results["backends"]), measured_line(results, detail)])
    print(section)
    write_doc_section(part, section, doc)
    return results
