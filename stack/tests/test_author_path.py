"""The worker author's path through real processes: ``arco-stack up --worker`` runs a worker
written in a temporary folder, then deploy, trigger, logs and the runs commands are run as a
user types them; the worker dying (and ``--reload``) leaves the rest of the stack up."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from arco_stack.config import read_env_file, recorded_ports

DEADLINE_SECS = 180.0
WORKER_CODE = """\
import logging
import os

from arco_worker import TaskContext, Worker

worker = Worker()
log = logging.getLogger("mytasks")


@worker.task("hello.extract")
def extract(ctx: TaskContext) -> dict[str, int]:
    log.warning("extracting %s", ctx.run_id)
    return {"rowCount": 3}


@worker.task("hello.report", deps=["hello.extract"])
def report(ctx: TaskContext) -> None:
    print("VERSION-MARK report printed this line")


@worker.task("hello.broken")
def broken(ctx: TaskContext) -> None:
    raise ValueError("the input was empty")


@worker.task("hello.crash")
def crash(ctx: TaskContext) -> None:
    os._exit(3)
"""


def script(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


def wait_for(check: Callable[[], bool], what: str, timeout: float = DEADLINE_SECS) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.2)


@dataclass
class Up:
    folder: Path
    process: subprocess.Popen[bytes]
    stdout: Path
    stderr: Path

    def output(self) -> str:
        return self.stdout.read_text() + self.stderr.read_text()

    def cli(self, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(  # noqa: S603 - our own console script
            [script("arco-stack"), *args],
            cwd=self.folder,
            capture_output=True,
            text=True,
            timeout=DEADLINE_SECS,
            check=False,
        )
        if check:
            assert result.returncode == 0, result.stdout + result.stderr
        return result

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{recorded_ports(self.folder / '.arco').api}"


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    folder = tmp_path_factory.mktemp("author")
    (folder / "mytasks.py").write_text(WORKER_CODE.replace("VERSION-MARK", "v1"))
    stdout, stderr = folder / "up.out", folder / "up.err"
    with stdout.open("wb") as out, stderr.open("wb") as err:
        process = subprocess.Popen(  # noqa: S603 - our own console script
            [script("arco-stack"), "up", "--worker", "mytasks:worker", "--reload"],
            cwd=folder,
            stdout=out,
            stderr=err,
            env={**os.environ, "ARCO_STACK_FREE_PORTS": "1"},
        )
    running = Up(folder, process, stdout, stderr)
    try:
        wait_for(
            lambda: "Ctrl-C stops the stack" in running.output() or process.poll() is not None,
            "the ready banner",
        )
        assert process.poll() is None, running.output()
        yield running
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_the_banner_says_where_everything_is(up: Up) -> None:
    banner = up.stdout.read_text()
    for expected in (
        f"API        {up.api_url}",
        f"API docs   {up.api_url}/docs",
        f"console    {up.api_url}/ui",
        "tenant     local   workspace demo",
        "tasks      hello.broken, hello.crash, hello.extract, hello.report",
        "arco-stack deploy --worker mytasks:worker",
        "arco-stack trigger",
    ):
        assert expected in banner, banner
    # Nothing was deployed: `up` deploys the demo manifest only with --demo.
    assert up.cli("runs", "list", "--json", check=True).stdout.strip().startswith("{")
    manifests = httpx.get(
        f"{up.api_url}/api/v1/workspaces/demo/manifests",
        headers={"Authorization": f"Bearer {up.cli('token', check=True).stdout.strip()}"},
    )
    assert manifests.json() == {"manifests": []}


def test_a_second_up_in_the_same_folder_refuses_and_leaves_the_first_alone(up: Up) -> None:
    ports = (up.folder / ".arco" / "ports.env").read_text()
    second = up.cli("up", "--worker", "mytasks:worker", "--free-ports")
    assert second.returncode == 1
    assert (
        f"a stack already runs from {up.folder / '.arco'} (pid {up.process.pid}, "
        f"API {up.api_url})" in second.stderr
    ), second.stderr
    # The first stack's ports are still the recorded ones and it still answers.
    assert (up.folder / ".arco" / "ports.env").read_text() == ports
    assert up.cli("runs", "list").returncode == 0


def test_deploy_trigger_and_read_the_printed_line(up: Up) -> None:
    deployed = up.cli("deploy", "--worker", "mytasks:worker", check=True).stdout
    assert "added   hello.broken, hello.crash, hello.extract, hello.report" in deployed
    triggered = up.cli("trigger", "hello.report", "--upstream", "--wait", "--json")
    assert triggered.returncode == 0, triggered.stderr
    run = json.loads(triggered.stdout)  # stdout holds only the run document
    assert run["state"] == "SUCCEEDED"
    assert {task["taskKey"] for task in run["tasks"]} == {"hello.extract", "hello.report"}
    assert "hello.report: SUCCEEDED" in triggered.stderr  # progress went to stderr
    prefix = run["runId"][:12]
    logs = up.cli("logs", prefix, check=True).stdout
    assert "v1 report printed this line" in logs
    assert f"WARNING mytasks: extracting {run['runId']}" in logs
    only = up.cli("logs", prefix, "--task", "hello.extract", check=True).stdout
    assert "report printed" not in only
    followed = up.cli("logs", prefix, "--follow", check=True).stdout  # the run ended: returns
    assert followed == logs
    watched = up.cli("runs", "watch", prefix, "--json", check=True)
    assert json.loads(watched.stdout)["state"] == "SUCCEEDED"
    # Deploying the same worker again changes nothing.
    again = up.cli("deploy", "--worker", "mytasks:worker", check=True).stdout
    assert "added   -" in again
    assert "removed -" in again


def test_a_failed_run_exits_1_and_prints_the_error(up: Up) -> None:
    up.cli("deploy", "--worker", "mytasks:worker", check=True)
    result = up.cli("trigger", "hello.broken", "--wait")
    assert result.returncode == 1
    assert "hello.broken FAILED: ValueError: the input was empty" in result.stdout
    # While it waits for a retry, the progress says why.
    assert "hello.broken: PENDING, retrying after ValueError: the input was empty" in (
        result.stdout
    ), result.stdout
    run_id = result.stdout.split()[1]
    # The traceback is in the task's logs, as the tutorial says.
    logs = up.cli("logs", run_id, check=True).stdout
    assert "Traceback (most recent call last):" in logs
    assert 'raise ValueError("the input was empty")' in logs
    # Tables never cut an id, even at the 80 columns of a pipe.
    assert run_id in up.cli("runs", "list", check=True).stdout
    cancelled = up.cli("runs", "cancel", run_id)
    assert cancelled.returncode == 1
    assert cancelled.stderr.strip() == (
        f"arco-stack: run {run_id} already ended FAILED: nothing to cancel"
    )


def test_bad_run_ids_are_one_line_with_a_hint(up: Up) -> None:
    for args in (("runs", "get", "no-such-run"), ("logs", "zz"), ("runs", "watch", "nope")):
        result = up.cli(*args)
        assert result.returncode == 1
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "no run matches" in result.stderr
        assert "runs list" in result.stderr


def test_deploy_to_an_api_by_url_and_secret(up: Up, tmp_path: Path) -> None:
    # As against staging: no local data dir, the API's URL and its JWT secret.
    secret = read_env_file(up.folder / ".arco" / "stack.env")["ARCO_JWT_SECRET"]
    result = up.cli(
        "deploy", "--worker", "mytasks:worker", "--data-dir", str(tmp_path / "none"),
        "--api-url", up.api_url, "--jwt-secret", secret,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "kept    hello.broken, hello.crash, hello.extract, hello.report" in result.stdout
    token = up.cli("token", "--jwt-secret", secret, check=True).stdout.strip()
    runs = httpx.get(
        f"{up.api_url}/api/v1/workspaces/demo/runs", headers={"Authorization": f"Bearer {token}"}
    )
    assert runs.status_code == 200
    assert not (tmp_path / "none").exists()


def test_verify_never_replaces_the_authors_manifest(up: Up) -> None:
    up.cli("deploy", "--worker", "mytasks:worker", check=True)
    refused = up.cli("verify")
    assert refused.returncode == 1
    assert "was not deployed by verify" in refused.stderr
    assert "--select KEY" in refused.stderr
    probed = up.cli("verify", "--select", "hello.extract")
    assert probed.returncode == 0, probed.stdout + probed.stderr
    # The author's manifest is still the active one.
    assert up.cli("trigger", "hello.report", "--upstream", "--wait").returncode == 0


def test_the_worker_dying_leaves_the_rest_up_and_reload_restarts_it(up: Up) -> None:
    up.cli("deploy", "--worker", "mytasks:worker", check=True)
    up.cli("trigger", "hello.crash", check=True)
    wait_for(lambda: "worker exited with code 3" in up.stderr.read_text(), "the worker's death")
    assert "the other services keep running" in up.stderr.read_text()
    assert up.process.poll() is None
    assert httpx.get(f"{up.api_url}/ready").status_code == 200
    (up.folder / "mytasks.py").write_text(WORKER_CODE.replace("VERSION-MARK", "v2"))
    wait_for(lambda: "worker restarted" in up.stderr.read_text(), "the worker's restart")
    result = up.cli("trigger", "hello.report", "--upstream", "--wait", "--json")
    assert result.returncode == 0, result.stderr
    logs = up.cli("logs", json.loads(result.stdout)["runId"], check=True).stdout
    assert "v2 report printed this line" in logs
