"""Prometheus metrics of one backend process, on its own registry (tests build several)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.events = Counter(
            "edgemon_events_ingested", "Events committed to the store", registry=r
        )
        self.duplicates = Counter(
            "edgemon_events_duplicate", "Events already stored (QoS 1 repeats)", registry=r
        )
        self.skipped = Counter(
            "edgemon_ingest_skipped",
            "MQTT messages acknowledged without an event, or events stored without a delivery",
            ["reason"],
            registry=r,
        )
        self.attempts = Counter(
            "edgemon_delivery_attempts", "Webhook attempts by outcome", ["outcome"], registry=r
        )
        self.deliveries = Counter(
            "edgemon_deliveries",
            "Deliveries that reached a final state (delivered, dead)",
            ["outcome"],
            registry=r,
        )
        self.queue = Gauge(
            "edgemon_delivery_queue", "Deliveries not yet final, by state", ["state"], registry=r
        )
        self.latency = Histogram(
            "edgemon_ingest_to_delivery_seconds",
            "From the event's receipt to its delivery's 2xx answer",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )

    def set_depth(self, depth: dict[str, int]) -> None:
        for state, value in depth.items():
            self.queue.labels(state=state).set(value)

    def render(self) -> bytes:
        return generate_latest(self.registry)
