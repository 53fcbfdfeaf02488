"""Prometheus metrics of the API, on a registry of its own (one per app instance)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Histogram(
            "arco_api_request_seconds",
            "API request latency by route and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.callbacks = Counter(
            "arco_api_callbacks_total",
            "Worker callbacks by phase and HTTP status",
            ["phase", "status"],
            registry=self.registry,
        )
        self.clock_skew = Counter(
            "arco_api_worker_clock_skew_total",
            "Callbacks whose worker timestamp is more than 5 minutes off the server clock",
            ["phase"],
            registry=self.registry,
        )
        self.tasks_by_state = Gauge(
            "arco_tasks",
            "Tasks by stored state (all runs)",
            ["state"],
            registry=self.registry,
        )
        self.runs_triggered = Counter(
            "arco_api_runs_triggered_total", "Runs created", registry=self.registry
        )
