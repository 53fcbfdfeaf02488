"""Options and clients shared by the ``arco-stack`` commands."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from arco_stack.cli_support import CliError
from arco_stack.client import ApiClient, user_token
from arco_stack.config import TENANT_ID, WORKSPACE_ID, recorded_ports, stack_environment

DataDir = Annotated[
    Path, typer.Option("--data-dir", help="where the local stack keeps secrets, SQLite and logs")
]
DEFAULT_DATA_DIR = Path(".arco")
JsonFlag = Annotated[bool, typer.Option("--json", help="print the API's JSON document only")]
WorkerOption = Annotated[
    str | None,
    typer.Option(
        "--worker", metavar="MODULE:ATTR", help="your arco_worker.Worker, e.g. mytasks:worker"
    ),
]
WorkerDir = Annotated[
    Path | None,
    typer.Option("--worker-dir", help="folder to import --worker from (default: current folder)"),
]
ApiUrl = Annotated[str | None, typer.Option(help="API root; default: the local stack's")]
TokenOption = Annotated[str | None, typer.Option(help="user bearer JWT (with --api-url)")]
JwtSecret = Annotated[
    str | None,
    typer.Option(envvar="ARCO_JWT_SECRET", help="with --api-url: mint a user JWT with this secret"),
]
Tenant = Annotated[str, typer.Option(envvar="ARCO_TENANT_ID")]
Workspace = Annotated[str, typer.Option(envvar="ARCO_WORKSPACE_ID")]


def local_env(data_dir: Path) -> dict[str, str]:
    """The environment of the local stack of ``data_dir`` (never creates secrets)."""
    return stack_environment(data_dir, ports=recorded_ports(data_dir), create=False)


def local_client(data_dir: Path) -> ApiClient:
    """A client of the local stack of ``data_dir``."""
    return ApiClient.of_stack(local_env(data_dir))


def client_for(
    data_dir: Path,
    api_url: str | None,
    token: str | None,
    *,
    jwt_secret: str | None = None,
    tenant: str | None = None,
    workspace: str | None = None,
) -> ApiClient:
    """A run-API client: the local stack's URL and credentials unless ``api_url`` is given,
    which then needs ``token`` or a non-empty ``jwt_secret``."""
    if api_url is None:
        if token:
            env = local_env(data_dir)
            return ApiClient(env["ARCO_FLOW_CALLBACK_BASE_URL"], token, env["ARCO_WORKSPACE_ID"])
        return local_client(data_dir)
    workspace = workspace or WORKSPACE_ID
    if token:
        return ApiClient(api_url, token, workspace)
    if not (jwt_secret or "").strip():
        raise CliError(
            f"--api-url {api_url} needs --token or a non-empty --jwt-secret "
            "(ARCO_JWT_SECRET; with compose: `set -a; . ./.env; set +a` first)"
        )
    return ApiClient(
        api_url, user_token(jwt_secret or "", tenant or TENANT_ID, workspace), workspace
    )


def print_json(document: Any) -> None:
    # Plain print: rich would re-wrap long lines and break the JSON for scripts.
    print(json.dumps(document, indent=2))
