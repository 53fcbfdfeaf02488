"""``arco-stack preflight`` and ``arco-stack verify``: the runbook's checks."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from arco_stack.cli_options import (
    DEFAULT_DATA_DIR,
    ApiUrl,
    DataDir,
    JwtSecret,
    Tenant,
    TokenOption,
    Workspace,
    client_for,
    local_env,
)
from arco_stack.cli_support import handled, out
from arco_stack.config import TENANT_ID, WORKSPACE_ID, read_env_file
from arco_stack.preflight import artifact_checks, config_checks, live_checks
from arco_stack.verification import Check, verify


def _print_checks(title: str, checks: list[Check]) -> bool:
    table = Table(title=title)
    for column in ("", "check", "evidence"):
        table.add_column(column)
    for check in checks:
        table.add_row("[green]PASS[/]" if check.ok else "[red]FAIL[/]", check.name, check.evidence)
    out.print(table)
    return all(check.ok for check in checks)


@handled
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
        env.update(local_env(data_dir))
    if env_file is not None:
        env.update(read_env_file(env_file))
    checks = config_checks(env) + artifact_checks()
    if not offline:
        checks += live_checks(env)
    if not _print_checks("preflight", checks):
        raise typer.Exit(1)


@handled
def verify_command(
    data_dir: DataDir = DEFAULT_DATA_DIR,
    api_url: ApiUrl = None,
    token: TokenOption = None,
    jwt_secret: JwtSecret = None,
    tenant: Tenant = TENANT_ID,
    workspace: Workspace = WORKSPACE_ID,
    select: Annotated[
        list[str] | None,
        typer.Option(help="probe with this existing asset (repeatable); deploys nothing"),
    ] = None,
    deploy_probe: Annotated[
        bool, typer.Option(help="deploy the probe manifest even over another manifest")
    ] = False,
    timeout: float = 180.0,
) -> None:
    """The runbook's verification checklist against a running stack; non-zero on failure.

    Against the local stack of ``--data-dir`` by default; elsewhere give ``--api-url`` and
    either ``--token`` or ``--jwt-secret`` (with ``--tenant``/``--workspace``). It never
    replaces a manifest it did not deploy: it probes with ``--select KEY`` (an existing asset),
    or deploys its probe manifest only into an empty workspace or with ``--deploy-probe``.
    """
    with client_for(
        data_dir, api_url, token, jwt_secret=jwt_secret, tenant=tenant, workspace=workspace
    ) as client:
        checks = verify(client, timeout=timeout, select=select, deploy_probe=deploy_probe)
    if not _print_checks("verification checklist", checks):
        raise typer.Exit(1)
