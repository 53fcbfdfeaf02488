"""The console's pages under ``/ui``: login and logout, runs, one run, one task, manifests,
and the forms that trigger, cancel and rerun (each behind a confirmation and a CSRF token).

A page asked with ``?fragment=live`` answers only its live section; the page's script polls
that every two seconds and stops when the answer says nothing more will change.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, TypeVar
from urllib.parse import parse_qs, quote, urlencode

from fastapi import APIRouter, Depends, Request
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, Response

from arco_api.console import actions
from arco_api.console.manifests_view import load_manifests_view
from arco_api.console.pages import (
    SECURITY_HEADERS,
    VERSION_HEADER,
    live_page,
    render,
    unchanged,
)
from arco_api.console.run_view import GANTT_WIDTH, RunView, load_run_view, run_version
from arco_api.console.runs_view import (
    FILTERABLE_STATES,
    ConsoleInputError,
    load_runs_page,
    parse_runs_query,
)
from arco_api.console.session import (
    ConsoleSession,
    CsrfRefused,
    LoginRequired,
    check_csrf,
    check_login_csrf,
    current_session,
    end_session,
    new_login_nonce,
    remember_login_nonce,
    start_session,
    verify_token,
)
from arco_api.console.task_view import load_task_view
from arco_api.context import api_context
from arco_api.errors import ApiError
from arco_api.http_io import BodyError, read_body

router = APIRouter(prefix="/ui", include_in_schema=False)
SessionDep = Annotated[ConsoleSession, Depends(current_session)]
FORM_LIMIT = 64 * 1024
FORM_TYPE = "application/x-www-form-urlencoded"
T = TypeVar("T")


class PageNotFound(Exception):  # noqa: N818 - reads as a sentence
    """The scope has no such run, task or page: a 404 page (never another tenant's data)."""


async def _read(request: Request, load: Callable[[Session], T]) -> T:
    context = api_context(request)

    def run() -> T:
        with context.db.transaction() as session:
            return load(session)

    return await run_in_threadpool(run)


async def _form(request: Request) -> dict[str, list[str]]:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != FORM_TYPE:
        raise ConsoleInputError(f"forms must be sent as {FORM_TYPE}")
    try:
        raw = await read_body(request, FORM_LIMIT, require_json=False)
    except BodyError as error:
        raise ConsoleInputError(error.message) from None
    try:
        return parse_qs(raw.decode(), keep_blank_values=True, strict_parsing=False)
    except (UnicodeDecodeError, ValueError):
        raise ConsoleInputError("the form is not valid UTF-8 url-encoded data") from None


def _field(form: dict[str, list[str]], name: str) -> str:
    values = form.get(name)
    return values[0] if values else ""


def _see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303, headers=SECURITY_HEADERS)


