"""The chaos controller: SIGKILLs services at seeded random moments, restarts them, and
crashes and restarts PostgreSQL once; it records every outage so the checks can tell errors
caused by an outage from errors that should never happen."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from arco_stack.config import ServiceSpec
from arco_stack.processes import Stack

from .postgres_server import PostgresServer

SERVICES = ("api", "worker", "dispatcher", "sweeper")
POSTGRES = "postgres"


@dataclass
class Outage:
    """``what`` (a service or ``postgres``) was down from ``began`` to ``ended``."""

    what: str
    began: datetime
    ended: datetime

    def covers(self, moment: datetime, *, slack_secs: float) -> bool:
        return (
            self.began.timestamp() - slack_secs
            <= moment.timestamp()
            <= self.ended.timestamp() + slack_secs
        )


@dataclass(frozen=True)
class Step:
    pause_secs: float  # before the kill
    victim: str
    down_secs: float  # between the kill and the restart


def plan(seed: int, kills: int) -> list[Step]:
    """``kills`` service kills (every service at least once when ``kills`` >= 4) and one
    PostgreSQL crash, in an order and with pauses fixed by ``seed``."""
    rng = random.Random(seed)  # noqa: S311 - reproducible chaos, not security
    victims = [SERVICES[index % len(SERVICES)] for index in range(kills)]
    rng.shuffle(victims)
    victims.insert(rng.randrange(len(victims) + 1), POSTGRES)
    return [Step(rng.uniform(0.5, 4.0), victim, rng.uniform(0.0, 2.0)) for victim in victims]


def _now() -> datetime:
    return datetime.now(UTC)


class ChaosController:
    def __init__(self, stack: Stack, specs: dict[str, ServiceSpec], server: PostgresServer) -> None:
        self.stack = stack
        self.specs = specs
        self.server = server
        self.outages: list[Outage] = []
        self.unexpected_exits: list[str] = []

    def _check_services(self) -> None:
        """A service that died on its own is a finding: record why, then bring it back so the
        run can still finish and the other checks still say something."""
        for service in list(self.stack.services):
            if reason := service.failure():
                self.unexpected_exits.append(reason)
                began = _now()
                self.stack.services.remove(service)
                service.log_file.close()
                self.stack.wait_ready(self.stack.start(service.spec), timeout=120)
                self.outages.append(Outage(service.spec.name, began, _now()))

    def execute(self, steps: list[Step]) -> None:
        """Play every step (all of them, even once the work is done, so every run of a seed
        injects the same faults)."""
        for step in steps:
            deadline = time.monotonic() + step.pause_secs
            while time.monotonic() < deadline:
                self._check_services()
                time.sleep(0.1)
            began = _now()
            if step.victim == POSTGRES:
                self.server.crash()
                time.sleep(step.down_secs)
                self.server.start()
            else:
                self.stack.kill(step.victim)
                time.sleep(step.down_secs)
                self.stack.wait_ready(self.stack.start(self.specs[step.victim]), timeout=120)
            self.outages.append(Outage(step.victim, began, _now()))

    def watch(self, *, stop: Callable[[], bool], timeout: float) -> bool:
        """Keep services alive until ``stop()`` or ``timeout``; returns ``stop()``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if stop():
                return True
            self._check_services()
            time.sleep(0.5)
        return stop()
