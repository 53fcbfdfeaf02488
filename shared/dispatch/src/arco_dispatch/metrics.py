"""Prometheus metrics common to both services, on a registry of their own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class ServiceMetrics:
    """Cycles by outcome, cycle duration and tasks by state."""

    def __init__(self, service: str) -> None:
        self.registry = CollectorRegistry()
        self.cycles = Counter(
            f"arco_{service}_cycles_total",
            "Cycles run, by outcome (ok, errors, failed)",
            ["outcome"],
            registry=self.registry,
        )
        self.cycle_seconds = Histogram(
            f"arco_{service}_cycle_seconds", "Duration of one cycle", registry=self.registry
        )
        self.tasks_by_state = Gauge(
            "arco_tasks", "Tasks by stored state (all runs)", ["state"], registry=self.registry
        )
