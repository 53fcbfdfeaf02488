"""Rendering: the Jinja2 environment of the console's templates, and HTML responses with the
headers every console page carries."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup
from starlette.responses import HTMLResponse, Response

from arco_api.console import dag_layout
from arco_api.console.svg import dag_svg, gantt_svg
from arco_envelope import parse_timestamp

# Everything the pages load comes from this server: no CDN, and nothing inline to inject into.
SECURITY_HEADERS = {
    "cache-control": "no-store",
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "referrer-policy": "same-origin",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
}
LIVE_HEADER = "x-console-live"
VERSION_HEADER = "x-console-version"


def _time(value: str | None) -> str:
    """A wire timestamp as ``YYYY-MM-DD HH:MM:SS`` UTC, for reading."""
    if not value:
        return ""
    return parse_timestamp(value).strftime("%Y-%m-%d %H:%M:%S")


def _duration(start: str | None, end: str | None) -> str:
    if not start or not end:
        return ""
    seconds = (parse_timestamp(end) - parse_timestamp(start)).total_seconds()
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min"


def _datetime(value: datetime | None) -> str:
    return value.strftime("%H:%M:%S.%f")[:-3] if value else ""


def _state_class(state: str) -> str:
    return "state-" + state.lower()


_env = Environment(
    loader=PackageLoader("arco_api.console", "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)
_env.filters.update(time=_time, clock=_datetime, state_class=_state_class)
_env.globals.update(
    duration=_duration,
    dag_svg=dag_svg,
    gantt_svg=gantt_svg,
    NODE_WIDTH=dag_layout.NODE_WIDTH,
    NODE_HEIGHT=dag_layout.NODE_HEIGHT,
)


def render(
    template: str, status: int = 200, *, live: bool | None = None, **context: Any
) -> HTMLResponse:
    """``template`` with ``context``; ``live`` tells the page's refresher whether to go on."""
    headers = dict(SECURITY_HEADERS)
    if live is not None:
        headers[LIVE_HEADER] = _follow(live)
    body = _env.get_template(template).render(**context)
    return HTMLResponse(body, status_code=status, headers=headers)


def live_page(
    request_version: str | None,
    page: str,
    section: str,
    /,  # templates' context may hold a "page" too
    *,
    live: bool,
    version: str | None = None,
    **context: Any,
) -> Response:
    """A page with a live section: the whole ``page`` or, when its refresher asks
    (``request_version`` is the version it shows, "" before any), the ``section`` alone.

    The section is versioned (``version``, by default a digest of its rendering) and the
    page carries the version it shows, so the refresher gets 204 while nothing changes and
    replaces the section, losing a reader's selection or focus in it, only when it did."""
    rendered = _env.get_template(section).render(**context)
    version = version or hashlib.blake2b(rendered.encode(), digest_size=12).hexdigest()
    if request_version is None:
        # Markup: the section is the output of an autoescaped template, not raw input.
        section_html = Markup(rendered)  # noqa: S704
        response = render(
            page, live=live, live_section=section_html, live_version=version, **context
        )
    elif request_version == version:
        return unchanged(version, live=live)
    else:
        response = HTMLResponse(rendered, headers={**SECURITY_HEADERS, LIVE_HEADER: _follow(live)})
    response.headers[VERSION_HEADER] = version
    return response


def _follow(live: bool) -> str:
    return "follow" if live else "stop"


def unchanged(version: str, *, live: bool) -> Response:
    """The live section did not change since ``version``: nothing to send (204)."""
    headers = {**SECURITY_HEADERS, LIVE_HEADER: _follow(live), VERSION_HEADER: version}
    return Response(status_code=204, headers=headers)
