"""``arco-stack``: run the stack locally (with your own worker), deploy, trigger, read logs,
check the cutover preconditions, verify a running stack, and look at runs."""

from __future__ import annotations

import re
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from arco_stack.cli_checks import preflight, verify_command
from arco_stack.cli_options import (
    DEFAULT_DATA_DIR,
    ApiUrl,
    DataDir,
    JsonFlag,
    JwtSecret,
    Tenant,
    TokenOption,
    WorkerDir,
    WorkerOption,
    Workspace,
    client_for,
    local_client,
    local_env,
    print_json,
)
from arco_stack.cli_runs import runs_app
from arco_stack.cli_support import (
    CliError,
    err,
    failed_tasks,
    handled,
    out,
    resolve_run_id,
    wait_for_run,
)
from arco_stack.client import user_token
from arco_stack.config import (
    TENANT_ID,
    WORKSPACE_ID,
    Ports,
)
from arco_stack.conformance.command import conformance
from arco_stack.demo import demo_trigger
from arco_stack.local import WORKER, LocalStack
from arco_stack.manifests import ManifestChange, manifest_from_file, manifest_from_worker
from arco_stack.processes import Service

app = typer.Typer(help=__doc__, no_args_is_help=True, pretty_exceptions_enable=False)
app.add_typer(runs_app, name="runs")
_PARTITION = re.compile(r"^([^=\s]+)=(.*)$")


def _load_worker(spec: str, worker_dir: Path | None) -> Any:
    # Imported here: the worker's service stack (uvicorn, FastAPI) is slow to import and
    # only these commands need it.
    from arco_worker.serving import load_worker  # noqa: PLC0415

    return load_worker(spec, worker_dir)


def _worker_tasks(spec: str, worker_dir: Path | None) -> list[str]:
    return sorted(_load_worker(spec, worker_dir).tasks)


def typed_command() -> str:
    """How to type ``arco-stack`` here: its bare name when the shell finds this very script
    on PATH, else the path it was started by (``make up`` runs ``.venv/bin/arco-stack``
    without putting ``.venv/bin`` on the user's PATH)."""
    invoked = Path(sys.argv[0])
    found = shutil.which("arco-stack")
    if invoked.name != "arco-stack" or not invoked.is_file():
        return "arco-stack"
    if found is not None and Path(found).samefile(invoked):
        return "arco-stack"
    return str(invoked)


def _banner(stack: LocalStack, elapsed: float, tasks: list[str] | None) -> None:
    api = stack.api_url
    data = stack.data_dir.resolve()
    lines = [
        f"[bold green]arco stack ready[/] in {elapsed:.1f}s",
        f"  API        {api}",
        f"  API docs   {api}/docs",
        f"  console    {api}/ui",
        f"  tenant     {stack.env['ARCO_TENANT_ID']}   workspace {stack.env['ARCO_WORKSPACE_ID']}",
        f"  data       {data}   (service logs in {data / 'logs'})",
    ]
    flag = "" if stack.data_dir == DEFAULT_DATA_DIR else f" --data-dir {stack.data_dir}"
    cmd = typed_command()
    if stack.worker:
        reload = ", restarted when a .py file changes" if stack.reload else ""
        lines.append(f"  worker     {stack.worker} from {stack.worker_folder}{reload}")
        if tasks:
            lines.append(f"  tasks      {', '.join(tasks)}")
        key = tasks[-1] if tasks else "NAMESPACE.NAME"
        lines += [
            "Next, in another terminal here:",
            f"  {cmd} deploy --worker {stack.worker}{flag}",
            f"  {cmd} trigger {key} --upstream --wait{flag}",
        ]
    else:
        lines += [
            "Next:",
            f"  {cmd} trigger demo.sleep --upstream --partition date=2026-01-01 --wait{flag}"
            if stack.demo
            else f"  {cmd} up --demo   (your own worker: see docs/getting-started.md)",
            f"  {cmd} runs list{flag}",
        ]
    lines.append("Ctrl-C stops the stack.")
    for line in lines:
        out.print(line, highlight=False)


