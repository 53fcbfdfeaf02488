"""The console over HTTP: sign-in and its refusals, the session cookie, CSRF on every
state-changing form, tenant isolation, the actions (trigger, cancel, rerun) and /docs offline."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from fastapi.testclient import TestClient
from services.api.tests.api_test_support import (
    DAILY,
    RAW,
    USER_JWT_SECRET,
    Api,
    debug_headers,
    sqlite_only,
    unsigned,
    user_token,
)
from services.api.tests.console_support import csrf_of, sign_in, signed_in_csrf

from arco_orchestration.db import Database
from arco_orchestration.models import Run

PAGES = ["/ui/runs", "/ui/manifests", "/ui/runs/01NOSUCHRUN", "/ui/runs/01NOSUCHRUN/tasks/a.b"]


def _claims(**overrides: object) -> dict[str, object]:
    exp = int((datetime.now(UTC) + timedelta(hours=1)).timestamp())
    claims: dict[str, object] = {"tenant": "tenant-a", "workspace": "workspace-b", "sub": "u"}
    claims["exp"] = exp
    claims.update(overrides)
    return {key: value for key, value in claims.items() if value is not None}


# --- sign-in -------------------------------------------------------------------------------


@sqlite_only
@pytest.mark.parametrize("path", PAGES)
def test_every_page_sends_a_stranger_to_the_login_page(client: TestClient, path: str) -> None:
    response = client.get(path, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/ui/login?next=")


@sqlite_only
def test_debug_headers_do_not_open_the_console_in_the_dev_posture(
    make_client: Callable[..., TestClient],
) -> None:
    dev = make_client(environment="dev", debug=True)
    assert (
        dev.get("/api/v1/workspaces/workspace-b/runs", headers=debug_headers()).status_code == 200
    )
    response = dev.get("/ui/runs", headers=debug_headers(), follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/ui/login")


@sqlite_only
def test_login_form_has_a_labelled_token_field(client: TestClient) -> None:
    page = client.get("/ui/login")
    assert page.status_code == 200
    assert 'name="token"' in page.text
    assert '<label for="token">' in page.text
    assert "http://" not in page.text.replace("http://testserver", "")
    assert "https://" not in page.text
    assert "'self'" in page.headers["content-security-policy"]


@sqlite_only
def test_login_sets_an_httponly_strict_cookie_and_logout_clears_it(client: TestClient) -> None:
    response = sign_in(client)
    assert response.status_code == 303
    assert response.headers["location"] == "/ui/runs"
    cookie = next(
        value
        for value in response.headers.get_list("set-cookie")
        if value.startswith("arco_console=")
    )
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    assert "Path=/ui" in cookie
    runs = client.get("/ui/runs")
    assert runs.status_code == 200
    assert "tenant-a" in runs.text
    out = client.post("/ui/logout", data={"csrf": csrf_of(runs)}, follow_redirects=False)
    assert out.status_code == 303
    assert client.get("/ui/runs", follow_redirects=False).status_code == 303


BAD_TOKENS: dict[str, Callable[[], str]] = {
    "expired": lambda: jwt.encode(
        _claims(exp=int((datetime.now(UTC) - timedelta(hours=2)).timestamp())),
        USER_JWT_SECRET,
        algorithm="HS256",
    ),
    "wrong key": lambda: jwt.encode(_claims(), USER_JWT_SECRET + "-other", algorithm="HS256"),
    "no exp": lambda: jwt.encode(_claims(exp=None), USER_JWT_SECRET, algorithm="HS256"),
    "no tenant": lambda: jwt.encode(_claims(tenant=None), USER_JWT_SECRET, algorithm="HS256"),
    "task token": lambda: jwt.encode(_claims(taskId="t"), USER_JWT_SECRET, algorithm="HS256"),
    "unsigned": lambda: unsigned(_claims()),
    "garbage": lambda: "not-a-jwt",
}


@sqlite_only
@pytest.mark.parametrize("kind", sorted(BAD_TOKENS))
def test_a_bad_token_is_refused_and_opens_no_session(client: TestClient, kind: str) -> None:
    response = sign_in(client, BAD_TOKENS[kind]())
    assert response.status_code == 401, response.text
    assert "Token refused" in response.text
    assert 'role="alert"' in response.text
    assert not any(
        value.startswith("arco_console=") for value in response.headers.get_list("set-cookie")
    )
    assert client.get("/ui/runs", follow_redirects=False).status_code == 303


@sqlite_only
def test_an_empty_token_is_refused_with_a_hint(client: TestClient) -> None:
    form = client.get("/ui/login")
    response = client.post("/ui/login", data={"token": " ", "csrf": csrf_of(form)})
    assert response.status_code == 401
    assert "Paste a user token" in response.text


@sqlite_only
def test_a_cookie_whose_token_expired_sends_back_to_login(client: TestClient) -> None:
    expired = jwt.encode(
        _claims(exp=int((datetime.now(UTC) - timedelta(hours=2)).timestamp())),
        USER_JWT_SECRET,
        algorithm="HS256",
    )
    client.cookies.set("arco_console", expired, path="/ui")
    response = client.get("/ui/runs", follow_redirects=False)
    assert response.status_code == 303
    assert "expired=1" in response.headers["location"]
    live = client.get("/ui/runs?fragment=live", follow_redirects=False)
    assert live.status_code == 401, "the live refresher learns the session ended"


@sqlite_only
def test_login_without_its_form_nonce_or_from_another_site_is_refused(client: TestClient) -> None:
    client.get("/ui/login")
    no_nonce = client.post("/ui/login", data={"token": user_token(), "csrf": "forged"})
    assert no_nonce.status_code == 403
    form = client.get("/ui/login")
    cross = client.post(
        "/ui/login",
        data={"token": user_token(), "csrf": csrf_of(form)},
        headers={"origin": "https://evil.example"},
    )
    assert cross.status_code == 403
    assert client.get("/ui/runs", follow_redirects=False).status_code == 303


@sqlite_only
def test_login_never_redirects_off_the_console(client: TestClient) -> None:
    form = client.get("/ui/login")
    response = client.post(
        "/ui/login",
        data={"token": user_token(), "csrf": csrf_of(form), "next": "https://evil.example/"},
        follow_redirects=False,
    )
    assert response.headers["location"] == "/ui/runs"


@sqlite_only
def test_a_form_that_is_not_url_encoded_is_a_400(client: TestClient) -> None:
    response = client.post("/ui/login", json={"token": user_token()})
    assert response.status_code == 400


# --- CSRF ----------------------------------------------------------------------------------


def _run_state(database: Database, run_id: str) -> str:
    with database.transaction() as session:
        run = session.get(Run, run_id)
        assert run is not None
        return run.state


@pytest.mark.parametrize(
    ("csrf", "origin"),
    [("", None), ("0" * 64, None), (None, "https://evil.example")],
    ids=["missing", "wrong", "cross-origin"],
)
def test_state_changing_forms_without_a_valid_csrf_token_change_nothing(
    api: Api, database: Database, csrf: str | None, origin: str | None
) -> None:
    run_id = api.run()
    good = signed_in_csrf(api.client)
    token = good if csrf is None else csrf
    headers = {"origin": origin} if origin else {}
    runs_before = api.get(f"/api/v1/workspaces/{api.scope.workspace_id}/runs").json()["runs"]
    for path, data in [
        (f"/ui/runs/{run_id}/cancel", {}),
        (f"/ui/runs/{run_id}/rerun", {}),
        ("/ui/manifests/trigger", {"selection": RAW}),
        ("/ui/logout", {}),
    ]:
        response = api.client.post(
            path, data={"csrf": token, **data}, headers=headers, follow_redirects=False
        )
        assert response.status_code == 403, (path, response.text)
    assert _run_state(database, run_id) == "RUNNING"
    runs_after = api.get(f"/api/v1/workspaces/{api.scope.workspace_id}/runs").json()["runs"]
    assert runs_after == runs_before, "no run was triggered"
    assert api.client.get("/ui/runs").status_code == 200, "still signed in"


# --- tenant isolation ----------------------------------------------------------------------


def test_another_tenants_run_is_not_found_in_the_console(api: Api, database: Database) -> None:
    run_id = api.run()
    other = user_token(tenant="tenant-other")
    assert sign_in(api.client, other).status_code == 303
    csrf = csrf_of(api.client.get("/ui/runs"))
    for path in [
        f"/ui/runs/{run_id}",
        f"/ui/runs/{run_id}/tasks/{RAW}",
        f"/ui/runs/{run_id}/cancel",
        f"/ui/runs/{run_id}?fragment=live",
    ]:
        response = api.client.get(path)
        assert response.status_code == 404, path
        assert run_id in response.text or "not found" in response.text
    cancel = api.client.post(f"/ui/runs/{run_id}/cancel", data={"csrf": csrf})
    assert cancel.status_code == 404
    assert _run_state(database, run_id) == "RUNNING"
    listing = api.client.get(f"/ui/runs?q={run_id}")
    assert f'href="/ui/runs/{run_id}"' not in listing.text
    assert "No runs match" in listing.text
    # The API agrees: the same id is a 404 there too.
    answer = api.client.get(
        f"/api/v1/workspaces/workspace-b/runs/{run_id}",
        headers={"Authorization": f"Bearer {other}"},
    )
    assert answer.status_code == 404


# --- pages and actions ---------------------------------------------------------------------


def test_trigger_from_the_manifests_page_opens_the_new_run(api: Api) -> None:
    csrf = signed_in_csrf(api.client)
    page = api.client.get("/ui/manifests")
    assert page.status_code == 200
    assert f'value="{DAILY}"' in page.text
    assert 'aria-label="Asset dependency graph' in page.text
    response = api.client.post(
        "/ui/manifests/trigger",
        data={"csrf": csrf, "selection": [RAW], "partitions": "", "runKey": "from-console"},
        follow_redirects=False,
    )
    assert response.status_code == 303
    run_id = response.headers["location"].rsplit("/", 1)[1]
    detail = api.detail(run_id)
    assert [task["taskKey"] for task in detail["tasks"]] == [RAW]
    run_page = api.client.get(response.headers["location"])
    assert run_page.status_code == 200
    assert 'data-state="RUNNING"' in run_page.text
    assert "Cancel run" in run_page.text
    assert 'role="img"' in run_page.text
    again = api.client.post(
        "/ui/manifests/trigger",
        data={"csrf": csrf, "selection": [RAW], "runKey": "from-console"},
        follow_redirects=False,
    )
    assert again.headers["location"].endswith(run_id), "the run key replays the same run"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({}, "select at least one asset"),
        ({"selection": ["analytics.nope"]}, "unknown asset"),
        ({"selection": [RAW], "partitions": "no-equals-sign"}, "not key=value"),
    ],
)
def test_a_bad_trigger_form_shows_why_and_starts_nothing(
    api: Api, data: dict[str, object], message: str
) -> None:
    csrf = signed_in_csrf(api.client)
    response = api.client.post("/ui/manifests/trigger", data={"csrf": csrf, **data})
    assert response.status_code in (400, 422)
    assert message in response.text.lower()
    assert api.get(f"/api/v1/workspaces/{api.scope.workspace_id}/runs").json()["runs"] == []


def test_cancel_and_rerun_from_failure_through_their_confirmation_pages(
    api: Api, database: Database
) -> None:
    csrf = signed_in_csrf(api.client)
    run_id = api.run()
    confirm = api.client.get(f"/ui/runs/{run_id}/cancel")
    assert confirm.status_code == 200
    assert "Yes, cancel the run" in confirm.text
    done = api.client.post(
        f"/ui/runs/{run_id}/cancel", data={"csrf": csrf, "reason": "test"}, follow_redirects=False
    )
    assert done.status_code == 303
    assert done.headers["location"] == f"/ui/runs/{run_id}?notice=cancel"
    assert _run_state(database, run_id) == "CANCELLED"
    twice = api.client.post(
        f"/ui/runs/{run_id}/cancel", data={"csrf": csrf}, follow_redirects=False
    )
    assert twice.status_code == 303, "cancelling again is idempotent, as in the API"
    finished = api.run()
    api.fail(api.dispatch(finished), retryable=False)
    refused = api.client.post(f"/ui/runs/{finished}/cancel", data={"csrf": csrf})
    assert refused.status_code == 409
    assert "already in terminal state FAILED" in refused.text
    assert 'role="alert"' in refused.text
    not_failed = api.client.post(f"/ui/runs/{run_id}/rerun", data={"csrf": csrf})
    assert not_failed.status_code == 409
    assert "requires a FAILED parent run" in not_failed.text
    assert "Rerun from failure" in api.client.get(f"/ui/runs/{finished}").text
    rerun = api.client.post(
        f"/ui/runs/{finished}/rerun", data={"csrf": csrf}, follow_redirects=False
    )
    assert rerun.status_code == 303, rerun.text
    child = rerun.headers["location"].split("?")[0].rsplit("/", 1)[1]
    assert child != finished
    assert api.detail(child)["parentRunId"] == finished


def test_the_live_fragment_stops_following_a_finished_run(api: Api) -> None:
    signed_in_csrf(api.client)
    run_id = api.run()
    live = api.client.get(f"/ui/runs/{run_id}?fragment=live")
    assert live.headers["x-console-live"] == "follow"
    assert "<html" not in live.text
    version = live.headers["x-console-version"]
    same = api.client.get(
        f"/ui/runs/{run_id}?fragment=live", headers={"x-console-version": version}
    )
    assert same.status_code == 204, "nothing changed: nothing is sent"
    assert same.headers["x-console-live"] == "follow"
    api.fail(api.dispatch(run_id), retryable=False)
    changed = api.client.get(
        f"/ui/runs/{run_id}?fragment=live", headers={"x-console-version": version}
    )
    assert changed.status_code == 200
    assert changed.headers["x-console-version"] != version
    finished = api.client.get(f"/ui/runs/{run_id}?fragment=live")
    assert finished.headers["x-console-live"] == "stop"
    assert 'data-state="FAILED"' in finished.text
    task = api.client.get(f"/ui/runs/{run_id}/tasks/{RAW}")
    assert task.status_code == 200
    assert 'id="error-message"' in task.text
    assert "boom" in task.text
    assert "USER_CODE" in task.text


def _shown_version(page: str) -> str:
    [version] = re.findall(r'id="live"[^>]* data-live-version="([^"]+)"', page)
    return str(version)


@pytest.mark.parametrize("kind", ["runs", "run", "task"])
def test_a_page_carries_its_live_version_so_an_unchanged_section_is_not_sent(
    api: Api, kind: str
) -> None:
    """The refresher starts from the version the page was rendered with: while nothing
    changes it gets 204, and replaces the section (losing a reader's selection in it) only
    when the section did change."""
    signed_in_csrf(api.client)
    run_id = api.run()
    path = {
        "runs": "/ui/runs",
        "run": f"/ui/runs/{run_id}",
        "task": f"/ui/runs/{run_id}/tasks/{RAW}",
    }[kind]
    page = api.client.get(path)
    assert page.status_code == 200
    shown = _shown_version(page.text)
    assert page.headers["x-console-version"] == shown
    live = f"{path}{'&' if '?' in path else '?'}fragment=live"
    same = api.client.get(live, headers={"x-console-version": shown})
    assert same.status_code == 204, "nothing changed since the page was rendered"
    assert (same.headers["x-console-version"], same.headers["x-console-live"]) == (shown, "follow")
    first = api.client.get(live)
    assert first.status_code == 200, "a refresher that shows no version gets the section"
    assert first.headers["x-console-version"] == shown
    assert "<html" not in first.text
    api.fail(api.dispatch(run_id), retryable=False)
    changed = api.client.get(live, headers={"x-console-version": shown})
    assert changed.status_code == 200
    assert changed.headers["x-console-version"] != shown
    assert "FAILED" in changed.text
    assert _shown_version(api.client.get(path).text) == changed.headers["x-console-version"]


def test_a_bad_runs_query_is_a_400_page(api: Api) -> None:
    signed_in_csrf(api.client)
    assert api.client.get("/ui/runs?state=EXPLODED").status_code == 400
    assert api.client.get("/ui/runs?after=%%%").status_code == 400


# --- /docs offline -------------------------------------------------------------------------


@sqlite_only
def test_docs_load_every_asset_from_this_server(client: TestClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200
    assert "cdn" not in page.text.lower()
    assert "/docs-assets/swagger-ui-bundle.js" in page.text
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js"):
        assert client.get(f"/docs-assets/{asset}").status_code == 200
    redoc = client.get("/redoc")
    assert redoc.status_code == 200
    assert "cdn" not in redoc.text.lower()
    assert "fonts.googleapis" not in redoc.text
    assert "/ui" not in client.get("/openapi.json").json()["paths"]


@sqlite_only
def test_console_answers_are_compressed_and_the_apis_are_not(api: Api) -> None:
    signed_in_csrf(api.client)
    gzip = {"accept-encoding": "gzip"}
    css = api.client.get("/ui/static/console.css", headers=gzip)
    assert css.headers.get("content-encoding") == "gzip"
    assert "--succeeded" in css.text
    document = api.client.get("/openapi.json", headers=gzip)
    assert len(document.content) > 4096
    assert "content-encoding" not in document.headers
