"""Dispatch authentication, envelope and scope checks."""

from __future__ import annotations

from datetime import timedelta

from arco_stack.conformance.scenarios.base import (
    Status,
    Verdict,
    expect_refusal,
    last_ok,
    nothing_called,
    run_to_end,
    scenario,
    send_refused,
)
from arco_stack.conformance.suite import Suite

# --- dispatch authentication and envelope checks ---------------------------------------------


@scenario("dispatch-without-secret", "a dispatch without the secret is 401 and calls nothing back")
async def dispatch_without_secret(suite: Suite) -> Verdict:
    return await expect_refusal(
        suite, "nosecret", "a valid envelope with no secret header", 401, headers={}
    )


@scenario("dispatch-wrong-secret", "a dispatch with a wrong secret is 401 and calls nothing back")
async def dispatch_wrong_secret(suite: Suite) -> Verdict:
    headers = {"X-Arco-Dispatch-Secret": suite.config.dispatch_secret + "-wrong"}
    return await expect_refusal(
        suite, "wrongsecret", "a valid envelope, wrong secret", 401, headers=headers
    )


@scenario(
    "dispatch-bearer-secret", "the secret is also accepted as Authorization: Bearer (any case)"
)
async def dispatch_bearer_secret(suite: Suite) -> Verdict:
    v = Verdict()
    attempt = suite.attempt("bearer", "conformance.ok")
    headers = {"Authorization": f"bEaReR {suite.config.dispatch_secret}"}
    v.saw("sent conformance.ok with `Authorization: bEaReR <secret>` only")
    deliveries = await run_to_end(suite, v, attempt, suite.envelope(attempt), headers=headers)
    v.expect(last_ok(deliveries), "the dispatch was not accepted")
    return v


_MISSING = (
    ("tenantId", "tenant_id"),
    ("workspaceId", "workspace_id"),
    ("attemptId", "attempt_id"),
    ("dispatchId", "dispatch_id"),
    ("callbackBaseUrl", "callback_base_url"),
    ("taskToken", "task_token"),
    ("tokenExpiresAt", "token_expires_at"),
)


@scenario("envelope-invalid", "a body that is not an envelope is 400 naming the missing fields")
async def envelope_invalid(suite: Suite) -> Verdict:
    v = Verdict()
    attempt = suite.attempt("notenvelope", "conformance.ok")
    body = {"task_key": "conformance.ok", "run_id": attempt.run_id}
    delivery = await send_refused(suite, v, f"the pre-envelope body {body}", body)
    v.expect(delivery.status == 400, f"expected 400, got {delivery.describe()}")
    unnamed = [
        camel
        for camel, snake in _MISSING
        if camel not in delivery.body and snake not in delivery.body
    ]
    v.expect(not unnamed, f"the answer does not name the missing fields {', '.join(unnamed)}")
    await nothing_called(suite, v, attempt)
    return v


@scenario(
    "envelope-legacy-snake-case", "the legacy snake_case spelling of the envelope is accepted"
)
async def envelope_legacy(suite: Suite) -> Verdict:
    v = Verdict()
    attempt = suite.attempt("legacy", "conformance.ok")
    legacy = {_snake(key): value for key, value in suite.envelope(attempt).items()}
    v.saw("sent conformance.ok as a snake_case envelope (task_id, callback_base_url, ...)")
    deliveries = await run_to_end(suite, v, attempt, legacy)
    v.expect(last_ok(deliveries), "the snake_case envelope was not accepted")
    return v


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name)


@scenario("scope-other-tenant", "an envelope for another tenant is 400 and calls nothing back")
async def scope_tenant(suite: Suite) -> Verdict:
    tenant = suite.config.tenant + "-other"
    return await expect_refusal(suite, "tenant", f"tenantId={tenant}", 400, tenantId=tenant)


@scenario(
    "scope-other-workspace", "an envelope for another workspace is 400 and calls nothing back"
)
async def scope_workspace(suite: Suite) -> Verdict:
    workspace = suite.config.workspace + "-other"
    return await expect_refusal(
        suite, "workspace", f"workspaceId={workspace}", 400, workspaceId=workspace
    )


@scenario("envelope-token-expired", "an expired tokenExpiresAt is refused (400), nothing called")
async def token_expired(suite: Suite) -> Verdict:
    return await expect_refusal(
        suite, "expired", "tokenExpiresAt an hour ago", 400, token_age=timedelta(hours=2)
    )


@scenario("envelope-heartbeat-timeout-floor", "heartbeatTimeoutSec below 30 is refused (400)")
async def heartbeat_floor(suite: Suite) -> Verdict:
    return await expect_refusal(
        suite, "hbfloor", "heartbeatTimeoutSec=29", 400, heartbeatTimeoutSec=29
    )


@scenario(
    "callback-base-url-pinned",
    "with ARCO_FLOW_API_URL set, a callbackBaseUrl of another API is 400 (needs --api-listen)",
)
async def base_url_pinned(suite: Suite) -> Verdict:
    if not suite.config.pinned:
        v = Verdict(status=Status.SKIP)
        v.saw("no --api-listen: the worker cannot know the suite's URL in advance")
        return v
    other = suite.callback_base_url.rstrip("/") + "/another-api"
    return await expect_refusal(
        suite, "pinned", f"callbackBaseUrl={other}", 400, callbackBaseUrl=other
    )


@scenario(
    "callback-url",
    "callbacks go to {callbackBaseUrl without trailing /}/api/v1/tasks/{taskId}/{phase}",
)
async def callback_url(suite: Suite) -> Verdict:
    v = Verdict()
    attempt = suite.attempt("url", "conformance.ok")
    base = suite.callback_base_url.rstrip("/") + "/"
    v.saw(f"sent conformance.ok with callbackBaseUrl={base}")
    await run_to_end(suite, v, attempt, suite.envelope(attempt, callbackBaseUrl=base))
    for call in attempt.callbacks():
        want = f"/api/v1/tasks/{attempt.task_id}/{call.phase}"
        v.expect(call.path == want, f"/{call.phase} went to {call.path}, not {want}")
    return v
