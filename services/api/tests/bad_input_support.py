"""Helpers of the bad-input suite: the API's own OpenAPI document loaded into schemathesis, the
live objects a fuzzed request may point at, and the credentials of both test modes."""

from __future__ import annotations

import asyncio
import json
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any
from urllib.parse import unquote

import jwt
from jsonschema import Draft202012Validator
from requests.structures import CaseInsensitiveDict
from schemathesis import Case, Config
from schemathesis.checks import not_a_server_error
from schemathesis.openapi import from_dict
from schemathesis.schemas import APIOperation, BaseSchema
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from services.api.tests.api_test_support import (
    RAW,
    USER_JWT_SECRET,
    Api,
    Attempt,
    api_settings,
    bearer,
    user_headers,
    user_token,
)
from starlette.types import ASGIApp, Message

from arco_api.app import create_app
from arco_api.log_routes import LOG_BODY_LIMIT
from arco_api.run_routes import JSON_BODY_LIMIT
from arco_orchestration.db import Database
from arco_testkit.values import WORKSPACE

# What every answer must satisfy: no 5xx, a documented status, the documented media type, body
# and headers.
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]

# schemathesis' generics, whose parameters this suite never narrows.
Operation = APIOperation[Any, Any, Any, Any]
AnyCase = Case[Operation]

CALLBACK_PREFIX = "/api/v1/tasks/"
SYSTEM_PATHS = frozenset({"/health", "/ready", "/version", "/metrics"})


@cache
def openapi_document() -> dict[str, Any]:
    """The document the app serves at /openapi.json (it does not depend on the database)."""
    database = Database.from_url("sqlite://")
    try:
        document: dict[str, Any] = create_app(api_settings(), database).openapi()
    finally:
        database.dispose()
    return document


@cache
def api_schema() -> BaseSchema:
    # An explicit empty config: no schemathesis.toml found on disk can change the suite.
    return from_dict(openapi_document(), config=Config())


def operation_ids() -> list[str]:
    """``METHOD path`` of every operation in the document, in document order."""
    return [
        f"{method.upper()} {path}"
        for path, item in openapi_document()["paths"].items()
        for method in item
    ]


def operation(label: str) -> Operation:
    method, path = label.split(" ", 1)
    found: Operation = api_schema()[path][method]
    return found


def is_callback(op: Operation) -> bool:
    return op.path.startswith(CALLBACK_PREFIX)


def is_system(op: Operation) -> bool:
    return op.path in SYSTEM_PATHS


def body_operations() -> list[str]:
    """Every operation that documents a request body."""
    return [
        f"{method.upper()} {path}"
        for path, item in openapi_document()["paths"].items()
        for method, spec in item.items()
        if "requestBody" in spec
    ]


def pick(value: object, choices: int) -> int:
    """A stable choice in ``range(choices)`` derived from a generated value (``hash`` is salted
    per process, so it would make the suite nondeterministic)."""
    return zlib.crc32(repr(value).encode()) % choices


@dataclass(frozen=True)
class World:
    """Real objects a fuzzed request can point at, so valid credentials reach past the 404s."""

    manifest_id: str
    run_id: str
    attempt: Attempt

    @classmethod
    def build(cls, api: Api, manifest_id: str) -> World:
        attempt = api.dispatch(api.run([RAW]))
        assert api.started(attempt).status_code == 200
        response = api.client.post(
            f"/api/v1/workspaces/{WORKSPACE}/runs/{attempt.run_id}/logs",
            json={"taskKey": RAW, "attempt": 1, "stdout": "out", "stderr": ""},
            headers=user_headers(),
        )
        assert response.status_code == 201, response.text
        return cls(manifest_id, attempt.run_id, attempt)

    def path_values(self) -> dict[str, str]:
        return {
            "workspace_id": WORKSPACE,
            "manifest_id": self.manifest_id,
            "run_id": self.run_id,
            "task_key": RAW,
            "task_id": self.attempt.task_id,
        }


def aim_at_world(case: AnyCase, world: World) -> None:
    """Point most generated path parameters (and callback attempts) at the live objects; a
    quarter keep the generated value so unknown ids are exercised too."""
    live = world.path_values()
    parameters = case.path_parameters or {}
    for name, value in list(parameters.items()):
        if name in live and pick(value, 4) != 0:
            parameters[name] = live[name]
    if is_callback(case.operation) and isinstance(case.body, dict) and pick(case.body, 2) == 0:
        case.body["attempt"] = world.attempt.attempt
        case.body["attemptId"] = world.attempt.attempt_id


