"""The scenarios: one rule of docs/worker-protocol.md each, with the evidence that decided it.

Every scenario dispatches its own attempts (a run of its own), so they run side by side. The
``final`` ones look at the traffic of every other scenario and run after them.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from typing import Any

from arco_stack.conformance.callback_api import Answer, Call, TrackedAttempt
from arco_stack.conformance.suite import (
    HEARTBEAT_INTERVAL_SECS,
    QUIET_SECS,
    Delivery,
    Suite,
)

CANCEL_GRACE_SECS = 10.0
RUN_TIMEOUT_SECS = 20.0
UNUSUAL_CONFLICTS = (
    ("attempt_already_completed", "Attempt 1 has already reported its outcome"),
    ("attempt_mismatch", "Expected attempt 2, received 1"),
    ("attempt_id_mismatch", "Expected attempt id att_0f, received att_1e"),
)


class Status(StrEnum):
    PASS = "PASS"  # noqa: S105 - a verdict, not a password
    FAIL = "FAIL"
    SKIP = "SKIP"
    INFO = "INFO"


@dataclass
class Verdict:
    """What a scenario found: problems make it FAIL; evidence says what was sent and seen."""

    evidence: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    status: Status | None = None  # set for SKIP and INFO

    def saw(self, line: str) -> None:
        self.evidence.append(line)

    def expect(self, ok: bool, problem: str) -> bool:
        if not ok:
            self.problems.append(problem)
        return ok

    @property
    def final_status(self) -> Status:
        if self.problems:
            return Status.FAIL
        return self.status or Status.PASS


ScenarioFn = Callable[[Suite], Awaitable[Verdict]]


@dataclass(frozen=True)
class Scenario:
    name: str
    rule: str
    run: ScenarioFn
    final: bool = False


SCENARIOS: list[Scenario] = []


def scenario(name: str, rule: str, *, final: bool = False) -> Callable[[ScenarioFn], ScenarioFn]:
    def register(fn: ScenarioFn) -> ScenarioFn:
        SCENARIOS.append(Scenario(name, rule, fn, final))
        return fn

    return register


# --- helpers ---------------------------------------------------------------------------------


def _deliveries(deliveries: list[Delivery] | None) -> str:
    if deliveries is None:
        return "dispatch: no answer yet"
    return "dispatch answered " + " then ".join(d.describe() for d in deliveries)


def _last_ok(deliveries: list[Delivery] | None) -> bool:
    return bool(deliveries) and deliveries is not None and deliveries[-1].ok


async def _refused(suite: Suite, v: Verdict, what: str, body: Any, **kwargs: Any) -> Delivery:
    """Send ``body`` once; expect 400-style refusal fields checked by the caller."""
    delivery = await suite.send(body, **kwargs)
    v.saw(f"sent {what}; got {delivery.describe()}")
    return delivery


async def _nothing_called(suite: Suite, v: Verdict, attempt: TrackedAttempt) -> None:
    await asyncio.sleep(QUIET_SECS)
    v.saw(f"callbacks in the next {QUIET_SECS:.0f}s: {attempt.summary()}")
    v.expect(not attempt.calls, "the worker called back for a dispatch it had to refuse")


async def _refusal(
    suite: Suite,
    name: str,
    what: str,
    expected: int,
    *,
    headers: dict[str, str] | None = None,
    token_age: timedelta = timedelta(0),
    **overrides: Any,
) -> Verdict:
    v = Verdict()
    attempt = suite.attempt(name, "conformance.ok")
    body = suite.envelope(attempt, token_age=token_age, **overrides)
    delivery = await _refused(suite, v, what, body, headers=headers)
    v.expect(delivery.status == expected, f"expected {expected}, got {delivery.describe()}")
    await _nothing_called(suite, v, attempt)
    return v


async def _run_to_end(
    suite: Suite, v: Verdict, attempt: TrackedAttempt, body: Any, **kwargs: Any
) -> list[Delivery] | None:
    """Deliver, wait for a 2xx-answered /completed, and the dispatch answer."""
    pending = suite.deliver_in_background(body, **kwargs)
    completed = await suite.wait_for(
        lambda: any(c.answered.startswith("2") for c in attempt.of("completed")),
        RUN_TIMEOUT_SECS,
    )
    deliveries = await suite.outcome_of(pending, timeout=5.0)
    v.saw(_deliveries(deliveries))
    v.saw(f"callbacks: {attempt.summary()}")
    v.expect(completed, f"no acknowledged /completed within {RUN_TIMEOUT_SECS:.0f}s")
    return deliveries


def _outcome(call: Call) -> str | None:
    body = call.json()
    return body.get("outcome") if isinstance(body, dict) else None


def _at(call: Call | None) -> float:
    return call.at if call is not None else 0.0


async def _answered(suite: Suite, v: Verdict, attempt: TrackedAttempt, answer: Answer) -> bool:
    """Wait until a heartbeat (after /started) got ``answer``; a problem when none did."""
    # From the delivery: /started, then a heartbeat within one interval.
    wait = HEARTBEAT_INTERVAL_SECS + 2 * suite.tolerance + 2
    got = await suite.wait_for(
        lambda: attempt.first_answered("heartbeat", answer) is not None, wait
    )
    if not got:
        v.saw(f"callbacks: {attempt.summary()}")
    return v.expect(got, f"no heartbeat after /started within {wait:.0f}s to answer")


def _first_after(calls: list[Call], moment: float) -> list[Call]:
    return [call for call in calls if call.at > moment]


# --- dispatch authentication and envelope checks ---------------------------------------------


@scenario("dispatch-without-secret", "a dispatch without the secret is 401 and calls nothing back")
async def dispatch_without_secret(suite: Suite) -> Verdict:
    return await _refusal(
        suite, "nosecret", "a valid envelope with no secret header", 401, headers={}
    )


@scenario("dispatch-wrong-secret", "a dispatch with a wrong secret is 401 and calls nothing back")
async def dispatch_wrong_secret(suite: Suite) -> Verdict:
    headers = {"X-Arco-Dispatch-Secret": suite.config.dispatch_secret + "-wrong"}
    return await _refusal(
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
    deliveries = await _run_to_end(suite, v, attempt, suite.envelope(attempt), headers=headers)
    v.expect(_last_ok(deliveries), "the dispatch was not accepted")
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
    delivery = await _refused(suite, v, f"the pre-envelope body {body}", body)
    v.expect(delivery.status == 400, f"expected 400, got {delivery.describe()}")
    unnamed = [
        camel
        for camel, snake in _MISSING
        if camel not in delivery.body and snake not in delivery.body
    ]
    v.expect(not unnamed, f"the answer does not name the missing fields {', '.join(unnamed)}")
    await _nothing_called(suite, v, attempt)
    return v


@scenario(
    "envelope-legacy-snake-case", "the legacy snake_case spelling of the envelope is accepted"
)
async def envelope_legacy(suite: Suite) -> Verdict:
    v = Verdict()
    attempt = suite.attempt("legacy", "conformance.ok")
    legacy = {_snake(key): value for key, value in suite.envelope(attempt).items()}
    v.saw("sent conformance.ok as a snake_case envelope (task_id, callback_base_url, ...)")
    deliveries = await _run_to_end(suite, v, attempt, legacy)
    v.expect(_last_ok(deliveries), "the snake_case envelope was not accepted")
    return v


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name)


@scenario("scope-other-tenant", "an envelope for another tenant is 400 and calls nothing back")
async def scope_tenant(suite: Suite) -> Verdict:
    tenant = suite.config.tenant + "-other"
    return await _refusal(suite, "tenant", f"tenantId={tenant}", 400, tenantId=tenant)


@scenario(
    "scope-other-workspace", "an envelope for another workspace is 400 and calls nothing back"
)
async def scope_workspace(suite: Suite) -> Verdict:
    workspace = suite.config.workspace + "-other"
    return await _refusal(
        suite, "workspace", f"workspaceId={workspace}", 400, workspaceId=workspace
    )


@scenario("envelope-token-expired", "an expired tokenExpiresAt is refused (400), nothing called")
async def token_expired(suite: Suite) -> Verdict:
    return await _refusal(
        suite, "expired", "tokenExpiresAt an hour ago", 400, token_age=timedelta(hours=2)
    )


@scenario("envelope-heartbeat-timeout-floor", "heartbeatTimeoutSec below 30 is refused (400)")
async def heartbeat_floor(suite: Suite) -> Verdict:
    return await _refusal(suite, "hbfloor", "heartbeatTimeoutSec=29", 400, heartbeatTimeoutSec=29)


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
    return await _refusal(suite, "pinned", f"callbackBaseUrl={other}", 400, callbackBaseUrl=other)


@scenario(
    "callback-url",
    "callbacks go to {callbackBaseUrl without trailing /}/api/v1/tasks/{taskId}/{phase}",
)
async def callback_url(suite: Suite) -> Verdict:
    v = Verdict()
    attempt = suite.attempt("url", "conformance.ok")
    base = suite.callback_base_url.rstrip("/") + "/"
    v.saw(f"sent conformance.ok with callbackBaseUrl={base}")
    await _run_to_end(suite, v, attempt, suite.envelope(attempt, callbackBaseUrl=base))
    for call in attempt.callbacks():
        want = f"/api/v1/tasks/{attempt.task_id}/{call.phase}"
        v.expect(call.path == want, f"/{call.phase} went to {call.path}, not {want}")
    return v


# --- running a task ----------------------------------------------------------------------------


@scenario("task-succeeds", "conformance.ok: /started, then one /completed SUCCEEDED, well formed")
async def task_succeeds(suite: Suite) -> Verdict:
    v = Verdict()
    attempt = suite.attempt("ok", "conformance.ok")
    v.saw("sent conformance.ok")
    await _run_to_end(suite, v, attempt, suite.envelope(attempt))
    for call in attempt.callbacks():
        v.expect(call.problem is None, f"/{call.phase} refused by the API: {call.problem}")
        v.expect(call.token_index == 0, f"/{call.phase} did not carry the envelope's taskToken")
    completed = attempt.of("completed")
    if completed:
        v.expect(_outcome(completed[0]) == "SUCCEEDED", f"outcome {_outcome(completed[0])}")
    return v


@scenario("task-fails", "conformance.fail: /completed FAILED with an error, retryable false")
async def task_fails(suite: Suite) -> Verdict:
    v = Verdict()
    attempt = suite.attempt("fail", "conformance.fail")
    v.saw("sent conformance.fail")
    await _run_to_end(suite, v, attempt, suite.envelope(attempt))
    completed = attempt.of("completed")
    if completed:
        body = completed[0].json() or {}
        found = body.get("error")
        error: dict[str, Any] = found if isinstance(found, dict) else {}
        v.saw(f"/completed body: outcome={body.get('outcome')} error={error}")
        v.expect(body.get("outcome") == "FAILED", "outcome is not FAILED")
        v.expect(error.get("retryable") is False, "error.retryable is not false")
    return v


@scenario("started-first", "/started precedes every heartbeat and the terminal report")
async def started_first(suite: Suite) -> Verdict:
    v = Verdict()
    attempt = suite.attempt("order", "conformance.sleep")
    seconds = HEARTBEAT_INTERVAL_SECS + 1
    v.saw(f"sent conformance.sleep seconds={seconds:.0f}")
    await _run_to_end(suite, v, attempt, suite.envelope(attempt, payload={"seconds": seconds}))
    phases = attempt.phases()
    v.expect(bool(phases) and phases[0] == "started", f"first callback: {phases[:1]}")
    return v


@scenario(
    "heartbeat-cadence",
    "heartbeats every heartbeatTimeoutSec/5 s clamped to [5, 60] (6 s for 30), valid bodies",
)
async def heartbeat_cadence(suite: Suite) -> Verdict:
    v = Verdict()
    attempt = suite.attempt("cadence", "conformance.sleep")
    seconds = 2 * HEARTBEAT_INTERVAL_SECS + 2
    v.saw(f"sent conformance.sleep seconds={seconds:.0f}, heartbeatTimeoutSec=30")
    await _run_to_end(suite, v, attempt, suite.envelope(attempt, payload={"seconds": seconds}))
    started = attempt.of("started")
    completed = attempt.of("completed")
    beats = attempt.of("heartbeat")
    if not started or not completed:
        v.expect(False, "no /started and /completed to time heartbeats against")
        return v
    beats = [b for b in beats if started[0].at < b.at < completed[0].at]
    moments = [started[0].at, *(b.at for b in beats), completed[0].at]
    gaps = [later - earlier for earlier, later in itertools.pairwise(moments)]
    v.saw(
        "gaps between /started, heartbeats and /completed: " + ", ".join(f"{g:.1f}s" for g in gaps)
    )
    limit = HEARTBEAT_INTERVAL_SECS + suite.tolerance
    v.expect(len(beats) >= 2, f"{len(beats)} heartbeats in {seconds:.0f}s (expected 2 or more)")
    v.expect(max(gaps) <= limit, f"a gap of {max(gaps):.1f}s exceeds {limit:.0f}s")
    beat_gaps = gaps[1:-1]
    v.expect(
        all(g >= HEARTBEAT_INTERVAL_SECS / 2 for g in beat_gaps),
        f"heartbeats closer than {HEARTBEAT_INTERVAL_SECS / 2:.0f}s apart",
    )
    for beat in beats:
        v.expect(beat.problem is None, f"a heartbeat was refused: {beat.problem}")
    return v


@scenario("cancel", "shouldCancel: true on a heartbeat leads to /completed CANCELLED within 10 s")
async def cancel(suite: Suite) -> Verdict:
    v = Verdict()
    attempt = suite.attempt("cancel", "conformance.sleep")
    attempt.on("heartbeat", *[Answer(should_cancel=True)] * 20)
    v.saw("sent conformance.sleep seconds=30; every heartbeat answered shouldCancel: true")
    pending = suite.deliver_in_background(suite.envelope(attempt, payload={"seconds": 30}))
    asking = Answer(should_cancel=True)
    if not await _answered(suite, v, attempt, asking):
        return v
    asked = _at(attempt.first_answered("heartbeat", asking))
    ended = await suite.wait_calls(attempt, "completed", timeout=CANCEL_GRACE_SECS)
    v.saw(_deliveries(await suite.outcome_of(pending, timeout=1.0)))
    v.saw(f"callbacks: {attempt.summary()}")
    if not v.expect(ended, f"no /completed within {CANCEL_GRACE_SECS:.0f}s of shouldCancel"):
        return v
    completed = attempt.of("completed")[0]
    v.saw(f"/completed {completed.at - asked:.1f}s after shouldCancel")
    v.expect(_outcome(completed) == "CANCELLED", f"outcome {_outcome(completed)}, not CANCELLED")
    return v


async def _stops_on_heartbeat(suite: Suite, name: str, answer: Answer) -> Verdict:
    v = Verdict()
    attempt = suite.attempt(name, "conformance.sleep")
    attempt.on("heartbeat", answer)
    v.saw(f"sent conformance.sleep seconds=30; first heartbeat answered {answer.describe()}")
    suite.deliver_in_background(suite.envelope(attempt, payload={"seconds": 30}))
    if not await _answered(suite, v, attempt, answer):
        return v
    stopped_at = _at(attempt.first_answered("heartbeat", answer))
    # Long enough for the next heartbeat, had the worker gone on.
    await asyncio.sleep(HEARTBEAT_INTERVAL_SECS + suite.tolerance + 1.0)
    v.saw(f"callbacks: {attempt.summary()}")
    later = _first_after(attempt.callbacks(), stopped_at)
    v.expect(
        not later,
        f"sent {', '.join(c.phase for c in later)} after the attempt was over",
    )
    return v


@scenario("heartbeat-409-stops", "a 409 on a heartbeat stops the attempt: nothing more is sent")
async def heartbeat_409(suite: Suite) -> Verdict:
    answer = Answer(409, "task_already_terminal", "Task is already in terminal state: SUCCEEDED")
    return await _stops_on_heartbeat(suite, "hb409", answer)


@scenario("heartbeat-410-stops", "a 410 on a heartbeat stops the attempt: nothing more is sent")
async def heartbeat_410(suite: Suite) -> Verdict:
    return await _stops_on_heartbeat(suite, "hb410", Answer(410, "task_expired", "Gone"))


async def _runs_nothing(
    suite: Suite, v: Verdict, name: str, answer: Answer, *, needs_ok: bool
) -> None:
    attempt = suite.attempt(name, "conformance.sleep")
    attempt.on("started", answer)
    pending = suite.deliver_in_background(suite.envelope(attempt, payload={"seconds": 1}))
    await suite.wait_calls(attempt, "started", timeout=10.0)
    deliveries = await suite.outcome_of(pending, timeout=10.0)
    await asyncio.sleep(QUIET_SECS)
    v.saw(f"/started answered {answer.describe()}: {_deliveries(deliveries)}; {attempt.summary()}")
    v.expect(attempt.count("started") == 1, f"/started sent {attempt.count('started')} times")
    # What came before /started is started-first's business.
    first = _at(next(iter(attempt.of("started")), None))
    ran = [c.phase for c in _first_after(attempt.callbacks(), first) if c.phase != "started"]
    v.expect(not ran, f"{answer.error or answer.status}: the task ran anyway ({', '.join(ran)})")
    if needs_ok:
        v.expect(_last_ok(deliveries), f"{answer.error}: the dispatch was not answered 2xx")


@scenario("started-401-runs-nothing", "401 on /started: run nothing, send nothing more")
async def started_401(suite: Suite) -> Verdict:
    v = Verdict()
    answer = Answer(401, "invalid_token", "invalid_token: attempt_mismatch")
    await _runs_nothing(suite, v, "st401", answer, needs_ok=False)
    return v


@scenario(
    "started-409-runs-nothing",
    "409 task_already_terminal (run cancelled) on /started: run nothing, answer the dispatch 2xx",
)
async def started_409(suite: Suite) -> Verdict:
    v = Verdict()
    answer = Answer(
        409,
        "task_already_terminal",
        "task_already_terminal: the run is being cancelled",
        state="CANCELLED",
    )
    await _runs_nothing(suite, v, "st409", answer, needs_ok=True)
    return v


@scenario(
    "conflict-code-from-json",
    "409 codes are read from the JSON error, not the message (codes with unusual messages)",
)
async def conflict_code_from_json(suite: Suite) -> Verdict:
    v = Verdict()
    await asyncio.gather(
        *(
            _runs_nothing(suite, v, f"code{i}", Answer(409, code, message), needs_ok=True)
            for i, (code, message) in enumerate(UNUSUAL_CONFLICTS)
        )
    )
    return v


# --- callback retries and tokens ---------------------------------------------------------------


def _same_bodies(v: Verdict, attempt: TrackedAttempt, phase: str, ignore: tuple[str, ...]) -> None:
    bodies = []
    for call in attempt.of(phase):
        body = call.json()
        if isinstance(body, dict):
            bodies.append({k: val for k, val in body.items() if k not in ignore})
    v.expect(
        all(body == bodies[0] for body in bodies[1:]),
        f"the retried /{phase} bodies differ",
    )


async def _retried(suite: Suite, name: str, what: str, answers: dict[str, list[Answer]]) -> Verdict:
    v = Verdict()
    attempt = suite.attempt(name, "conformance.ok")
    for phase, phase_answers in answers.items():
        attempt.on(phase, *phase_answers)
    v.saw(f"sent conformance.ok; {what}")
    await _run_to_end(suite, v, attempt, suite.envelope(attempt))
    for phase, phase_answers in answers.items():
        sent = attempt.count(phase)
        v.expect(sent > len(phase_answers), f"/{phase} sent {sent} times, not retried")
        # A /started redelivered by the queue is built anew: its timestamp may differ.
        _same_bodies(v, attempt, phase, ("startedAt",) if phase == "started" else ())
    return v


@scenario("retry-503", "503 on /started and /completed is retried with the identical body")
async def retry_503(suite: Suite) -> Verdict:
    unavailable = Answer(503, "unavailable", "database unavailable")
    return await _retried(
        suite,
        "r503",
        "/started answered 503 once, /completed 503 twice",
        {"started": [unavailable], "completed": [unavailable, unavailable]},
    )


@scenario("retry-429", "429 (with Retry-After) on /completed is retried with the identical body")
async def retry_429(suite: Suite) -> Verdict:
    limited = Answer(
        429, "RATE_LIMITED", "Rate limit exceeded. Retry after 1 seconds.", retry_after=1
    )
    return await _retried(
        suite, "r429", "/completed answered 429 twice", {"completed": [limited] * 2}
    )


@scenario("retry-connection-reset", "a connection reset on /completed is retried, identical body")
async def retry_reset(suite: Suite) -> Verdict:
    reset = Answer(reset=True)
    return await _retried(
        suite, "rreset", "/completed connection reset twice", {"completed": [reset] * 2}
    )


@scenario("token-refresh", "a taskToken in a heartbeat answer is used for every later callback")
async def token_refresh(suite: Suite) -> Verdict:
    v = Verdict()
    attempt = suite.attempt("refresh", "conformance.sleep")
    refresh = Answer(refresh_token=True)
    attempt.on("heartbeat", refresh)
    seconds = HEARTBEAT_INTERVAL_SECS + 3
    v.saw(
        f"sent conformance.sleep seconds={seconds:.0f}; "
        "the first heartbeat answered with a new taskToken"
    )
    await _run_to_end(suite, v, attempt, suite.envelope(attempt, payload={"seconds": seconds}))
    refreshed = attempt.first_answered("heartbeat", refresh)
    if refreshed is None:
        v.status = Status.SKIP
        v.saw("no heartbeat after /started, so no token could be refreshed (heartbeat-cadence)")
        return v
    # /started is started-first's business: only heartbeats and the report count here.
    later = [c for c in _first_after(attempt.callbacks(), refreshed.at) if c.phase != "started"]
    v.saw("tokens after the refresh: " + ", ".join(f"{c.phase}={_token_name(c)}" for c in later))
    v.expect(bool(later), "nothing was sent after the refresh")
    stale = [c.phase for c in later if c.token_index != 1]
    v.expect(not stale, f"{', '.join(stale)} did not carry the refreshed token")
    return v


def _token_name(call: Call) -> str:
    names = {0: "original", 1: "refreshed"}
    return names.get(call.token_index, "unknown") if call.token_index is not None else "unknown"


@scenario(
    "dispatch-id-dedupe",
    "a repeated dispatchId runs nothing twice: 503 while running, 200 once finished",
)
async def dedupe(suite: Suite) -> Verdict:
    v = Verdict()
    attempt = suite.attempt("dedupe", "conformance.sleep")
    envelope = suite.envelope(attempt, payload={"seconds": 3})
    v.saw("sent conformance.sleep seconds=3, then the same envelope twice")
    pending = suite.deliver_in_background(envelope)
    if not await suite.wait_calls(attempt, "started", timeout=10.0):
        v.expect(False, "no /started for the first delivery")
        return v
    running = await suite.send(envelope)
    v.saw(f"while running: {running.describe()}")
    v.expect(running.status == 503, f"a delivery while running was answered {running.status}")
    await suite.wait_calls(attempt, "completed", timeout=RUN_TIMEOUT_SECS)
    await suite.outcome_of(pending, timeout=10.0)
    finished = await suite.deliver(envelope)
    v.saw(f"once finished: {_deliveries(finished)}")
    v.expect(_last_ok(finished), "a delivery after the end was not answered 2xx")
    await asyncio.sleep(QUIET_SECS)
    v.saw(f"callbacks: {attempt.summary()}")
    v.expect(attempt.count("started") == 1, f"/started sent {attempt.count('started')} times")
    return v


@scenario(
    "dispatch-answer-timing",
    "information: whether /dispatch is answered before the task ends (both are allowed)",
)
async def answer_timing(suite: Suite) -> Verdict:
    v = Verdict(status=Status.INFO)
    attempt = suite.attempt("timing", "conformance.sleep")
    v.saw("sent conformance.sleep seconds=3")
    deliveries = await _run_to_end(
        suite, v, attempt, suite.envelope(attempt, payload={"seconds": 3})
    )
    completed = attempt.of("completed")
    if deliveries and completed:
        answer = deliveries[-1]
        ahead = completed[0].at - answer.answered_at
        when = "before" if ahead > 0 else "after"
        v.saw(f"answered {answer.status} {abs(ahead):.1f}s {when} /completed")
    return v


# --- properties of all the traffic ---------------------------------------------------------------


@scenario(
    "one-terminal-report",
    "across every scenario: nothing is sent for an attempt after its /completed was acknowledged",
    final=True,
)
async def one_terminal_report(suite: Suite) -> Verdict:
    v = Verdict()
    checked = 0
    for attempt in suite.api.attempts():
        acknowledged = [c for c in attempt.of("completed") if c.answered.startswith("2")]
        if not acknowledged:
            continue
        checked += 1
        # Until the next /started: running a delivery again is dispatch-id-dedupe's business.
        after = _first_after(attempt.callbacks(), acknowledged[0].at)
        later = list(itertools.takewhile(lambda c: c.phase != "started", after))
        v.expect(
            not later,
            f"{attempt.run_id}: {', '.join(c.phase for c in later)} "
            "after /completed was acknowledged",
        )
    v.saw(f"{checked} attempts with an acknowledged /completed checked")
    return v


@scenario("log-upload", "information: which attempts uploaded their logs", final=True)
async def log_upload(suite: Suite) -> Verdict:
    v = Verdict(status=Status.INFO)
    attempts = suite.api.attempts()
    uploaded = [a for a in attempts if a.count("logs")]
    ran = [a for a in attempts if a.count("completed")]
    v.saw(f"{len(uploaded)} of {len(ran)} attempts that reported an outcome uploaded logs")
    return v
