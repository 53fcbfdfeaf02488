"""Dispatcher configuration: the shared settings plus the loop's cadence."""

from __future__ import annotations

from datetime import timedelta

from arco_dispatch.settings import FlowSettings, env, not_negative, positive


class DispatcherSettings(FlowSettings):
    """The shared settings plus loop mode and its cadence; port 8081."""

    http_port: int = env("ARCO_HTTP_PORT", 8081)
    # Loop mode: cycles run continuously; POST /run stays available either way.
    dispatch_loop: bool = env("ARCO_FLOW_DISPATCH_LOOP", True)
    # Longest pause between cycles; on PostgreSQL a NOTIFY ends it early.
    dispatch_interval_ms: int = env("ARCO_FLOW_DISPATCH_INTERVAL_MS", 1000)
    # SQLite has no NOTIFY: the loop polls this often instead (when shorter than the interval).
    dispatch_poll_ms: int = env("ARCO_FLOW_DISPATCH_POLL_MS", 100)
    # PostgreSQL: how often to look for busy tables whose planner statistics fell behind
    # (arco_orchestration.planner_statistics); 0 leaves them to autovacuum alone.
    statistics_interval_secs: float = env("ARCO_FLOW_STATISTICS_INTERVAL_SECS", 5)

    def pause(self, *, notifications: bool) -> timedelta:
        """The loop's pause between cycles: the interval when NOTIFY can end it early,
        else the shorter of the interval and the poll."""
        interval = self.dispatch_interval_ms
        if not notifications:
            interval = min(interval, self.dispatch_poll_ms)
        return timedelta(milliseconds=interval)

    def problems(self) -> list[str]:
        """The shared problems plus those of the cadence."""
        return [
            *super().problems(),
            *positive("ARCO_FLOW_DISPATCH_INTERVAL_MS", self.dispatch_interval_ms),
            *positive("ARCO_FLOW_DISPATCH_POLL_MS", self.dispatch_poll_ms),
            *not_negative("ARCO_FLOW_STATISTICS_INTERVAL_SECS", self.statistics_interval_secs),
        ]
