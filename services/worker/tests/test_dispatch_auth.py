"""Dispatch authentication and routes: the secret is checked from the headers, before the
body is read (arco-contract 3.2 items 1-2)."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from services.worker.tests.worker_test_support import (
    SECRET,
    FakeCallbackApi,
    RunningWorker,
    make_envelope,
    running_worker,
)

from arco_envelope import DISPATCH_SECRET_HEADER
from arco_worker import TaskContext, Worker
from arco_worker.auth import dispatch_authorized


def _worker() -> Worker:
    worker = Worker()

    @worker.task("test.ok")
    def ok(ctx: TaskContext) -> None:
        return None

    return worker


@pytest.fixture(scope="module")
def served_worker(fake_api_server: FakeCallbackApi) -> Iterator[RunningWorker]:
    # One worker for the module: every test dispatches a fresh run, so they do not interact.
    with running_worker(_worker(), fake_api_server) as running:
        yield running


@pytest.fixture(autouse=True)
def _settle(served_worker: RunningWorker) -> Iterator[None]:
    # Let each test's runs finish, so the next test's fake API sees only its own callbacks.
    yield
    served_worker.wait_idle()


def test_health_answers_ok(served_worker: RunningWorker) -> None:
    response = served_worker.http.get("/health")
    assert response.status_code == 200
    assert response.text == "ok"


def test_unknown_paths_are_404(served_worker: RunningWorker) -> None:
    assert served_worker.http.get("/nope").status_code == 404
    assert (
        served_worker.http.post("/other", headers={DISPATCH_SECRET_HEADER: SECRET}).status_code
        == 404
    )


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="missing"),
        pytest.param({DISPATCH_SECRET_HEADER: "wrong"}, id="wrong-header"),
        pytest.param({DISPATCH_SECRET_HEADER: ""}, id="empty-header"),
        pytest.param({"Authorization": "Bearer wrong"}, id="wrong-bearer"),
        pytest.param({"Authorization": f"Basic {SECRET}"}, id="other-scheme"),
        pytest.param({"Authorization": f"Bearer{SECRET}"}, id="no-space"),
        pytest.param({"X-Other": SECRET}, id="other-header"),
    ],
)
def test_dispatch_without_the_secret_is_401_and_runs_nothing(
    served_worker: RunningWorker, api: FakeCallbackApi, headers: dict[str, str]
) -> None:
    response = served_worker.dispatch(make_envelope(api.base_url), headers=headers)
    assert response.status_code == 401
    assert response.json()["message"] == "missing or invalid dispatch authorization"
    assert api.requests() == []


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({DISPATCH_SECRET_HEADER: SECRET}, id="header"),
        pytest.param({"Authorization": f"Bearer {SECRET}"}, id="bearer"),
        pytest.param({"Authorization": f"bearer {SECRET}"}, id="bearer-lower"),
        pytest.param({"Authorization": f"BEARER  {SECRET}"}, id="bearer-upper-token-trimmed"),
        pytest.param(
            {DISPATCH_SECRET_HEADER: "wrong", "Authorization": f"Bearer {SECRET}"},
            id="either-header",
        ),
    ],
)
def test_dispatch_with_the_secret_is_accepted(
    served_worker: RunningWorker, api: FakeCallbackApi, headers: dict[str, str]
) -> None:
    response = served_worker.dispatch(make_envelope(api.base_url), headers=headers)
    assert response.status_code == 202, response.text


def test_configured_secret_is_trimmed(api: FakeCallbackApi) -> None:
    padded = f"  {SECRET}  \n"
    with running_worker(_worker(), api, ARCO_FLOW_WORKER_DISPATCH_SECRET=padded) as running:
        response = running.dispatch(make_envelope(api.base_url))
        assert response.status_code == 202, response.text
        running.wait_idle()


def test_bad_body_with_bad_secret_is_401_not_400(served_worker: RunningWorker) -> None:
    response = served_worker.dispatch(b"{not json", headers={DISPATCH_SECRET_HEADER: "wrong"})
    assert response.status_code == 401


def test_401_is_answered_before_the_body_is_read(served_worker: RunningWorker) -> None:
    # Announce a 1 MB body but send only a few bytes: a server that read the body first
    # would wait for the rest; ours answers from the headers.
    port = int(served_worker.server.url.rsplit(":", 1)[1])
    head = (
        "POST /dispatch HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"{DISPATCH_SECRET_HEADER}: wrong\r\nContent-Length: 1000000\r\n\r\n"
        '{"tenantId":'
    )
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(head.encode())
        answer = sock.recv(4096).decode()
    assert answer.startswith("HTTP/1.1 401")


def test_dispatch_authorized_rules() -> None:
    # HTTP parsers strip outer whitespace already (h11 even refuses to send it), so the
    # trimming of the provided values is checked here directly.
    headers = {DISPATCH_SECRET_HEADER: SECRET}
    assert dispatch_authorized({DISPATCH_SECRET_HEADER: f"  {SECRET}\t"}, SECRET)
    assert dispatch_authorized({"authorization": f" Bearer {SECRET} "}, SECRET)
    assert dispatch_authorized(headers, f" {SECRET} ")
    assert not dispatch_authorized(headers, "   ")  # an empty configured secret accepts nothing
    assert not dispatch_authorized({DISPATCH_SECRET_HEADER: f"{SECRET}x"}, SECRET)
    assert not dispatch_authorized({"authorization": "Bearer"}, SECRET)
    assert dispatch_authorized({"authorization": f"bEaReR {SECRET}"}, SECRET)
    assert not dispatch_authorized({DISPATCH_SECRET_HEADER: "sécret"}, SECRET)