def _safe_next(target: str) -> str:
    """Only a path of the console itself, so the login form cannot send anyone elsewhere."""
    if target.startswith("/ui/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/ui/runs"


def _live_url(request: Request) -> str:
    """This page's own address asking for its live section."""
    params = [(k, v) for k, v in request.query_params.multi_items() if k != "fragment"]
    return f"{request.url.path}?{urlencode([*params, ('fragment', 'live')])}"


def _shown_version(request: Request) -> str | None:
    """``None`` for a whole page; for its live section, the version the page shows."""
    if request.query_params.get("fragment") != "live":
        return None
    return request.headers.get(VERSION_HEADER, "")


# --- login --------------------------------------------------------------------------------


@router.get("")
async def console_root() -> Response:
    return _see_other("/ui/runs")


def _login_form(request: Request, status: int, next_page: str, error: str | None) -> Response:
    nonce = new_login_nonce()
    response = render("login.html", status, next=next_page, error=error, nonce=nonce, session=None)
    remember_login_nonce(request, response, nonce)
    return response


@router.get("/login")
async def login_page(request: Request) -> Response:
    expired = request.query_params.get("expired") == "1"
    error = "Your session ended; sign in again." if expired else None
    return _login_form(request, 200, _safe_next(request.query_params.get("next", "")), error)


@router.post("/login")
async def login(request: Request) -> Response:
    form = await _form(request)
    next_page = _safe_next(_field(form, "next"))
    check_login_csrf(request, _field(form, "csrf"))
    token = _field(form, "token").strip()
    if not token:
        return _login_form(request, 401, next_page, "Paste a user token (JWT) to sign in.")
    try:
        verify_token(request, token)
    except ApiError as refused:
        return _login_form(request, refused.status, next_page, f"Token refused: {refused.message}")
    response = _see_other(next_page)
    start_session(request, response, token)
    return response


@router.post("/logout")
async def logout(request: Request, session: SessionDep) -> Response:
    form = await _form(request)
    check_csrf(request, session, _field(form, "csrf"))
    response = _see_other("/ui/login")
    end_session(response)
    return response


# --- runs ---------------------------------------------------------------------------------


@router.get("/runs")
async def runs_page(request: Request, session: SessionDep) -> Response:
    query = parse_runs_query(request.query_params)
    page = await _read(request, lambda db: load_runs_page(db, session.scope, query))
    # Only the first page follows: older pages hold finished runs and would jump about.
    live = page.first_page
    return live_page(
        _shown_version(request),
        "runs.html",
        "runs_live.html",
        live=live,
        page=page,
        states=FILTERABLE_STATES,
        live_url=_live_url(request) if live else "",
        session=session,
    )


@router.get("/runs/{run_id}")
async def run_page(request: Request, session: SessionDep, run_id: str) -> Response:
    now = api_context(request).clock()
    shown = _shown_version(request)

    def load(db: Session) -> tuple[tuple[str, bool] | None, RunView | None]:
        # The run's fingerprint is cheap: an unchanged run is answered without loading it.
        version = run_version(db, session.scope, run_id)
        if version is None or version[0] == shown:
            return version, None
        return version, load_run_view(db, session.scope, run_id, now)

    version, view = await _read(request, load)
    if version is not None and version[0] == shown:
        return unchanged(version[0], live=not version[1])
    if version is None or view is None:
        raise PageNotFound(f"run not found: {run_id}")
    notice = {"cancel": "Cancellation requested.", "rerun": "Rerun started from failure."}.get(
        request.query_params.get("notice", "")
    )
    return live_page(
        shown,
        "run.html",
        "run_live.html",
        live=not view.is_terminal,
        version=version[0],
        view=view,
        gantt_width=GANTT_WIDTH,
        notice=notice,
        live_url=_live_url(request),
        session=session,
    )


@router.get("/runs/{run_id}/tasks/{task_key:path}")
async def task_page(request: Request, session: SessionDep, run_id: str, task_key: str) -> Response:
    now = api_context(request).clock()
    view = await _read(request, lambda db: load_task_view(db, session.scope, run_id, task_key, now))
    if view is None:
        raise PageNotFound(f"task not found: {run_id}/{task_key}")
    return live_page(
        _shown_version(request),
        "task.html",
        "task_live.html",
        live=view.following,
        view=view,
        live_url=_live_url(request),
        session=session,
    )


async def _confirm_page(
    request: Request, session: ConsoleSession, run_id: str, action: str
) -> Response:
    now = api_context(request).clock()
    view = await _read(request, lambda db: load_run_view(db, session.scope, run_id, now))
    if view is None:
        raise PageNotFound(f"run not found: {run_id}")
    return render("confirm.html", view=view, action=action, error=None, session=session)


@router.get("/runs/{run_id}/cancel")
async def confirm_cancel(request: Request, session: SessionDep, run_id: str) -> Response:
    return await _confirm_page(request, session, run_id, "cancel")


@router.get("/runs/{run_id}/rerun")
async def confirm_rerun(request: Request, session: SessionDep, run_id: str) -> Response:
    return await _confirm_page(request, session, run_id, "rerun")


async def _act(
    request: Request, session: ConsoleSession, run_id: str, action: str, answer: actions.ApiAnswer
) -> Response:
    if answer.ok:
        target = answer.body.get("runId", run_id) if action == "rerun" else run_id
        return _see_other(f"/ui/runs/{quote(str(target), safe='')}?notice={action}")
    if answer.status == 404:
        raise PageNotFound(answer.message)
    now = api_context(request).clock()
    view = await _read(request, lambda db: load_run_view(db, session.scope, run_id, now))
    if view is None:
        raise PageNotFound(f"run not found: {run_id}")
    return render(
        "confirm.html",
        answer.status,
        view=view,
        action=action,
        error=answer.message,
        session=session,
    )


@router.post("/runs/{run_id}/cancel")
async def cancel(request: Request, session: SessionDep, run_id: str) -> Response:
    form = await _form(request)
    check_csrf(request, session, _field(form, "csrf"))
    reason = _field(form, "reason").strip() or "cancelled from the console"
    answer = await actions.cancel(request, session, run_id, reason)
    return await _act(request, session, run_id, "cancel", answer)


@router.post("/runs/{run_id}/rerun")
async def rerun(request: Request, session: SessionDep, run_id: str) -> Response:
    form = await _form(request)
    check_csrf(request, session, _field(form, "csrf"))
    answer = await actions.rerun_from_failure(request, session, run_id)
    return await _act(request, session, run_id, "rerun", answer)


# --- manifests ----------------------------------------------------------------------------


@router.get("/manifests")
async def manifests_page(request: Request, session: SessionDep) -> Response:
    view = await _read(request, lambda db: load_manifests_view(db, session.scope))
    return render("manifests.html", view=view, error=None, form={}, session=session)


@router.post("/manifests/trigger")
async def trigger(request: Request, session: SessionDep) -> Response:
    form = await _form(request)
    check_csrf(request, session, _field(form, "csrf"))
    values = {
        "selection": form.get("selection", []),
        "partitions": _field(form, "partitions"),
        "runKey": _field(form, "runKey"),
        "includeUpstream": _field(form, "includeUpstream"),
    }
    error: str
    status = 400
    try:
        body = actions.trigger_body(
            list(values["selection"]),
            str(values["partitions"]),
            str(values["runKey"]),
            include_upstream=values["includeUpstream"] == "on",
        )
    except actions.FormError as problem:
        error = str(problem)
    else:
        answer = await actions.trigger(request, session, body)
        if answer.ok:
            return _see_other(f"/ui/runs/{quote(str(answer.body['runId']), safe='')}")
        error, status = answer.message, answer.status
    view = await _read(request, lambda db: load_manifests_view(db, session.scope))
    return render("manifests.html", status, view=view, error=error, form=values, session=session)


# --- errors -------------------------------------------------------------------------------


def install_error_pages(app: Any) -> None:
    """Login redirects, CSRF refusals and not-found pages of the console, as HTML."""

    async def login_required(request: Request, exc: Exception) -> Response:
        if _shown_version(request) is not None or request.method != "GET":
            # The refresher (or a form post) cannot follow a redirect usefully: say so.
            return render("error.html", 401, title="Signed out", message=str(exc), session=None)
        target = quote(request.url.path + (f"?{request.url.query}" if request.url.query else ""))
        expired = "&expired=1" if request.cookies.get("arco_console") else ""
        return _see_other(f"/ui/login?next={target}{expired}")

    async def csrf_refused(request: Request, exc: Exception) -> Response:
        return render("error.html", 403, title="Refused", message=str(exc), session=None)

    async def not_found(request: Request, exc: Exception) -> Response:
        return render("error.html", 404, title="Not found", message=str(exc), session=None)

    async def bad_input(request: Request, exc: Exception) -> Response:
        return render("error.html", 400, title="Bad request", message=str(exc), session=None)

    app.add_exception_handler(LoginRequired, login_required)
    app.add_exception_handler(CsrfRefused, csrf_refused)
    app.add_exception_handler(PageNotFound, not_found)
    app.add_exception_handler(ConsoleInputError, bad_input)
