"""What every scenario shares: verdicts, the registry and the helpers that send and watch."""

from __future__ import annotations

import asyncio
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


def describe_deliveries(deliveries: list[Delivery] | None) -> str:
    if deliveries is None:
        return "dispatch: no answer yet"
    return "dispatch answered " + " then ".join(d.describe() for d in deliveries)


def last_ok(deliveries: list[Delivery] | None) -> bool:
    return bool(deliveries) and deliveries is not None and deliveries[-1].ok


async def send_refused(suite: Suite, v: Verdict, what: str, body: Any, **kwargs: Any) -> Delivery:
    """Send ``body`` once; expect 400-style refusal fields checked by the caller."""
    delivery = await suite.send(body, **kwargs)
    v.saw(f"sent {what}; got {delivery.describe()}")
    return delivery


async def nothing_called(suite: Suite, v: Verdict, attempt: TrackedAttempt) -> None:
    await asyncio.sleep(QUIET_SECS)
    v.saw(f"callbacks in the next {QUIET_SECS:.0f}s: {attempt.summary()}")
    v.expect(not attempt.calls, "the worker called back for a dispatch it had to refuse")


async def expect_refusal(
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
    delivery = await send_refused(suite, v, what, body, headers=headers)
    v.expect(delivery.status == expected, f"expected {expected}, got {delivery.describe()}")
    await nothing_called(suite, v, attempt)
    return v


async def run_to_end(
    suite: Suite, v: Verdict, attempt: TrackedAttempt, body: Any, **kwargs: Any
) -> list[Delivery] | None:
    """Deliver, wait for a 2xx-answered /completed, and the dispatch answer."""
    pending = suite.deliver_in_background(body, **kwargs)
    completed = await suite.wait_for(
        lambda: any(c.answered.startswith("2") for c in attempt.of("completed")),
        RUN_TIMEOUT_SECS,
    )
    deliveries = await suite.outcome_of(pending, timeout=5.0)
    v.saw(describe_deliveries(deliveries))
    v.saw(f"callbacks: {attempt.summary()}")
    v.expect(completed, f"no acknowledged /completed within {RUN_TIMEOUT_SECS:.0f}s")
    return deliveries


def reported_outcome(call: Call) -> str | None:
    body = call.json()
    return body.get("outcome") if isinstance(body, dict) else None


def moment_of(call: Call | None) -> float:
    return call.at if call is not None else 0.0


async def was_answered(suite: Suite, v: Verdict, attempt: TrackedAttempt, answer: Answer) -> bool:
    """Wait until a heartbeat (after /started) got ``answer``; a problem when none did."""
    # From the delivery: /started, then a heartbeat within one interval.
    wait = HEARTBEAT_INTERVAL_SECS + 2 * suite.tolerance + 2
    got = await suite.wait_for(
        lambda: attempt.first_answered("heartbeat", answer) is not None, wait
    )
    if not got:
        v.saw(f"callbacks: {attempt.summary()}")
    return v.expect(got, f"no heartbeat after /started within {wait:.0f}s to answer")


def first_after(calls: list[Call], moment: float) -> list[Call]:
    return [call for call in calls if call.at > moment]
