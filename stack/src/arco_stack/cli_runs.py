"""``arco-stack runs``: look at and act on the runs of a local stack."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from arco_stack.cli_options import DEFAULT_DATA_DIR, DataDir, JsonFlag, local_client, print_json
from arco_stack.cli_support import CliError, err, handled, out, resolve_run_id, wait_for_run

runs_app = typer.Typer(help="Look at and act on runs.", no_args_is_help=True)


@runs_app.command("list")
@handled
def runs_list(
    data_dir: DataDir = DEFAULT_DATA_DIR,
    limit: int = 20,
    state: str | None = None,
    as_json: JsonFlag = False,
) -> None:
    """Newest runs first."""
    with local_client(data_dir) as client:
        result = client.list_runs(limit=limit, state=state)
    if as_json:
        print_json(result)
        return
    # Borderless and compact so a run id (copied from here) is never cut, even at 80 columns.
    table = Table(box=None, padding=(0, 2, 0, 0), header_style="bold")
    width = max((len(run["runId"]) for run in result["runs"]), default=3)
    table.add_column("run", no_wrap=True, min_width=width)
    table.add_column("state", no_wrap=True, min_width=9)
    table.add_column("created (UTC)", no_wrap=True, min_width=19)
    table.add_column("ok/tasks", no_wrap=True)
    table.add_column("failed", no_wrap=True)
    for run in result["runs"]:
        table.add_row(
            run["runId"],
            run["state"],
            run["createdAt"][:19].replace("T", " "),
            f"{run['tasksSucceeded']}/{run['taskCount']}",
            str(run["tasksFailed"]),
        )
    out.print(table, crop=False)


def _tasks_table(run: dict[str, Any], tasks: list[dict[str, Any]]) -> Table:
    table = Table(title=f"run {run['runId']}: {run['state']}", title_justify="left")
    table.add_column("task", no_wrap=True)
    for column in ("stored state", "attempt", "history"):
        table.add_column(column)
    for task in tasks:
        attempts = task.get("attempts", [])
        history = " | ".join(" -> ".join(a["states"]) for a in attempts if isinstance(a, dict))
        table.add_row(str(task["taskKey"]), str(task["storedState"]), str(task["attempt"]), history)
    return table


@runs_app.command("get")
@handled
def runs_get(
    run_id: Annotated[str, typer.Argument(help="run id or a unique prefix of one")],
    data_dir: DataDir = DEFAULT_DATA_DIR,
    as_json: JsonFlag = False,
) -> None:
    """One run with each task's stored state and attempt history."""
    with local_client(data_dir) as client:
        run_id = resolve_run_id(client, run_id)
        run = client.get_run(run_id)
        if as_json:
            print_json(run)
            return
        out.print(_tasks_table(run, client.run_tasks(run_id)), crop=False)


@runs_app.command("cancel")
@handled
def runs_cancel(
    run_id: Annotated[str, typer.Argument(help="run id or a unique prefix of one")],
    data_dir: DataDir = DEFAULT_DATA_DIR,
    reason: str = "cancelled by arco-stack",
    as_json: JsonFlag = False,
) -> None:
    """Request cancellation of a run."""
    with local_client(data_dir) as client:
        run_id = resolve_run_id(client, run_id)
        run = client.get_run(run_id)
        if run["state"] in ("SUCCEEDED", "FAILED", "CANCELLED", "TIMED_OUT"):
            raise CliError(f"run {run_id} already ended {run['state']}: nothing to cancel")
        result = client.cancel_run(run_id, reason)
    if as_json:
        print_json(result)
        return
    out.print(f"run {run_id}: cancellation requested ({result.get('state', '')})", highlight=False)


@runs_app.command("watch")
@handled
def runs_watch(
    run_id: Annotated[str, typer.Argument(help="run id or a unique prefix of one")],
    data_dir: DataDir = DEFAULT_DATA_DIR,
    timeout: float = 600.0,
    as_json: JsonFlag = False,
) -> None:
    """Show a run's task state changes until it ends."""
    with local_client(data_dir) as client:
        run_id = resolve_run_id(client, run_id)
        final = wait_for_run(client, run_id, timeout=timeout, console=err if as_json else out)
    if as_json:
        print_json(final)
    else:
        out.print(f"run {run_id} ended {final['state']}", highlight=False)
