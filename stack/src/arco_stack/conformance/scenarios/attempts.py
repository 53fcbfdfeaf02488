"""Running a task: started, heartbeats, cancel, stop codes."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

from arco_stack.conformance.callback_api import Answer
from arco_stack.conformance.scenarios.base import (
    CANCEL_GRACE_SECS,
    UNUSUAL_CONFLICTS,
    Verdict,
    describe_deliveries,
    first_after,
    last_ok,
    moment_of,
    reported_outcome,
    run_to_end,
    scenario,
    was_answered,
)
from arco_stack.conformance.suite import HEARTBEAT_INTERVAL_SECS, QUIET_SECS, Suite

# --- running a task ----------------------------------------------------------------------------


@scenario("task-succeeds", "conformance.ok: /started, then one /completed SUCCEEDED, well formed")
async def task_succeeds(suite: Suite) -> Verdict:
    v = Verdict()
    attempt = suite.attempt("ok", "conformance.ok")
    v.saw("sent conformance.ok")
    await run_to_end(suite, v, attempt, suite.envelope(attempt))
    for call in attempt.callbacks():
        v.expect(call.problem is None, f"/{call.phase} refused by the API: {call.problem}")
        v.expect(call.token_index == 0, f"/{call.phase} did not carry the envelope's taskToken")
    completed = attempt.of("completed")
    if completed:
        v.expect(
            reported_outcome(completed[0]) == "SUCCEEDED",
            f"outcome {reported_outcome(completed[0])}",
        )
    return v


@scenario("task-fails", "conformance.fail: /completed FAILED with an error, retryable false")
async def task_fails(suite: Suite) -> Verdict:
    v = Verdict()
    attempt = suite.attempt("fail", "conformance.fail")
    v.saw("sent conformance.fail")
    await run_to_end(suite, v, attempt, suite.envelope(attempt))
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
    await run_to_end(suite, v, attempt, suite.envelope(attempt, payload={"seconds": seconds}))
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
    await run_to_end(suite, v, attempt, suite.envelope(attempt, payload={"seconds": seconds}))
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
    if not await was_answered(suite, v, attempt, asking):
        return v
    asked = moment_of(attempt.first_answered("heartbeat", asking))
    ended = await suite.wait_calls(attempt, "completed", timeout=CANCEL_GRACE_SECS)
    v.saw(describe_deliveries(await suite.outcome_of(pending, timeout=1.0)))
    v.saw(f"callbacks: {attempt.summary()}")
    if not v.expect(ended, f"no /completed within {CANCEL_GRACE_SECS:.0f}s of shouldCancel"):
        return v
    completed = attempt.of("completed")[0]
    v.saw(f"/completed {completed.at - asked:.1f}s after shouldCancel")
    v.expect(
        reported_outcome(completed) == "CANCELLED",
        f"outcome {reported_outcome(completed)}, not CANCELLED",
    )
    return v


async def _stops_on_heartbeat(suite: Suite, name: str, answer: Answer) -> Verdict:
    v = Verdict()
    attempt = suite.attempt(name, "conformance.sleep")
    attempt.on("heartbeat", answer)
    v.saw(f"sent conformance.sleep seconds=30; first heartbeat answered {answer.describe()}")
    suite.deliver_in_background(suite.envelope(attempt, payload={"seconds": 30}))
    if not await was_answered(suite, v, attempt, answer):
        return v
    stopped_at = moment_of(attempt.first_answered("heartbeat", answer))
    # Long enough for the next heartbeat, had the worker gone on.
    await asyncio.sleep(HEARTBEAT_INTERVAL_SECS + suite.tolerance + 1.0)
    v.saw(f"callbacks: {attempt.summary()}")
    later = first_after(attempt.callbacks(), stopped_at)
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
    v.saw(
        f"/started answered {answer.describe()}: "
        f"{describe_deliveries(deliveries)}; {attempt.summary()}"
    )
    v.expect(attempt.count("started") == 1, f"/started sent {attempt.count('started')} times")
    # What came before /started is started-first's business.
    first = moment_of(next(iter(attempt.of("started")), None))
    ran = [c.phase for c in first_after(attempt.callbacks(), first) if c.phase != "started"]
    v.expect(not ran, f"{answer.error or answer.status}: the task ran anyway ({', '.join(ran)})")
    if needs_ok:
        v.expect(last_ok(deliveries), f"{answer.error}: the dispatch was not answered 2xx")


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
