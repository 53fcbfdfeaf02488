"""The ``arco-stack conformance`` command."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from arco_stack.conformance.report import failed, show, write_json
from arco_stack.conformance.runner import run_suite, select
from arco_stack.conformance.suite import DEFAULT_TOLERANCE_SECS, SuiteConfig

EXIT_USAGE = 2


def _listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise typer.BadParameter(f"expected HOST:PORT, got {value!r}", param_hint="--api-listen")
    return host.strip("[]"), int(port)


def conformance(
    worker_url: Annotated[
        str, typer.Option("--worker-url", help="the worker's root URL (or its /dispatch URL)")
    ],
    dispatch_secret: Annotated[
        str,
        typer.Option(
            "--dispatch-secret",
            envvar="ARCO_FLOW_WORKER_DISPATCH_SECRET",
            help="the worker's ARCO_FLOW_WORKER_DISPATCH_SECRET",
        ),
    ],
    tenant: Annotated[str, typer.Option("--tenant", help="the worker's tenant id")],
    workspace: Annotated[str, typer.Option("--workspace", help="the worker's workspace id")],
    api_listen: Annotated[
        str | None,
        typer.Option(
            "--api-listen",
            help="HOST:PORT for the suite's callback API; give it when the worker pins "
            "ARCO_FLOW_API_URL to http://HOST:PORT (else an ephemeral port, pinning SKIP)",
        ),
    ] = None,
    callback_base_url: Annotated[
        str | None,
        typer.Option(
            "--callback-base-url",
            help="the callbackBaseUrl the worker reaches the suite at, when not http://HOST:PORT "
            "of --api-listen (e.g. a worker in a container)",
        ),
    ] = None,
    json_file: Annotated[
        Path | None, typer.Option("--json", help="also write the report as JSON here")
    ] = None,
    only: Annotated[
        list[str] | None, typer.Option("--only", help="run only this scenario (repeatable)")
    ] = None,
    tolerance: Annotated[
        float,
        typer.Option(
            "--tolerance", min=0.0, help="seconds of lateness allowed on timed rules (heartbeats)"
        ),
    ] = DEFAULT_TOLERANCE_SECS,
) -> None:
    """Certify a worker (any language) against docs/worker-protocol.md: the suite plays the
    dispatcher and the callback API, scenario by scenario. Exit 1 on any FAIL.

    The worker registers conformance.ok, conformance.fail and conformance.sleep; the
    reference worker: `arco-worker --worker arco_worker.conformance:worker`.
    """
    console = Console()
    host, port = _listen(api_listen) if api_listen else ("127.0.0.1", 0)
    config = SuiteConfig(
        worker_url=worker_url,
        dispatch_secret=dispatch_secret.strip(),
        tenant=tenant,
        workspace=workspace,
        pinned=api_listen is not None,
        only=tuple(only or ()),
        tolerance_secs=tolerance,
    )
    try:
        select(config.only)
    except ValueError as exc:
        console.print(f"[red]arco-stack conformance: {exc}[/]")
        raise typer.Exit(EXIT_USAGE) from None
    started = time.monotonic()
    try:
        results = asyncio.run(
            run_suite(
                config, listen_host=host, listen_port=port, callback_base_url=callback_base_url
            )
        )
    except OSError as exc:
        console.print(f"[red]arco-stack conformance: cannot listen on {host}:{port}: {exc}[/]")
        raise typer.Exit(EXIT_USAGE) from None
    seconds = time.monotonic() - started
    show(console, results, worker_url)
    console.print(f"{len(results)} scenarios in {seconds:.1f}s")
    if json_file is not None:
        write_json(json_file, results, worker_url, seconds)
    if failed(results):
        raise typer.Exit(1)
