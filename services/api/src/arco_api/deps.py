"""Route dependencies: the caller's principal and workspace check. Both are ``async`` though
they never wait: FastAPI runs a plain function dependency on the thread pool, and two thread
hand-offs per request cost more CPU than the checks themselves."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request

from arco_api.auth import Principal
from arco_api.context import api_context
from arco_api.errors import bad_request, not_found
from arco_api.http_io import unstorable_text
from arco_orchestration.scope import Scope


async def current_principal(request: Request) -> Principal:
    """The authenticated user (JWT or dev debug headers); 401 otherwise."""
    principal = api_context(request).users.authenticate(request)
    request.state.principal = principal
    return principal


async def workspace_scope(
    request: Request,
    workspace_id: Annotated[str, Path(description="Workspace id; must be the caller's")],
    principal: Annotated[Principal, Depends(current_principal)],
) -> Scope:
    """The caller's scope; a path workspace other than the caller's is 404. Path, query and
    Idempotency-Key values reach the database: one no store can hold is a 400 here."""
    if workspace_id != principal.workspace_id:
        raise not_found("workspace not found")
    values = [*request.path_params.values(), *request.query_params.values()]
    values.append(request.headers.get("idempotency-key", ""))
    if any(isinstance(value, str) and unstorable_text(value) for value in values):
        raise bad_request("path, query and header values must not contain NUL characters")
    return Scope(principal.tenant_id, principal.workspace_id)


ScopeDep = Annotated[Scope, Depends(workspace_scope)]
PrincipalDep = Annotated[Principal, Depends(current_principal)]
