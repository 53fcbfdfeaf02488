"""Prometheus metrics of the sweeper (design D13)."""

from __future__ import annotations

from prometheus_client import Counter

from arco_dispatch.metrics import ServiceMetrics


class SweeperMetrics(ServiceMetrics):
    """Cycles and tasks (shared) and repairs by action and rule."""

    def __init__(self) -> None:
        super().__init__("sweeper")
        self.repairs = Counter(
            "arco_sweeper_repairs_total",
            "Repairs applied, by action and rule",
            ["action", "rule"],
            registry=self.registry,
        )
