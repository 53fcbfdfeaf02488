"""Callback retries, token refresh, dedupe and properties of all the traffic."""

from __future__ import annotations

import asyncio
import itertools

from arco_stack.conformance.callback_api import Answer, Call, TrackedAttempt
from arco_stack.conformance.scenarios.base import (
    RUN_TIMEOUT_SECS,
    Status,
    Verdict,
    describe_deliveries,
    first_after,
    last_ok,
    run_to_end,
    scenario,
)
from arco_stack.conformance.suite import HEARTBEAT_INTERVAL_SECS, QUIET_SECS, Suite

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
    await run_to_end(suite, v, attempt, suite.envelope(attempt))
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
    await run_to_end(suite, v, attempt, suite.envelope(attempt, payload={"seconds": seconds}))
    refreshed = attempt.first_answered("heartbeat", refresh)
    if refreshed is None:
        v.status = Status.SKIP
        v.saw("no heartbeat after /started, so no token could be refreshed (heartbeat-cadence)")
        return v
    # /started is started-first's business: only heartbeats and the report count here.
    later = [c for c in first_after(attempt.callbacks(), refreshed.at) if c.phase != "started"]
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
    v.saw(f"once finished: {describe_deliveries(finished)}")
    v.expect(last_ok(finished), "a delivery after the end was not answered 2xx")
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
    deliveries = await run_to_end(
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
        after = first_after(attempt.callbacks(), acknowledged[0].at)
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
