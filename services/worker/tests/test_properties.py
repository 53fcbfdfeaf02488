"""Property: whatever the callback API answers, and however often a dispatch is delivered,
the worker sends at most one terminal outcome per attempt (one ``/completed`` body, resent
unchanged on retries), nothing after the API said the attempt is over, and no heartbeat or
completion for an attempt whose ``/started`` was never accepted."""

from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import replace
from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from services.worker.tests.worker_test_support import (
    FAST_OPTIONS,
    FakeCallbackApi,
    Scripted,
    error_body,
    make_envelope,
    make_settings,
    now,
    stamp,
)

from arco_envelope import ATTEMPT_OVER_CODES, WorkerDispatchEnvelope
from arco_worker import TaskContext, TaskFailure, Worker
from arco_worker.client import RetryPolicy
from arco_worker.service import WorkerService

OPTIONS = replace(
    FAST_OPTIONS,
    retry=RetryPolicy(base_delay_secs=0.001, max_delay_secs=0.004, max_attempts=2),
    heartbeat_interval_secs=0.01,
)


def _worker() -> Worker:
    worker = Worker()
    stubborn_release = threading.Event()

    @worker.task("p.ok")
    async def ok(ctx: TaskContext) -> dict[str, int]:
        await asyncio.sleep(0.03)
        return {"rowCount": 1}

    @worker.task("p.boom")
    def boom(ctx: TaskContext) -> None:
        raise RuntimeError("boom")

    @worker.task("p.typed")
    async def typed(ctx: TaskContext) -> None:
        await asyncio.sleep(0.02)
        raise TaskFailure("typed", retryable=False)

    @worker.task("p.slow")
    async def slow(ctx: TaskContext) -> dict[str, int]:
        ctx.report_progress(30, "slow")
        await ctx.sleep(0.12)
        return {"rowCount": 2}

    @worker.task("p.stubborn")
    def stubborn(ctx: TaskContext) -> None:
        stubborn_release.wait(0.1)  # ignores cancellation

    return worker


WORKER = _worker()


def _answers(phase: str) -> st.SearchStrategy[Scripted]:
    over_codes = sorted(ATTEMPT_OVER_CODES)
    choices: list[st.SearchStrategy[Scripted]] = [
        st.just(Scripted(500)),
        st.just(Scripted(503, headers={"Retry-After": "0"})),
        st.just(Scripted(429, {"code": "RATE_LIMITED", "message": "x"})),
        st.just(Scripted(401, error_body("invalid_token"))),
        st.just(Scripted(404, error_body("task_not_found"))),
        st.just(Scripted(410, error_body("task_expired"))),
        st.builds(lambda code: Scripted(409, error_body(code)), st.sampled_from(over_codes)),
        st.just(Scripted(409, error_body("unexpected_code", "task_already_terminal"))),
    ]
    if phase == "heartbeat":
        choices += [
            st.just(Scripted(204)),
            st.just(Scripted(body={"acknowledged": True, "shouldCancel": True})),
            st.just(Scripted(body={"acknowledged": True, "taskToken": "refreshed"})),
            st.just(Scripted(200, {"not": "a heartbeat"})),
        ]
    return st.one_of(*choices)


scenarios = st.fixed_dictionaries(
    {
        "task_key": st.sampled_from(["p.ok", "p.boom", "p.typed", "p.slow", "p.stubborn"]),
        "started": st.lists(_answers("started"), max_size=4),
        "heartbeat": st.lists(_answers("heartbeat"), max_size=6),
        "completed": st.lists(_answers("completed"), max_size=5),
        "deliveries": st.integers(min_value=1, max_value=3),
        "concurrent": st.booleans(),
        "shutdown_grace": st.none() | st.sampled_from([0.0, 0.05]),
    }
)


async def _play(api: FakeCallbackApi, scenario: dict[str, Any], envelope: dict[str, Any]) -> None:
    settings_ = make_settings(
        api.base_url, ARCO_WORKER_CANCEL_GRACE_SECS="0.03", ARCO_WORKER_CONCURRENCY="4"
    )
    service = WorkerService(settings_, WORKER, options=OPTIONS)
    await service.start()
    parsed = WorkerDispatchEnvelope.from_dict(envelope)
    try:
        if scenario["concurrent"]:
            await asyncio.gather(*(service.dispatch(parsed) for _ in range(scenario["deliveries"])))
        else:
            for _ in range(scenario["deliveries"]):
                await service.dispatch(parsed)
        if scenario["shutdown_grace"] is not None:
            await service.shutdown(scenario["shutdown_grace"])
        assert await service.wait_idle(10)
        await service.shutdown(0)
    finally:
        await service.aclose()


@settings(
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(scenario=scenarios)
def test_one_terminal_outcome_per_attempt(
    fake_api_server: FakeCallbackApi, scenario: dict[str, Any]
) -> None:
    api = fake_api_server
    api.reset()
    for phase in ("started", "heartbeat", "completed"):
        # Bodies without serverTime get one, so 200 answers are well-formed where intended.
        api.script(
            phase,
            *(
                replace(a, body={**a.body, "serverTime": stamp(now())})
                if a.status == 200 and isinstance(a.body, dict) and "acknowledged" in a.body
                else a
                for a in scenario[phase]
            ),
        )
    envelope = make_envelope(
        api.base_url,
        scenario["task_key"],
        tokenExpiresAt=stamp(now() + timedelta(seconds=20)),
    )
    asyncio.run(_play(api, scenario, envelope))

    requests = api.requests(task_id=envelope["taskId"])
    completed = [r for r in requests if r.phase == "completed"]
    # 1. One terminal report: every /completed carries the very same body.
    assert len({json.dumps(r.body, sort_keys=True) for r in completed}) <= 1
    # 2. Heartbeats and completions only after an accepted /started; every later /started
    #    comes from a redelivery of a dispatch whose /started was not accepted.
    phases = [r.phase for r in requests]
    if "heartbeat" in phases or completed:
        first_other = min(i for i, p in enumerate(phases) if p != "started")
        assert "started" not in phases[first_other:]
    # 3. No heartbeat or completion unless some /started was accepted (the scripted /started
    #    answers are all refusals; the API's default 200 comes once they are used up).
    accepted = phases.count("started") > len(scenario["started"])
    if not accepted:
        assert phases == ["started"] * len(phases)
    # Which scripted answer each heartbeat got (the i-th heartbeat request takes the i-th
    # scripted answer, then the API's default 200). Positions, not list.index(): a retry
    # resends an identical body, so two recorded requests can be equal.
    beat_answers = {
        position: scenario["heartbeat"][count] if count < len(scenario["heartbeat"]) else None
        for count, position in enumerate(i for i, p in enumerate(phases) if p == "heartbeat")
    }
    for position, answer in beat_answers.items():
        if answer is None:
            continue
        later = requests[position + 1 :]
        # 4. A refreshed token is used by every later callback.
        body = answer.body if isinstance(answer.body, dict) else {}
        if answer.status == 200 and body.get("taskToken") == "refreshed":
            assert {r.authorization for r in later} <= {"Bearer refreshed"}
        # 5. Nothing after the API said the attempt is over on a heartbeat (409/410/401).
        if answer.status in (401, 409, 410):
            assert later == []
            assert completed == []