@app.command()
@handled
def up(
    data_dir: DataDir = DEFAULT_DATA_DIR,
    worker: WorkerOption = None,
    worker_dir: WorkerDir = None,
    reload: Annotated[
        bool, typer.Option(help="restart the worker when a .py file under --worker-dir changes")
    ] = False,
    demo: Annotated[
        bool, typer.Option(help="deploy the demo manifest, trigger a demo run and watch it")
    ] = False,
    database_url: Annotated[
        str | None, typer.Option(help="default: SQLite in the data dir")
    ] = None,
    exit_after_demo: Annotated[
        bool, typer.Option(help="stop the stack once the demo run ends")
    ] = False,
    free_ports: Annotated[
        bool,
        typer.Option(
            envvar="ARCO_STACK_FREE_PORTS",
            help="pick free ports instead of 8080-8082 and 8090 (the other commands find them)",
        ),
    ] = False,
) -> None:
    """Start api, worker, dispatcher and sweeper with one configuration; Ctrl-C stops them.

    With --worker MODULE:ATTR your worker runs instead of the sample worker; when it dies the
    rest keeps running. Nothing is deployed unless --demo is given.
    """
    started = time.monotonic()
    if reload and worker is None:
        raise CliError("--reload restarts your worker: give --worker MODULE:ATTR too")
    tasks = _worker_tasks(worker, worker_dir) if worker else None
    stack = LocalStack(
        data_dir, worker=worker, worker_dir=worker_dir, reload=reload, demo=demo,
        database_url=database_url, ports=Ports.free() if free_ports else Ports(),
    )  # fmt: skip
    stopping = False

    def _stop(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    def _ready(service: Service) -> None:
        err.print(f"  {service.spec.name:<10} ready", highlight=False, style="dim")

    signal.signal(signal.SIGTERM, _stop)
    try:
        err.print(f"starting the stack in {data_dir.resolve()}", highlight=False, style="dim")
        stack.start(on_ready=_ready)
        _banner(stack, time.monotonic() - started, tasks)
        if demo:
            with stack.client() as client:
                run = client.trigger_run(demo_trigger())
                final = wait_for_run(client, run["runId"], timeout=300, console=out)
            out.print(f"demo run {final['runId']} ended {final['state']}", highlight=False)
            if exit_after_demo:
                return
        while not stopping:
            for event in stack.poll():
                style = "green" if event.kind == "restarted" else "red"
                err.print(f"{WORKER}: {event.message}", style=style, markup=False, highlight=False)
            time.sleep(0.5)
    except KeyboardInterrupt:
        err.print("stopping")
    finally:
        stack.stop()


@app.command()
@handled
def token(
    data_dir: DataDir = DEFAULT_DATA_DIR,
    ttl: Annotated[int, typer.Option(min=1, max=31 * 24 * 3600, help="seconds")] = 3600,
    user: Annotated[str, typer.Option(help="the token's sub claim")] = "arco-stack",
    jwt_secret: Annotated[
        str | None,
        typer.Option(help="another stack's secret, e.g. \"$ARCO_JWT_SECRET\" of staging's .env"),
    ] = None,
    tenant: Tenant = TENANT_ID,
    workspace: Workspace = WORKSPACE_ID,
) -> None:
    """Print a user JWT for the local stack: curl -H "Authorization: Bearer $(arco-stack token)".

    With --jwt-secret (and --tenant, --workspace): a token of another stack, e.g. staging.
    """
    if jwt_secret is not None:
        if not jwt_secret.strip():
            raise CliError("--jwt-secret is empty (with compose: `set -a; . ./.env; set +a` first)")
        secret = jwt_secret
    else:
        env = local_env(data_dir)
        secret, tenant, workspace = (
            env["ARCO_JWT_SECRET"], env["ARCO_TENANT_ID"], env["ARCO_WORKSPACE_ID"]
        )  # fmt: skip
    print(user_token(secret, tenant, workspace, user=user, ttl_seconds=ttl))


@app.command()
@handled
def deploy(
    manifest_file: Annotated[
        Path | None, typer.Argument(help="a manifest JSON file (docs/manifest.md)")
    ] = None,
    worker: WorkerOption = None,
    worker_dir: WorkerDir = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    as_json: JsonFlag = False,
    dry_run: Annotated[
        bool, typer.Option(help="print the manifest (JSON) instead of deploying it")
    ] = False,
    api_url: ApiUrl = None,
    token: TokenOption = None,
    jwt_secret: JwtSecret = None,
    tenant: Tenant = TENANT_ID,
    workspace: Workspace = WORKSPACE_ID,
) -> None:
    """Deploy a manifest derived from your worker's tasks (--worker) or a manifest file;
    prints the assets added, removed and kept relative to the active manifest.

    To the local stack of --data-dir by default; elsewhere (staging) give --api-url and
    either --token or --jwt-secret (with --tenant, --workspace).
    """
    if (manifest_file is None) == (worker is None):
        raise CliError("give either --worker MODULE:ATTR or a manifest FILE.json")
    manifest = (
        manifest_from_worker(_load_worker(worker, worker_dir))
        if worker is not None
        else manifest_from_file(manifest_file)  # type: ignore[arg-type]
    )
    if dry_run:
        print_json(manifest)
        return
    with client_for(
        data_dir, api_url, token, jwt_secret=jwt_secret, tenant=tenant, workspace=workspace
    ) as client:
        change = ManifestChange.between(client.latest_manifest(), manifest)
        deployed = client.deploy_manifest(manifest)
    if as_json:
        print_json({**deployed, **change.to_json()})
        return
    out.print(
        f"deployed manifest {deployed['manifestId']} ({deployed['assetCount']} assets, "
        f"code version {deployed['codeVersionId']})",
        highlight=False,
    )
    for label, keys in (
        ("added", change.added),
        ("removed", change.removed),
        ("kept", change.kept),
    ):
        out.print(f"  {label:<8}{', '.join(keys) if keys else '-'}", highlight=False)


def _partitions(values: list[str]) -> list[dict[str, str]]:
    partitions = []
    for value in values:
        match = _PARTITION.match(value)
        if match is None:
            raise CliError(f"--partition must look like KEY=VALUE, not {value!r}")
        partitions.append({"key": match.group(1), "value": match.group(2)})
    return partitions


@app.command()
@handled
def trigger(
    keys: Annotated[list[str], typer.Argument(help="asset keys to run (namespace.name)")],
    partition: Annotated[
        list[str] | None, typer.Option(help="partition dimension KEY=VALUE (repeatable)")
    ] = None,
    upstream: Annotated[bool, typer.Option(help="also run what the keys depend on")] = False,
    downstream: Annotated[bool, typer.Option(help="also run what depends on the keys")] = False,
    wait: Annotated[
        bool, typer.Option(help="show progress; exit 0 only when the run SUCCEEDED")
    ] = False,
    timeout: Annotated[float, typer.Option(help="seconds --wait waits")] = 600.0,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    as_json: JsonFlag = False,
) -> None:
    """Trigger a run of KEY...; with --wait follow it to its end."""
    body: dict[str, Any] = {"selection": keys}
    if partition:
        body["partitions"] = _partitions(partition)
    if upstream:
        body["includeUpstream"] = True
    if downstream:
        body["includeDownstream"] = True
    progress = err if as_json else out
    with local_client(data_dir) as client:
        created = client.trigger_run(body)
        run_id = created["runId"]
        if not wait:
            if as_json:
                print_json(created)
            else:
                out.print(f"run {run_id} {created['state']}", highlight=False)
            return
        progress.print(f"run {run_id} triggered", highlight=False)
        run = wait_for_run(client, run_id, timeout=timeout, console=progress)
    if as_json:
        print_json(run)
    progress.print(f"run {run_id} {run['state']}", highlight=False)
    if run["state"] != "SUCCEEDED":
        for key, state, message in failed_tasks(run):
            progress.print(f"  {key} {state}: {message or '-'}", markup=False, highlight=False)
        progress.print(f"logs: arco-stack logs {run_id}", highlight=False)
        raise typer.Exit(1)


def _sections(text: str) -> list[str]:
    """The per-attempt sections of a log text (each starts with a ``=== `` line)."""
    return [part for part in re.split(r"(?m)^(?==== )", text) if part]


@app.command()
@handled
def logs(
    run_id: Annotated[str, typer.Argument(help="run id or a unique prefix of one")],
    task: Annotated[str | None, typer.Option(help="only this task key")] = None,
    follow: Annotated[bool, typer.Option(help="keep printing new logs until the run ends")] = False,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    as_json: JsonFlag = False,
) -> None:
    """Print what a run's tasks wrote (stdout, stderr and log records, per attempt)."""
    with local_client(data_dir) as client:
        run_id = resolve_run_id(client, run_id)
        if not follow:
            text = client.run_logs(run_id, task)
            if as_json:
                print_json({"runId": run_id, "taskKey": task, "logs": text or ""})
            elif text is None:
                raise CliError(
                    f"no logs for run {run_id}{f' task {task}' if task else ''} yet "
                    "(a task that writes nothing uploads none)"
                )
            else:
                print(text, end="")
            return
        printed: set[str] = set()
        while True:
            ended = client.get_run(run_id)["state"] in ("SUCCEEDED", "FAILED", "CANCELLED")
            for section in _sections(client.run_logs(run_id, task) or ""):
                if section not in printed:
                    printed.add(section)
                    print(section, end="", flush=True)
            if ended:
                return
            time.sleep(1.0)


# Registered after the commands above so `--help` lists the author's commands first.
app.command()(preflight)
app.command("verify")(verify_command)
app.command()(conformance)


if __name__ == "__main__":
    app()
