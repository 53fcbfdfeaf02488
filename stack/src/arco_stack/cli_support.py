"""What every ``arco-stack`` command shares: one-line errors with a hint instead of
tracebacks, run-id prefixes, and waiting for a run while showing its progress."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

import httpx
import typer
from rich.console import Console

from arco_stack.client import ApiClient, ApiResponseError
from arco_stack.config import NoLocalStackError
from arco_stack.manifests import ManifestInputError
from arco_stack.processes import StackError
from arco_stack.verification import VerifyRefusedError
from arco_worker import RegistrationError

RUN_TERMINAL = ("SUCCEEDED", "FAILED", "CANCELLED", "TIMED_OUT")
PREFIX_SCAN_LIMIT = 200  # runs per page when resolving a prefix (the API's maximum)
PREFIX_SCAN_PAGES = 25

P = ParamSpec("P")
R = TypeVar("R")

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


class CliError(Exception):
    """A failure the user can act on: printed as one line, exit code 1."""


def fail(message: str) -> typer.Exit:
    err.print(f"arco-stack: {message}", style="red", markup=False, highlight=False)
    return typer.Exit(1)


def _api_message(exc: ApiResponseError) -> str:
    request = exc.request
    where = f"{request.method} {request.url.path}"
    if exc.status == 401:
        return (
            f"{where} -> 401 {exc.api_message}: the API refused the credentials "
            "(is the stack at this URL the one of --data-dir? give --token or --jwt-secret)"
        )
    return f"{where} -> {exc.status}: {exc.api_message}"


def _root_of(exc: httpx.TransportError) -> str:
    try:
        url = exc.request.url
    except RuntimeError:  # no request attached
        return "the API URL"
    return f"{url.scheme}://{url.netloc.decode()}"


def handled(command: Callable[P, R]) -> Callable[P, R]:
    """Turn the failures a user can act on into one line with a hint, exit code 1."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except (
            CliError,
            NoLocalStackError,
            ManifestInputError,
            RegistrationError,
            StackError,
            VerifyRefusedError,
        ) as exc:
            raise fail(str(exc)) from None
        except ApiResponseError as exc:
            raise fail(_api_message(exc)) from None
        except httpx.TransportError as exc:
            raise fail(
                f"no stack answers at {_root_of(exc)} ({type(exc).__name__}): "
                "start it with `make up` or `arco-stack up`"
            ) from None
        except TimeoutError as exc:
            raise fail(str(exc)) from None

    return wrapper


def resolve_run_id(client: ApiClient, given: str) -> str:
    """The run whose id is ``given`` or starts with it (unique prefix); a clear error when
    none or several match."""
    if not given.strip():
        raise CliError("a run id (or a unique prefix of one) is required")
    try:
        return str(client.get_run(given)["runId"])
    except ApiResponseError as exc:
        if exc.status != 404:
            raise
    matches: list[str] = []
    cursor: str | None = None
    for _ in range(PREFIX_SCAN_PAGES):
        page = client.list_runs(limit=PREFIX_SCAN_LIMIT, cursor=cursor)
        matches += [run["runId"] for run in page["runs"] if run["runId"].startswith(given)]
        cursor = page.get("nextCursor")
        if not cursor:
            break
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise CliError(f"no run matches {given!r} (`arco-stack runs list` shows the run ids)")
    shown = ", ".join(matches[:5]) + (", ..." if len(matches) > 5 else "")
    raise CliError(f"{given!r} matches {len(matches)} runs ({shown}): give more of the id")


def wait_for_run(
    client: ApiClient, run_id: str, *, timeout: float, console: Console
) -> dict[str, Any]:
    """Poll the run until it ends, printing each task state change; ``TimeoutError`` after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    seen: dict[str, str] = {}
    started = time.monotonic()
    while True:
        run = client.get_run(run_id)
        for task in run.get("tasks", []):
            key, state = task["taskKey"], task["state"]
            attempt = f" (attempt {task['attempt']})" if task.get("attempt", 0) > 1 else ""
            if seen.get(key) != f"{state}{attempt}":
                seen[key] = f"{state}{attempt}"
                elapsed = time.monotonic() - started
                # PENDING with an error: an attempt failed and the task waits for its retry.
                error = task.get("errorMessage") if state == "PENDING" else None
                retry = f", retrying after {error}" if error else ""
                console.print(
                    f"  {elapsed:5.1f}s  {key}: {state}{attempt}{retry}",
                    markup=False,
                    highlight=False,
                )
        if run["state"] in RUN_TERMINAL:
            return run
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"run {run_id} still {run['state']} after {timeout:.0f}s "
                f"(`arco-stack runs watch {run_id}` keeps watching)"
            )
        time.sleep(0.3)


def failed_tasks(run: dict[str, Any]) -> list[tuple[str, str, str]]:
    """``(task key, state, error message)`` of every task that did not succeed."""
    return [
        (task["taskKey"], task["state"], task.get("errorMessage") or "")
        for task in run.get("tasks", [])
        if task["state"] not in ("SUCCEEDED",)
    ]
