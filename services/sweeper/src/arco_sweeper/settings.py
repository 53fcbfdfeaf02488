"""Sweeper configuration: the shared settings plus the repair thresholds, whose defaults
are upstream's constants (arco-orchestration 4.1)."""

from __future__ import annotations

from datetime import timedelta

from arco_dispatch.settings import FlowSettings, env, not_negative, positive
from arco_orchestration.states import RETRY_BACKOFF_BASE
from arco_sweeper.rules import SweepThresholds


class SweeperSettings(FlowSettings):
    """The shared settings plus loop mode and the repair thresholds; port 8082."""

    http_port: int = env("ARCO_HTTP_PORT", 8082)
    sweep_loop: bool = env("ARCO_FLOW_SWEEP_LOOP", True)
    sweep_interval_secs: float = env("ARCO_FLOW_SWEEP_INTERVAL_SECS", 30)
    # R1: a READY task nobody dispatched for this long is dispatched by the sweeper.
    stuck_ready_secs: int = env("ARCO_FLOW_SWEEP_STUCK_READY_SECS", 300)
    # R2: a DISPATCHED task not started this long after its enqueue is re-sent; the n-th
    # re-send waits this long times 2^n (backoff).
    stuck_dispatched_secs: int = env("ARCO_FLOW_SWEEP_STUCK_DISPATCHED_SECS", 600)
    # R4: a RUNNING task silent for its heartbeat timeout plus this grace is failed.
    heartbeat_grace_secs: int = env("ARCO_FLOW_SWEEP_HEARTBEAT_GRACE_SECS", 30)
    # D7: re-sends of one stuck attempt before it fails with reason dispatch_timeout.
    max_redispatches: int = env("ARCO_FLOW_MAX_REDISPATCHES", 3)
    # R2/R4 failures retry after this base backoff (doubling per attempt), as the API's do.
    retry_backoff_base_secs: float = env(
        "ARCO_RETRY_BACKOFF_BASE_SECS", RETRY_BACKOFF_BASE.total_seconds()
    )

    @property
    def interval(self) -> timedelta:
        """The pause between two sweeps in loop mode."""
        return timedelta(seconds=self.sweep_interval_secs)

    def thresholds(self) -> SweepThresholds:
        """The repair thresholds."""
        return SweepThresholds(
            stuck_ready=timedelta(seconds=self.stuck_ready_secs),
            stuck_dispatched=timedelta(seconds=self.stuck_dispatched_secs),
            heartbeat_grace=timedelta(seconds=self.heartbeat_grace_secs),
            max_redispatches=self.max_redispatches,
            retry_backoff_base=timedelta(seconds=self.retry_backoff_base_secs),
        )

    def problems(self) -> list[str]:
        """The shared problems plus those of the thresholds."""
        found = [
            *super().problems(),
            *positive("ARCO_FLOW_SWEEP_INTERVAL_SECS", self.sweep_interval_secs),
            *positive("ARCO_FLOW_SWEEP_STUCK_READY_SECS", self.stuck_ready_secs),
            *positive("ARCO_FLOW_SWEEP_STUCK_DISPATCHED_SECS", self.stuck_dispatched_secs),
        ]
        for name, value in (
            ("ARCO_FLOW_SWEEP_HEARTBEAT_GRACE_SECS", self.heartbeat_grace_secs),
            ("ARCO_FLOW_MAX_REDISPATCHES", self.max_redispatches),
            ("ARCO_RETRY_BACKOFF_BASE_SECS", self.retry_backoff_base_secs),
        ):
            found += not_negative(name, value)
        return found
