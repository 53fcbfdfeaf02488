"""Prometheus metrics of the dispatcher (design D13)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from arco_dispatch.metrics import ServiceMetrics

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class DispatcherMetrics(ServiceMetrics):
    """Cycles and tasks (shared), enqueues, deliveries and their latencies."""

    def __init__(self) -> None:
        super().__init__("dispatcher")
        self.enqueues = Counter(
            "arco_dispatcher_enqueues_total",
            "Dispatches handed to the provider, by outcome",
            ["outcome"],
            registry=self.registry,
        )
        self.dispatch_latency = Histogram(
            "arco_dispatcher_dispatch_latency_seconds",
            "From a task becoming READY (or its retry falling due) to its enqueue",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.deliveries = Counter(
            "arco_dispatcher_deliveries_total",
            "Push deliveries of the http provider, by outcome",
            ["outcome"],
            registry=self.registry,
        )
        self.tables_analyzed = Counter(
            "arco_dispatcher_tables_analyzed_total",
            "ANALYZEs of busy tables whose planner statistics fell behind (PostgreSQL)",
            ["table"],
            registry=self.registry,
        )
        self.delivery_latency = Histogram(
            "arco_dispatcher_delivery_latency_seconds",
            "From enqueue to the worker's 2xx (http provider)",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        # Read from the pump at each scrape (http provider; 0 without it).
        self.deliveries_in_flight = Gauge(
            "arco_dispatcher_deliveries_in_flight",
            "Push deliveries waiting for the worker's answer",
            registry=self.registry,
        )
        self.attempts_held = Gauge(
            "arco_dispatcher_attempts_held",
            "Attempts the worker accepted that may still hold one of its slots (as last read)",
            registry=self.registry,
        )
        self.delivery_limit = Gauge(
            "arco_dispatcher_delivery_limit",
            "Deliveries allowed outstanding (in flight plus held): the worker capacity learned "
            "from 429s, else ARCO_FLOW_DISPATCH_CONCURRENCY",
            registry=self.registry,
        )
