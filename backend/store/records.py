"""The backend's records and the ``Store`` interface that every store implementation follows.

``backend.store.sqlite.SqliteStore`` implements it on SQLite, ``backend.store.postgres.
PostgresStore`` on PostgreSQL (each method is a single transaction); the contract tests in
tests/backend/store run against both. Times are epoch seconds (float).

Delivery states::

    open       collecting a batch (batchNotify) until it is full or its time window ends
    pending    due at ``next_at``; with attempts > 0 it is in retry
    delivered  a 2xx answer was received
    dead       exhausted, expired, stopped by 410 Gone or by the monitor's deletion
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, get_args

# The states, one definition each: the store writes them, the API validates and shows them,
# the OpenAPI document lists them (backend.api.openapi), the dispatcher and retry produce them.
MonitorStatus = Literal["Running", "Paused", "Failed"]
MONITOR_STATUSES: tuple[MonitorStatus, ...] = get_args(MonitorStatus)
SETTABLE_STATUSES: tuple[MonitorStatus, ...] = ("Running", "Paused")  # Failed: the dispatcher's
DeliveryState = Literal["open", "pending", "delivered", "dead"]
DELIVERY_STATES: tuple[DeliveryState, ...] = get_args(DeliveryState)
AfterAttempt = Literal["pending", "delivered", "dead"]  # a delivery's state after one attempt
AttemptOutcome = Literal["delivered", "failed", "gone", "refused"]
ATTEMPT_OUTCOMES: tuple[AttemptOutcome, ...] = get_args(AttemptOutcome)
ReportedState = Literal["applied", "rejected"]  # what an agent reports for one monitor
REPORTED_STATES: tuple[ReportedState, ...] = get_args(ReportedState)


@dataclass(frozen=True, slots=True)
class MonitorRecord:
    monitor_id: str
    scope: str  # "fleet" | "vehicle"
    owner: str  # the fleet id or the VIN
    definition: dict[str, Any]  # the MonitorParameter JSON as accepted
    status: MonitorStatus
    created_at: float
    updated_at: float


@dataclass(frozen=True, slots=True)
class VehicleRecord:
    """A vehicle the backend knows, and the fleet it belongs to (provisioned, never claimed)."""

    vin: str
    fleet_id: str
    created_at: float


@dataclass(frozen=True, slots=True)
class VehicleMonitorState:
    """What one agent reported on ``…/monitors/{id}/state`` (applied or rejected, with reasons)."""

    vin: str
    monitor_id: str
    state: ReportedState
    reasons: list[dict[str, str]]
    definition_hash: str
    at: str
    # what the applied monitor costs on the vehicle's OBD-II buses (kept in memory, not stored)
    obd_requests_per_minute: float | None = None


@dataclass(frozen=True, slots=True)
class Route:
    """Where and how one event of a monitor is delivered (see ``backend.delivery.routing``)."""

    monitor_id: str
    callback_name: str
    url: str
    endpoint: str  # scheme://host:port, the unit of the per-endpoint concurrency limit
    headers: tuple[tuple[str, str], ...]
    body_attributes: tuple[tuple[str, str], ...]
    batch_key: str
    batch_size: int  # 1 = no batching
    batch_window: float
    policy: str
    retry_number: int
    retry_delay: float
    fleet_id: str = ""  # the vehicle's fleet in the backend's records: whose secret signs it


def order_key(vin: str, route: Route) -> str:
    """Whose events a delivery carries, for in-order delivery: the vehicle, or the batch key of
    a batch (one batch may hold several vehicles' events; its batches go out one by one)."""
    return route.batch_key if route.batch_size > 1 else vin


@dataclass(frozen=True, slots=True)
class IncomingEvent:
    """A validated event ready to commit: its webhook form and where it goes."""

    event_id: str
    vin: str
    fleet_id: str | None
    monitor_id: str
    event_date: float
    webhook_json: str  # the MonitorEvent object of the webhook body, as JSON text
    routes: tuple[Route, ...]
    skip_reason: str | None = None  # why it is stored without a delivery (counted)


@dataclass(frozen=True, slots=True)
class ClaimedDelivery:
    """A delivery leased by one dispatcher for one attempt."""

    delivery_id: str
    monitor_id: str
    callback_name: str
    url: str
    endpoint: str
    headers: tuple[tuple[str, str], ...]
    body_attributes: tuple[tuple[str, str], ...]
    events: tuple[str, ...]  # MonitorEvent JSON texts, in arrival order
    attempts: int  # attempts in this round (a re-send starts a new round)
    tries: int  # attempts ever made, for numbering the history
    held_since: float  # receipt of its oldest event (or its re-send): the retry cap's origin
    received_at: float
    policy: str
    retry_number: int
    retry_delay: float
    fleet_id: str = ""


@dataclass(frozen=True, slots=True)
class Attempt:
    delivery_id: str
    number: int
    started_at: float
    duration: float
    outcome: AttemptOutcome
    status_code: int | None = None
    error: str = ""


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """What happens to a delivery after one attempt; ``attempt=None`` gives the lease back
    unsent (its monitor went into retry while it waited)."""

    delivery_id: str
    attempt: Attempt | None
    monitor_id: str
    state: AfterAttempt
    next_at: float | None = None
    reason: str = ""
    gone: bool = False  # 410: stop the monitor's deliveries and mark it Failed


@dataclass(frozen=True, slots=True)
class DeliveryView:
    """A delivery as the API shows it, with every attempt."""

    delivery_id: str
    monitor_id: str
    state: DeliveryState
    url: str
    event_ids: list[str]
    attempts: int
    created_at: float
    next_at: float | None
    delivered_at: float | None
    reason: str
    history: list[Attempt] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An event as received and stored, for reading back (``GET …/events``)."""

    event_id: str
    vin: str
    fleet_id: str | None
    monitor_id: str
    event_date: float
    received_at: float
    webhook_json: str  # the MonitorEvent object, as the webhook carries it
    skip_reason: str | None


@dataclass(frozen=True, slots=True)
class EventQuery:
    """Which stored events to read: every filter given must match (None: any). ``fleets`` are
    the fleets the reader reaches (None: every fleet, an admin); ``since``/``until`` bound the
    vehicle's ``eventDate`` (inclusive)."""

    vin: str | None = None
    monitor_id: str | None = None
    fleets: tuple[str, ...] | None = None
    since: float | None = None
    until: float | None = None


@dataclass(frozen=True, slots=True)
class VehicleStatus:
    """The last retained ``…/vehicles/{vin}/status`` a vehicle published, as the API shows it."""

    vin: str
    online: bool
    at: str  # the agent's own timestamp
    version: str
    outbox_depth: int
    clock: str
    received_at: float


@dataclass(frozen=True, slots=True)
class IngestOutcome:
    stored: int = 0
    duplicates: int = 0


class Store(Protocol):
    # monitors (API)
    def create_monitor(self, record: MonitorRecord) -> None: ...
    def get_monitor(self, monitor_id: str) -> MonitorRecord | None: ...
    def routing_version(self) -> int: ...
    def live_monitors(self) -> list[MonitorRecord]: ...
    def list_monitors(
        self, scope: str, owner: str, offset: int, limit: int
    ) -> tuple[list[MonitorRecord], int]: ...
    def replace_monitor(self, monitor_id: str, definition: dict[str, Any], now: float) -> None: ...
    def set_monitor_status(self, monitor_id: str, status: str, now: float) -> None: ...
    def delete_monitor(self, monitor_id: str, now: float) -> None: ...
    def set_vehicle_state(self, state: VehicleMonitorState) -> None: ...
    def clear_vehicle_state(self, monitor_id: str, vin: str) -> None: ...
    def vehicle_states(self, monitor_id: str) -> list[VehicleMonitorState]: ...
    def monitor_owner(self, monitor_id: str) -> tuple[str, str] | None: ...

    # vehicles and their fleets (API, ingest)
    def put_vehicle(self, vin: str, fleet_id: str, now: float) -> bool: ...
    def vehicle_fleet(self, vin: str) -> str | None: ...
    def get_vehicle(self, vin: str) -> VehicleRecord | None: ...
    def list_vehicles(
        self, fleet_id: str, offset: int, limit: int
    ) -> tuple[list[VehicleRecord], int]: ...
    def delete_vehicle(self, fleet_id: str, vin: str) -> bool: ...

    # ingest
    def commit_events(self, events: Sequence[IncomingEvent], now: float) -> list[bool]: ...

    # dispatcher
    def claim_due(
        self,
        now: float,
        limit: int,
        in_flight: Mapping[str, int],
        per_endpoint: int,
        lease_until: float,
        *,
        in_order: bool = False,
    ) -> list[ClaimedDelivery]: ...
    def record_results(self, results: Sequence[AttemptResult], now: float) -> None: ...
    def expire(self, now: float, max_age: float) -> int: ...
    def depth(self) -> dict[str, int]: ...

    # history and dead letters (API)
    def deliveries(
        self, monitor_id: str, state: str | None, offset: int, limit: int
    ) -> tuple[list[DeliveryView], int]: ...
    def get_delivery(self, delivery_id: str) -> DeliveryView | None: ...
    def resend(self, delivery_id: str, now: float, max_age: float) -> bool: ...

    # delivery at scale (issue 15): circuits, retention, dead letters in bulk
    def expire_endpoints(self, now: float, max_age: float, endpoints: Sequence[str]) -> int: ...
    def purge(self, delivered_before: float, dead_before: float, limit: int) -> dict[str, int]: ...
    def resend_dead(self, monitor_id: str, now: float, limit: int) -> tuple[int, int]: ...

    # reading what happened (API)
    def events_page(
        self, query: EventQuery, offset: int, limit: int
    ) -> tuple[list[StoredEvent], int]: ...
    def set_vehicle_status(self, status: VehicleStatus) -> None: ...
    def vehicle_status(self, vin: str) -> VehicleStatus | None: ...

    # plumbing
    def schema_version(self) -> int: ...
    def ping(self) -> None: ...  # a round trip to the database; StoreError when it is away
    def close(self) -> None: ...
