"""``arco-stack``: run the stack locally, check the cutover preconditions, verify a running
stack against the runbook's checklist, and look at runs."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Annotated

import httpx
import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from arco_stack.client import ApiClient
from arco_stack.config import (
    TENANT_ID,
    WORKSPACE_ID,
    read_env_file,
    service_specs,
    stack_environment,
)
from arco_stack.conformance.command import conformance
from arco_stack.demo import demo_manifest, demo_trigger
from arco_stack.preflight import artifact_checks, config_checks, live_checks
from arco_stack.processes import Stack, StackError, migrate
from arco_stack.verification import Check, verify

app = typer.Typer(help=__doc__, no_args_is_help=True)
runs_app = typer.Typer(help="Look at and act on runs.", no_args_is_help=True)
app.add_typer(runs_app, name="runs")
app.command()(conformance)
console = Console()

DataDir = Annotated[Path, typer.Option("--data-dir", help="where secrets, SQLite and logs live")]
DEFAULT_DATA_DIR = Path(".arco")


def _client(
    data_dir: Path,
    api_url: str | None,
    token: str | None,
    *,
    jwt_secret: str | None = None,
    tenant: str | None = None,
    workspace: str | None = None,
) -> ApiClient:
    """A run-API client: the local stack's URL and credentials unless given."""
    if api_url and (token or jwt_secret):
        env = {
            "ARCO_FLOW_CALLBACK_BASE_URL": api_url,
            "ARCO_JWT_SECRET": jwt_secret or "",
            "ARCO_TENANT_ID": tenant or TENANT_ID,
            "ARCO_WORKSPACE_ID": workspace or WORKSPACE_ID,
        }
    else:
        env = stack_environment(data_dir)
    if token:
        return ApiClient(
            api_url or env["ARCO_FLOW_CALLBACK_BASE_URL"], token, env["ARCO_WORKSPACE_ID"]
        )
    return ApiClient.of_stack(env)


def _tasks_table(run: dict[str, object], tasks: list[dict[str, object]]) -> Table:
    table = Table(title=f"run {run['runId']}: {run['state']}")
    for column in ("task", "stored state", "attempt", "history"):
        table.add_column(column)
    for task in tasks:
        attempts = task.get("attempts", [])
        history = (
            " | ".join(" -> ".join(a["states"]) for a in attempts if isinstance(a, dict))
            if isinstance(attempts, list)
            else ""
        )
        table.add_row(str(task["taskKey"]), str(task["storedState"]), str(task["attempt"]), history)
    return table


def _watch(client: ApiClient, run_id: str, timeout: float) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    with Live(console=console, refresh_per_second=4) as live:
        while True:
            run = client.get_run(run_id)
            live.update(_tasks_table(run, client.run_tasks(run_id)))
            if run["state"] in ("SUCCEEDED", "FAILED", "CANCELLED", "TIMED_OUT"):
                return run
            if time.monotonic() > deadline:
                raise TimeoutError(f"run {run_id} still {run['state']} after {timeout:.0f}s")
            time.sleep(0.5)


@app.command()
def up(
    data_dir: DataDir = DEFAULT_DATA_DIR,
    demo: Annotated[bool, typer.Option(help="trigger a demo run and watch it")] = False,
    database_url: Annotated[
        str | None, typer.Option(help="default: SQLite in the data dir")
    ] = None,
    exit_after_demo: Annotated[
        bool, typer.Option(help="stop the stack once the demo run ends")
    ] = False,
) -> None:
    """Start api, worker, dispatcher and sweeper with one configuration; Ctrl-C stops them."""
    started = time.monotonic()
    env = stack_environment(data_dir, database_url=database_url)
    stack = Stack(data_dir.resolve(), env)
    stopping = False

    def _stop(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _stop)
    try:
        console.print(
            f"[bold]arco-stack[/]: data in {data_dir.resolve()}, "
            f"database {env['ARCO_DATABASE_URL']}"
        )
        migrate(env)
        # Start everything at once (each service only needs the migrated database), then
        # wait for each in the runbook's deploy order.
        services = [stack.start(spec) for spec in service_specs()]
        for service in services:
            stack.wait_ready(service)
            console.print(f"  {service.spec.name:<10} ready on {service.ready_url}")
        console.print(f"stack ready in {time.monotonic() - started:.1f}s")
        client = _client(data_dir, None, None)
        deployed = client.deploy_manifest(demo_manifest())
        console.print(f"demo manifest deployed: {deployed['manifestId']}")
        if demo:
            run_started = time.monotonic()
            run = client.trigger_run(demo_trigger())
            final = _watch(client, run["runId"], timeout=300)
            console.print(
                f"demo run {final['runId']} ended {final['state']} "
                f"in {time.monotonic() - run_started:.1f}s"
            )
            if exit_after_demo:
                return
        console.print("Ctrl-C stops the stack.")
        while not stopping:
            if reason := stack.first_failure():
                raise StackError(reason)
            time.sleep(0.5)
    except KeyboardInterrupt:
        console.print("stopping")
    except (StackError, httpx.HTTPError, TimeoutError) as exc:
        console.print(f"[red]arco-stack: {exc}[/]")
        raise typer.Exit(1) from None
    finally:
        stack.stop()


