"""The CLI without a running stack: one-line errors with a hint, no secrets created by a
command that does not start a stack, ``--help`` on every console script without any
configuration; and the pieces ``deploy`` and ``up`` are built from."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import jwt
import pytest

from arco_stack.cli import typed_command
from arco_stack.config import Ports, free_port, stack_environment, write_ports
from arco_stack.local import DataDirInUseError, DataDirLock, PortInUseError, check_ports_free
from arco_stack.manifests import ManifestChange, ManifestInputError, manifest_from_worker
from arco_worker import TaskContext, Worker

CONSOLE_SCRIPTS = (
    "arco-stack",
    "arco-api",
    "arco-dispatcher",
    "arco-sweeper",
    "arco-worker",
    "arco-orchestration",
)


def run(
    folder: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own console scripts
        [str(Path(sys.executable).with_name(args[0])), *args[1:]],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )


@pytest.mark.parametrize("command", CONSOLE_SCRIPTS)
def test_help_works_without_any_configuration(tmp_path: Path, command: str) -> None:
    result = run(tmp_path, command, "--help", env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    assert "usage" in result.stdout.lower()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "args",
    [("runs", "list"), ("logs", "abc"), ("token",), ("trigger", "a.b"), ("runs", "get", "x")],
)
def test_read_commands_without_a_stack_create_nothing(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    result = run(tmp_path, "arco-stack", *args)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"arco-stack: no local stack in {tmp_path / '.arco'} (no stack.env): start one there "
        "with `arco-stack up` (or `make up`), or pass --data-dir"
    ]
    assert list(tmp_path.iterdir()) == []


def test_a_stack_that_is_down_is_one_line_with_a_hint(tmp_path: Path) -> None:
    data = tmp_path / ".arco"
    stack_environment(data)  # as a stopped `arco-stack up` leaves it
    port = free_port()
    write_ports(data, Ports(api=port))
    result = run(tmp_path, "arco-stack", "runs", "list")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"arco-stack: no stack answers at http://127.0.0.1:{port} (ConnectError): "
        "start it with `make up` or `arco-stack up`"
    )


def test_a_remote_api_needs_a_credential(tmp_path: Path) -> None:
    result = run(
        tmp_path, "arco-stack", "verify", "--api-url", "http://127.0.0.1:9", "--jwt-secret", ""
    )
    assert result.returncode == 1
    assert "needs --token or a non-empty --jwt-secret" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_deploy_to_a_remote_api_needs_a_credential(tmp_path: Path) -> None:
    (tmp_path / "m.json").write_text('{"assets": []}')
    result = run(
        tmp_path, "arco-stack", "deploy", "m.json", "--api-url", "http://127.0.0.1:9",
        env={"PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert result.returncode == 1
    assert "needs --token or a non-empty --jwt-secret" in result.stderr
    assert [path.name for path in tmp_path.iterdir()] == ["m.json"]


STAGING_SECRET = "a-staging-secret-of-at-least-32-bytes"


def test_a_token_of_another_stack(tmp_path: Path) -> None:
    minted = run(
        tmp_path, "arco-stack", "token", "--jwt-secret", STAGING_SECRET, "--tenant", "acme",
        "--workspace", "prod",
    )  # fmt: skip
    assert minted.returncode == 0, minted.stderr
    claims = jwt.decode(minted.stdout.strip(), STAGING_SECRET, algorithms=["HS256"])
    assert (claims["tenant"], claims["workspace"]) == ("acme", "prod")
    assert list(tmp_path.iterdir()) == []  # no local stack needed, none created
    empty = run(tmp_path, "arco-stack", "token", "--jwt-secret", " ")
    assert empty.returncode == 1
    assert "--jwt-secret is empty" in empty.stderr


def test_a_port_in_use_is_named_before_anything_starts() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(PortInUseError, match=f"port {port} \\(dispatcher\\) is already in use"):
            check_ports_free(Ports(api=free_port(), dispatcher=port))


def test_a_port_in_use_names_the_way_out() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(PortInUseError, match=r"or pass --free-ports$"):
            check_ports_free(Ports(api=taken.getsockname()[1]))


def test_one_stack_per_data_dir(tmp_path: Path) -> None:
    data = tmp_path / ".arco"
    write_ports(data, Ports(api=41234))
    first, second = DataDirLock(data), DataDirLock(data)
    first.acquire()
    try:
        with pytest.raises(DataDirInUseError) as refused:
            second.acquire()
        assert str(refused.value) == (
            f"a stack already runs from {data} (pid {os.getpid()}, API http://127.0.0.1:41234): "
            "use it, stop it with Ctrl-C in its terminal, or start another one with "
            "--data-dir DIR --free-ports"
        )
        assert not second.held
    finally:
        first.release()
    second.acquire()  # free again once the first stack stopped
    second.release()


def _worker() -> Worker:
    worker = Worker("shop")

    @worker.task("shop.orders")
    def orders(ctx: TaskContext) -> None:
        """Load the orders."""

    @worker.task("shop.report", deps=["shop.orders"])
    def report(ctx: TaskContext) -> None:
        return None

    return worker


def test_a_manifest_is_derived_from_the_workers_tasks() -> None:
    manifest = manifest_from_worker(_worker())
    assets = {f"{a['key']['namespace']}.{a['key']['name']}": a for a in manifest["assets"]}
    assert set(assets) == {"shop.orders", "shop.report"}
    assert assets["shop.report"]["dependencies"] == [
        {"upstreamKey": {"namespace": "shop", "name": "orders"}, "parameterName": "orders"}
    ]
    assert assets["shop.orders"]["description"] == "Load the orders."
    assert assets["shop.orders"]["code"]["function"] == "orders"
    assert manifest == manifest_from_worker(_worker())  # same code, same manifest
    assert manifest["codeVersionId"].startswith("shop-")


@pytest.mark.parametrize(
    ("key", "deps", "message"),
    [
        ("Shop.orders", [], "is not an asset key"),
        ("noseparator", [], "is not an asset key"),
        ("shop.report", ["shop.missing"], "depends on shop.missing, which this worker"),
    ],
)
def test_a_worker_that_cannot_be_a_manifest_says_why(
    key: str, deps: list[str], message: str
) -> None:
    worker = Worker()
    worker.add(key, lambda ctx: None, deps=deps)
    with pytest.raises(ManifestInputError, match=message):
        manifest_from_worker(worker)


def test_the_change_relative_to_the_active_manifest() -> None:
    active = manifest_from_worker(_worker())
    new = {"assets": [{"key": {"namespace": "shop", "name": "orders"}},
                      {"key": {"namespace": "shop", "name": "refunds"}}]}  # fmt: skip
    change = ManifestChange.between(active, new)
    assert change.to_json() == {
        "added": ["shop.refunds"],
        "removed": ["shop.report"],
        "kept": ["shop.orders"],
    }
    assert ManifestChange.between(None, new).added == ["shop.orders", "shop.refunds"]


def test_the_banners_commands_are_typed_as_the_shell_finds_arco_stack(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    script = Path(sys.executable).with_name("arco-stack")
    monkeypatch.setattr(sys, "argv", [str(script), "up"])
    # `make up` starts .venv/bin/arco-stack without .venv/bin on the user's PATH.
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    assert typed_command() == str(script)
    monkeypatch.setenv("PATH", f"{script.parent}:/usr/bin:/bin")
    assert typed_command() == "arco-stack"
