"""Run the scenarios against one worker: start the callback API, run every scenario side by
side (the ``final`` ones last, over everyone's traffic), stop, and return the results."""

from __future__ import annotations

import asyncio
import time
import traceback
from dataclasses import dataclass

import httpx

from arco_stack.conformance.callback_api import CallbackApi
from arco_stack.conformance.http_server import HttpServer
from arco_stack.conformance.scenarios import SCENARIOS, Scenario, Status
from arco_stack.conformance.suite import Suite, SuiteConfig, new_token_config

SCENARIO_TIMEOUT_SECS = 120.0


@dataclass(frozen=True)
class Result:
    """The verdict of one scenario."""

    scenario: str
    rule: str
    status: Status
    evidence: tuple[str, ...]
    seconds: float


def select(only: tuple[str, ...]) -> list[Scenario]:
    """The scenarios named in ``only`` (all when empty); raises ``ValueError`` for an
    unknown name."""
    if not only:
        return list(SCENARIOS)
    known = {s.name for s in SCENARIOS}
    unknown = sorted(set(only) - known)
    if unknown:
        raise ValueError(
            f"unknown scenario {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    return [s for s in SCENARIOS if s.name in only]


async def _run_one(suite: Suite, scenario: Scenario) -> Result:
    started = time.monotonic()
    try:
        verdict = await asyncio.wait_for(scenario.run(suite), SCENARIO_TIMEOUT_SECS)
        status, evidence = verdict.final_status, (*verdict.evidence, *verdict.problems)
    except TimeoutError:
        status, evidence = (
            Status.FAIL,
            (f"the scenario did not end in {SCENARIO_TIMEOUT_SECS:.0f}s",),
        )
    except Exception as exc:  # noqa: BLE001 - a broken scenario is reported, not fatal
        status = Status.FAIL
        evidence = (f"suite error: {exc!r}", traceback.format_exc(limit=3))
    return Result(scenario.name, scenario.rule, status, evidence, time.monotonic() - started)


async def run_suite(
    config: SuiteConfig,
    *,
    listen_host: str = "127.0.0.1",
    listen_port: int = 0,
    callback_base_url: str | None = None,
) -> list[Result]:
    """Run the selected scenarios against ``config.worker_url``."""
    chosen = select(config.only)
    api = CallbackApi(new_token_config(), config.tenant, config.workspace, time.monotonic)
    server = await HttpServer(api.handle).start(listen_host, listen_port)
    try:
        async with httpx.AsyncClient(timeout=30.0) as http:
            suite = Suite(config, api, callback_base_url or server.url, http)
            try:
                results = list(
                    await asyncio.gather(*(_run_one(suite, s) for s in chosen if not s.final))
                )
                for scenario in chosen:
                    if scenario.final:
                        results.append(await _run_one(suite, scenario))
            finally:
                await suite.aclose()
    finally:
        await server.close()
    order = {s.name: i for i, s in enumerate(chosen)}
    return sorted(results, key=lambda r: order[r.scenario])