def use_credentials(case: AnyCase, credentials: dict[str, str] | None) -> None:
    """Replace whatever Authorization schemathesis generated from the security scheme."""
    headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"}
    headers.update(credentials or {})
    case.headers = CaseInsensitiveDict(headers)


def valid_credentials(op: Operation, world: World) -> dict[str, str]:
    if is_callback(op):
        return bearer(world.attempt.token())
    return user_headers()


def _expired_user_token() -> str:
    past = int((datetime.now(UTC) - timedelta(hours=2)).timestamp())
    return user_token(exp=past)


def _wrong_key_user_token() -> str:
    claims = {"tenant": "tenant-a", "workspace": WORKSPACE, "exp": 4_102_444_800}
    return jwt.encode(claims, USER_JWT_SECRET + "-not", algorithm="HS256")


# The bad credentials a fuzzed request may carry, chosen per case by ``pick``; ``None`` sends no
# Authorization header at all.
_ANY_ROUTE: list[Callable[[World], dict[str, str] | None]] = [
    lambda _: None,
    lambda _: {"Authorization": "Bearer not-a-jwt"},
    lambda _: {"Authorization": "Basic dXNlcjpwYXNz"},
    lambda _: {"Authorization": f"bearer {user_token()}"},  # the prefix is case-sensitive
    lambda _: bearer(_expired_user_token()),
    lambda _: bearer(_wrong_key_user_token()),
]
# Each kind of token is refused on the other kind of route.
_ON_USER_ROUTES = [*_ANY_ROUTE, lambda world: bearer(world.attempt.token())]
_ON_CALLBACKS = [*_ANY_ROUTE, lambda _: user_headers()]


def bad_credentials(op: Operation, case: AnyCase, world: World) -> dict[str, str] | None:
    choices = _ON_CALLBACKS if is_callback(op) else _ON_USER_ROUTES
    choice: Callable[[World], dict[str, str] | None] = choices[
        pick((case.path_parameters, case.query, case.body), len(choices))
    ]
    return choice(world)


# --- raw requests for the explicit tests ------------------------------------------------------

SMALL_LIMIT = 4096


def body_limit(label: str) -> int:
    """The body limit of a body-taking route in an app built with ``SMALL_LIMIT`` for the two
    configurable limits."""
    path = label.split(" ", 1)[1]
    if path.startswith(CALLBACK_PREFIX) or path.endswith("/manifests"):
        return SMALL_LIMIT
    if path.endswith("/logs"):
        return LOG_BODY_LIMIT
    return JSON_BODY_LIMIT


def concrete_path(label: str, world: World) -> str:
    return label.split(" ", 1)[1].format(**world.path_values())


def route_credentials(label: str, world: World) -> dict[str, str]:
    return valid_credentials(operation(label), world)


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes
    chunks_read: int


def send_raw(
    app: ASGIApp, method: str, path: str, headers: dict[str, str], chunks: list[bytes]
) -> RawResponse:
    """Drive the ASGI app directly: the body arrives in ``chunks`` exactly as given, with only
    the headers given (no Content-Length unless the caller sets one), as a real server would
    pass on a chunked request."""
    raw_path, _, query = path.partition("?")
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": unquote(raw_path),
        "raw_path": raw_path.encode(),
        "root_path": "",
        "query_string": query.encode(),
        "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    pending = list(chunks)
    sent: list[Message] = []
    read = 0

    async def receive() -> Message:
        nonlocal read
        if not pending:
            return {"type": "http.disconnect"}
        read += 1
        return {"type": "http.request", "body": pending.pop(0), "more_body": bool(pending)}

    async def send(message: Message) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))  # type: ignore[arg-type]
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    response_headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in start["headers"]}
    return RawResponse(start["status"], response_headers, body, read)


def assert_json_error(label: str, response: RawResponse) -> None:
    """The status is documented for the operation, and the body is JSON matching the schema
    documented for it."""
    method, path = label.split(" ", 1)
    document = openapi_document()
    documented = document["paths"][path][method.lower()]["responses"]
    assert str(response.status) in documented, (label, response.status)
    assert response.headers["content-type"].startswith("application/json"), response.headers
    schema = documented[str(response.status)]["content"]["application/json"]["schema"]
    Draft202012Validator({**schema, "components": document["components"]}).validate(
        json.loads(response.body)
    )