def _print_checks(title: str, checks: list[Check]) -> bool:
    table = Table(title=title)
    for column in ("", "check", "evidence"):
        table.add_column(column)
    for check in checks:
        table.add_row("[green]PASS[/]" if check.ok else "[red]FAIL[/]", check.name, check.evidence)
    console.print(table)
    return all(check.ok for check in checks)


@app.command()
def preflight(
    env_file: Annotated[
        Path | None, typer.Option(help="env file; default: the environment")
    ] = None,
    data_dir: Annotated[Path | None, typer.Option(help="use a local stack's configuration")] = None,
    offline: Annotated[bool, typer.Option(help="skip the checks that call the services")] = False,
) -> None:
    """The runbook's preconditions and deploy-order gates; non-zero exit on any failure."""
    env: dict[str, str] = dict(os.environ)
    if data_dir is not None:
        env.update(stack_environment(data_dir))
    if env_file is not None:
        env.update(read_env_file(env_file))
    checks = config_checks(env) + artifact_checks()
    if not offline:
        checks += live_checks(env)
    if not _print_checks("preflight", checks):
        raise typer.Exit(1)


@app.command("verify")
def verify_command(
    data_dir: DataDir = DEFAULT_DATA_DIR,
    api_url: Annotated[
        str | None, typer.Option(help="API root; default: the local stack's")
    ] = None,
    token: Annotated[str | None, typer.Option(help="user bearer JWT")] = None,
    jwt_secret: Annotated[
        str | None, typer.Option(envvar="ARCO_JWT_SECRET", help="mint a user JWT with this secret")
    ] = None,
    tenant: Annotated[str, typer.Option(envvar="ARCO_TENANT_ID")] = TENANT_ID,
    workspace: Annotated[str, typer.Option(envvar="ARCO_WORKSPACE_ID")] = WORKSPACE_ID,
    timeout: float = 180.0,
) -> None:
    """The runbook's verification checklist against a running stack; non-zero on failure.

    Against the local stack of ``--data-dir`` by default; elsewhere give ``--api-url`` and
    either ``--token`` or ``--jwt-secret`` (with ``--tenant``/``--workspace``).
    """
    client = _client(
        data_dir, api_url, token, jwt_secret=jwt_secret, tenant=tenant, workspace=workspace
    )
    try:
        checks = verify(client, timeout=timeout)
    except (httpx.HTTPError, TimeoutError) as exc:
        console.print(f"[red]verify: {exc}[/]")
        raise typer.Exit(1) from None
    if not _print_checks("verification checklist", checks):
        raise typer.Exit(1)


@runs_app.command("list")
def runs_list(
    data_dir: DataDir = DEFAULT_DATA_DIR, limit: int = 20, state: str | None = None
) -> None:
    """Newest runs first."""
    result = _client(data_dir, None, None).list_runs(limit=limit, state=state)
    table = Table()
    for column in ("run", "state", "created", "tasks", "succeeded", "failed"):
        table.add_column(column)
    for run in result["runs"]:
        table.add_row(
            run["runId"],
            run["state"],
            run["createdAt"],
            str(run["taskCount"]),
            str(run["tasksSucceeded"]),
            str(run["tasksFailed"]),
        )
    console.print(table)


@runs_app.command("get")
def runs_get(run_id: str, data_dir: DataDir = DEFAULT_DATA_DIR) -> None:
    """One run with each task's stored state and attempt history."""
    client = _client(data_dir, None, None)
    console.print(_tasks_table(client.get_run(run_id), client.run_tasks(run_id)))


@runs_app.command("cancel")
def runs_cancel(
    run_id: str, data_dir: DataDir = DEFAULT_DATA_DIR, reason: str = "cancelled by arco-stack"
) -> None:
    """Request cancellation of a run."""
    console.print(_client(data_dir, None, None).cancel_run(run_id, reason))


@runs_app.command("watch")
def runs_watch(run_id: str, data_dir: DataDir = DEFAULT_DATA_DIR, timeout: float = 600.0) -> None:
    """Show a run's tasks live until it ends."""
    final = _watch(_client(data_dir, None, None), run_id, timeout)
    console.print(f"run ended {final['state']}")


if __name__ == "__main__":
    app()
