"""The suite's report: a table for people, JSON for machines."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from arco_stack.conformance.runner import Result
from arco_stack.conformance.scenarios import Status

STYLES = {
    Status.PASS: "[green]PASS[/]",
    Status.FAIL: "[red]FAIL[/]",
    Status.SKIP: "[yellow]SKIP[/]",
    Status.INFO: "[cyan]INFO[/]",
}


def failed(results: list[Result]) -> list[Result]:
    return [r for r in results if r.status is Status.FAIL]


def table(results: list[Result], worker_url: str) -> Table:
    """One row per scenario: name (and rule), verdict, evidence."""
    bad = len(failed(results))
    title = f"conformance of {worker_url}: " + ("all passed" if not bad else f"{bad} failed")
    out = Table(title=title, show_lines=True)
    out.add_column("scenario", overflow="fold", max_width=36)
    out.add_column("result")
    out.add_column("evidence (sent, came back)", overflow="fold")
    for result in results:
        out.add_row(
            f"{result.scenario}\n[dim]{result.rule}[/]",
            STYLES[result.status],
            "\n".join(result.evidence),
        )
    return out


def document(results: list[Result], worker_url: str, seconds: float) -> dict[str, Any]:
    """The JSON report (``--json``)."""
    return {
        "workerUrl": worker_url,
        "passed": not failed(results),
        "seconds": round(seconds, 2),
        "scenarios": [
            {
                "name": r.scenario,
                "rule": r.rule,
                "status": r.status.value,
                "evidence": list(r.evidence),
                "seconds": round(r.seconds, 2),
            }
            for r in results
        ],
    }


def write_json(path: Path, results: list[Result], worker_url: str, seconds: float) -> None:
    path.write_text(json.dumps(document(results, worker_url, seconds), indent=2) + "\n")


def show(console: Console, results: list[Result], worker_url: str) -> None:
    console.print(table(results, worker_url))
