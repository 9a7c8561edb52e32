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
        self.circuit = Gauge(
            "edgemon_endpoint_circuit",
            "1 for each endpoint whose circuit breaker is not closed, by state",
            ["endpoint", "state"],
            registry=r,
        )
        self.circuits = Gauge(
            "edgemon_endpoint_circuits",
            "Endpoints whose circuit breaker is open or half_open (probing)",
            ["state"],
            registry=r,
        )
        self.circuit_changes = Counter(
            "edgemon_endpoint_circuit_changes",
            "Circuit breaker state changes, by the new state",
            ["state"],
            registry=r,
        )
        self.circuit_held = Counter(
            "edgemon_deliveries_held_by_circuit",
            "Leased deliveries given back unsent because their endpoint's circuit opened",
            registry=r,
        )
        self.purged = Counter(
            "edgemon_retention_purged",
            "Rows deleted by the retention purge, by table",
            ["table"],
            registry=r,
        )
        self.latency = Histogram(
            "edgemon_ingest_to_delivery_seconds",
            "From the event's receipt to its delivery's 2xx answer",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )

        self.capability_warnings = Counter(
            "edgemon_capability_warnings",
            "Vehicle monitors found needing data their vehicle's capability manifest lacks",
            registry=r,
        )
        self._warnings_seen = 0

    def sync_capability_warnings(self, total: int) -> None:
        """The monitor channel counts warnings; the counter follows it (never backwards)."""
        if total > self._warnings_seen:
            self.capability_warnings.inc(total - self._warnings_seen)
            self._warnings_seen = total

    def set_circuits(self, unavailable: dict[str, str]) -> None:
        """One series per endpoint whose circuit is not closed (closed ones are dropped, so
        the label set stays as small as the number of failing endpoints)."""
        self.circuit.clear()
        counts = dict.fromkeys(("open", "half_open"), 0)
        for endpoint, state in unavailable.items():
            self.circuit.labels(endpoint=endpoint, state=state).set(1)
            counts[state] = counts.get(state, 0) + 1
        for state, count in counts.items():
            self.circuits.labels(state=state).set(count)

    def set_depth(self, depth: dict[str, int]) -> None:
        for state, value in depth.items():
            self.queue.labels(state=state).set(value)

    def render(self) -> bytes:
        return generate_latest(self.registry)
