"""Ingest: MQTT events -> validated, routed, committed to the store -> acknowledged.

``EventIntake`` is the core: it turns (topic, payload) into an ``IncomingEvent`` through
``backend.ingest.guard.admit_event`` or raises ``IngestError`` with the counter's name (whatever the
payload). ``MqttIngest`` is the paho edge: an MQTT 5 shared subscription with manual
acknowledgement. paho's thread drops what is too large or over the vehicle's rate (acked and
counted) and enqueues the rest in a bounded queue; when the queue is full it waits (back-pressure:
paho stops reading the socket, the broker holds QoS 1 and applies its own limits to QoS 0). One
worker thread takes what has arrived, commits it in one transaction (``synchronous=FULL``) and only
then acks every message of the group, so a crash between receipt and commit loses nothing: the
broker redelivers, and the event id de-duplicates. A refused message is counted, logged (cut to
``guard.LOG_CHARS``), acknowledged and dropped: a poison message is never redelivered, and the
worker goes on. Refused payloads are not parked in a dead-letter table: they are attacker-chosen
bytes, and a table of them would be one more unbounded store to fill; the counter and the log
line say what arrived and from whom. If the worker dies anyway, ``alive()`` turns false and
``/healthz`` fails.

``before_commit`` (injected, nothing by default) is called by the worker with each group's size
just before it commits: a test that composes the backend with a hook that blocks can SIGKILL the
process exactly in the window between receipt and commit.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

import paho.mqtt.client as mqtt

from agent.paho_compat import stop_network_loop
from agent.wire import Topics, WireError
from backend.config import LimitsConfig, MqttConfig
from backend.delivery.routing import DeliverySpec, route, webhook_event
from backend.errors import IngestError, StoreError, UnmatchedEvent
from backend.ingest.guard import admit_event, truncated
from backend.ingest.quota import SkipLog, VehicleRate
from backend.metrics import Metrics
from backend.monitors import delivery_spec, validate
from backend.mqtt_clients import BrokerLink, connect_properties, mqtt_client, network_alive
from backend.store.records import IncomingEvent, MonitorRecord, Route, Store

log = logging.getLogger(__name__)
DEFAULT_LIMITS = LimitsConfig()
MAX_UNMATCHED_LOGGED = 10_000


@dataclass(frozen=True, slots=True)
class Envelope:
    """An MQTT message as ingest sees it (paho's type stops at the adapter)."""

    topic: str
    payload: bytes
    mid: int
    qos: int


class EventIntake:
    """Validates and routes events. What routing reads from the store (monitors, parsed
    delivery specs, vehicles' fleets) is cached while the store's ``routing_version`` stays the
    same; any change to a monitor or a vehicle, from any process, bumps it and empties the
    cache. ``prepare`` checks the version on each call; inside ``one_version()`` (a commit
    group) it is checked once on entry. The cache holds at most ``max_cached`` entries a kind
    (emptied when full: unknown ids sent on purpose cannot grow it)."""

    def __init__(
        self,
        store: Store,
        topics: Topics,
        limits: LimitsConfig = DEFAULT_LIMITS,
        *,
        max_cached: int = 10_000,
    ) -> None:
        self.store = store
        self.topics = topics
        self.limits = limits
        self.max_cached = max_cached
        self._version: int | None = None
        self._pinned = False
        self._monitors: dict[str, MonitorRecord | None] = {}
        self._fleets: dict[str, str | None] = {}
        self._specs: dict[str, DeliverySpec | None] = {}
        self._routes: dict[tuple[str, str, str | None], Route] = {}

    def _sync(self) -> None:
        if self._pinned:
            return
        version = self.store.routing_version()
        if version != self._version:
            self._monitors.clear()
            self._fleets.clear()
            self._specs.clear()
            self._routes.clear()
            self._version = version

    @contextlib.contextmanager
    def one_version(self) -> Iterator[None]:
        """Prepare several events against one check of the store's routing version."""
        self._sync()
        self._pinned = True
        try:
            yield
        finally:
            self._pinned = False

    def _monitor(self, monitor_id: str) -> MonitorRecord | None:
        if monitor_id not in self._monitors:
            if len(self._monitors) >= self.max_cached:
                self._monitors.clear()
                self._specs.clear()
            self._monitors[monitor_id] = self.store.get_monitor(monitor_id)
        return self._monitors[monitor_id]

    def _route(self, spec: DeliverySpec, monitor_id: str, vin: str, fleet_id: str | None) -> Route:
        """``routing.route`` (pure, a fifth of ingest's CPU in the batched benchmark) once per
        monitor, vehicle and fleet."""
        key = (monitor_id, vin, fleet_id)
        found = self._routes.get(key)
        if found is None:
            if len(self._routes) >= self.max_cached:
                self._routes.clear()
            found = route(spec, monitor_id=monitor_id, vin=vin, fleet_id=fleet_id)
            self._routes[key] = found
        return found

    def _spec(self, record: MonitorRecord) -> DeliverySpec | None:
        if record.monitor_id not in self._specs:
            checked = validate(record.definition, record.monitor_id, allow_insecure_http=True)
            spec = None if checked.monitor is None else delivery_spec(checked.monitor)
            self._specs[record.monitor_id] = spec
        return self._specs[record.monitor_id]

    def prepare(self, topic: str, payload: bytes) -> IncomingEvent:
        """The event to commit; ``IngestError`` (only) when it must be dropped. Events of a
        monitor the store does not know are dropped too: stored, they would only fill the disk."""
        event = admit_event(self.topics, topic, payload, self.limits)
        self._sync()
        event = replace(event, fleet_id=self._fleet_of(event.vin, event.fleet_id))
        record = self._monitor(event.monitor_id)
        if record is None:
            raise UnmatchedEvent(truncated(event.monitor_id, 80), event.vin)
        skip, spec = self._skip_reason(record, event.vin, event.fleet_id)
        routes: tuple[Route, ...] = ()
        if skip is None and spec is not None:
            routes = (self._route(spec, event.monitor_id, event.vin, event.fleet_id),)
        body = json.dumps(webhook_event(event), separators=(",", ":"))
        return IncomingEvent(
            event_id=event.event_id,
            vin=event.vin,
            fleet_id=event.fleet_id,
            monitor_id=event.monitor_id,
            event_date=event.event_date.timestamp(),
            webhook_json=body,
            routes=routes,
            skip_reason=skip,
        )

    def _fleet_of(self, vin: str, claimed: str | None) -> str:
        """The vehicle's fleet from the backend's records; the event's claim only has to agree."""
        if vin not in self._fleets:
            if len(self._fleets) >= self.max_cached:
                self._fleets.clear()
            self._fleets[vin] = self.store.vehicle_fleet(vin)
        fleet = self._fleets[vin]
        if fleet is None:
            raise IngestError("unknown_vehicle", f"vehicle {vin!r} is not provisioned in a fleet")
        if claimed is not None and claimed != fleet:
            raise IngestError(
                "fleet_mismatch", f"vehicle {vin!r} of fleet {fleet!r} claims fleet {claimed!r}"
            )
        return fleet

    def _skip_reason(
        self, record: MonitorRecord, vin: str, fleet_id: str | None
    ) -> tuple[str | None, DeliverySpec | None]:
        if record.scope == "vehicle" and record.owner != vin:
            return "wrong_vehicle", None
        if record.scope == "fleet" and record.owner != fleet_id:
            return "wrong_fleet", None
        if record.status != "Running":
            return f"monitor_{record.status.lower()}", None
        spec = self._spec(record)
        return (None, spec) if spec is not None else ("monitor_invalid", None)


class MqttIngest:
    """The paho edge of ingest: shared subscription, group commit, then manual acks."""

    def __init__(
        self,
        config: MqttConfig,
        topics: Topics,
        intake: EventIntake,
        store: Store,
        *,
        metrics: Metrics,
        on_committed: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.time,
        max_group: int = 500,
        before_commit: Callable[[int], None] | None = None,
    ) -> None:
        self.config = config
        self.topics = topics
        self.intake = intake
        self.limits = intake.limits
        self.store = store
        self.metrics = metrics
        self.on_committed = on_committed
        self.clock = clock
        self.max_group = max_group
        # An empty share group subscribes plainly. mosquitto 2.0 does not restore a *shared*
        # subscription after its own restart (events published before the backend reconnects
        # reach nobody); a plain one is kept in the persistent session. One ingest process only.
        events = topics.all_events()
        group = config.share_group
        self.subscription = f"$share/{group}/{events}" if group else events
        self._inbox: queue.Queue[Envelope | None] = queue.Queue(self.limits.ingest_queue)
        self._rate = VehicleRate(self.limits.vehicle_rate, self.limits.vehicle_burst)
        self._skip_log = SkipLog(log)
        self._unmatched_seen: set[str] = set()  # monitors whose events were said unmatched
        self._client = mqtt_client(config, config.client_id, manual_ack=True)
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        self._client.on_subscribe = self._on_subscribe
        self._worker = threading.Thread(target=self._work, name="ingest-commit", daemon=True)
        self._before_commit = before_commit
        self._stopping = threading.Event()
        self.link = BrokerLink("ingest", config)
        self.link.watch(self._client)
        self.connected = self.link.ready  # set while subscribed: messages published now reach us

    def alive(self) -> bool:
        """False once the commit worker or paho's network thread has died (``/healthz`` fails)."""
        if self._stopping.is_set():
            return True
        return self._worker.is_alive() and network_alive(self._client)

    # paho thread: refuse what is cheap to refuse, enqueue the rest, nothing else
    def _on_connect(
        self, client: mqtt.Client, _u: object, _f: object, rc: object, _p: object
    ) -> None:
        if getattr(rc, "is_failure", False):
            self.link.down(f"connection refused: {rc}")
            return
        client.subscribe(self.subscription, qos=1)

    def _on_subscribe(
        self, _c: mqtt.Client, _u: object, _mid: int, codes: object, _p: object
    ) -> None:
        if any(getattr(code, "is_failure", False) for code in codes):  # type: ignore[attr-defined]
            self.link.down(f"subscription to {self.subscription} refused: {codes}")
            return
        self.link.up()
        log.info("ingest subscribed to %s", self.subscription)

    def _on_message(self, _c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        envelope = Envelope(message.topic, bytes(message.payload), message.mid, message.qos)
        reason = self._refusal(envelope)
        if reason is not None:
            self._drop(envelope, IngestError(reason, f"{len(envelope.payload)} bytes"))
            self._client.ack(envelope.mid, envelope.qos)
            return
        while not self._stopping.is_set():
            try:  # full: wait for the worker (back-pressure), but never forever
                self._inbox.put(envelope, timeout=1.0)
                return
            except queue.Full:
                if not self._worker.is_alive():
                    break
        self._drop(envelope, IngestError("worker_down", "ingest is stopping or its worker died"))

    def _refusal(self, envelope: Envelope) -> str | None:
        """Why a message is dropped before it is queued: too large, or over its vehicle's rate."""
        if len(envelope.payload) > self.limits.max_event_bytes:
            return "too_large"
        try:
            vin = self.topics.vin_of(envelope.topic)
        except WireError:
            return "malformed"
        return None if self._rate.allow(vin, self.clock()) else "rate_limited"

    def _drop(self, envelope: Envelope, exc: IngestError) -> None:
        self.metrics.skipped.labels(reason=exc.reason).inc()
        if isinstance(exc, UnmatchedEvent):
            self._unmatched(exc)
            return
        self._skip_log.warn(
            exc.reason,
            time.monotonic(),
            "dropped message on %s (%s): %s",
            truncated(envelope.topic, 120),
            exc.reason,
            truncated(str(exc)),
            exc_info=exc if exc.reason == "unexpected" else None,  # a gap in the guard
        )

    def _unmatched(self, exc: UnmatchedEvent) -> None:
        """Log an unknown monitor once (per process; the set is bounded): a vehicle's local
        monitor fires often, and every event is counted anyway."""
        if exc.monitor_id in self._unmatched_seen:
            return
        if len(self._unmatched_seen) >= MAX_UNMATCHED_LOGGED:
            self._unmatched_seen.clear()
        self._unmatched_seen.add(exc.monitor_id)
        log.info(
            "events of monitor %s (first from %s) match no monitor of the backend: a local "
            "monitor of the vehicle? counted as unknown_monitor, not delivered, logged once",
            exc.monitor_id,
            exc.vin,
        )

    def start(self) -> None:
        self._worker.start()
        self._client.connect_async(
            self.config.host,
            self.config.port,
            keepalive=self.config.keepalive,
            clean_start=False,
            properties=connect_properties(self.config.session_expiry),
        )
        self._client.loop_start()

    def stop(self) -> None:
        self._stopping.set()
        self._client.disconnect()
        stop_network_loop(self._client)
        with contextlib.suppress(queue.Full):
            self._inbox.put(None, timeout=10)
        self._worker.join(timeout=10)

    # worker thread
    def _take(self) -> list[Envelope] | None:
        first = self._inbox.get()
        if first is None:
            return None
        group = [first]
        while len(group) < self.max_group:
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                break
            if item is None:
                self._inbox.put(None)
                break
            group.append(item)
        return group

    def _work(self) -> None:
        while (group := self._take()) is not None:
            if self._before_commit is not None:
                self._before_commit(len(group))
            while True:
                try:
                    self._commit(group)
                    break
                except StoreError:
                    log.exception("store write failed; retrying in 1 s (messages not acked)")
                    time.sleep(1.0)

    def _commit(self, group: list[Envelope]) -> None:
        ready: list[IncomingEvent] = []
        with self.intake.one_version():
            for envelope in group:
                try:
                    ready.append(self.intake.prepare(envelope.topic, envelope.payload))
                except IngestError as exc:
                    self._drop(envelope, exc)
                except StoreError:
                    raise  # the store is away: retried whole, nothing acked
                except Exception as exc:  # past the guard (routing, a stored monitor): drop
                    unexpected = IngestError("unexpected", f"{type(exc).__name__}: {exc}")
                    unexpected.__cause__ = exc
                    self._drop(envelope, unexpected)
        stored = self._store(ready)
        for event, new in stored:
            if not new:
                self.metrics.duplicates.inc()
                continue
            self.metrics.events.inc()
            if event.skip_reason is not None:
                self.metrics.skipped.labels(reason=event.skip_reason).inc()
        for envelope in group:  # only after the commit: a crash before here loses nothing
            self._client.ack(envelope.mid, envelope.qos)
        if any(new for _, new in stored):
            self.on_committed()

    def _store(self, ready: list[IncomingEvent]) -> list[tuple[IncomingEvent, bool]]:
        """Commit the group: (event, newly stored). If the store refuses it for a reason other
        than ``StoreError`` (a value the guard let through that SQLite cannot take), commit one
        by one and drop (count) what it refuses, so one event never blocks the others."""
        if not ready:
            return []
        try:
            fresh = self.store.commit_events(ready, self.clock())
            return list(zip(ready, fresh, strict=True))
        except StoreError:
            raise
        except Exception:
            log.exception("the store refused %d events at once; committing one by one", len(ready))
        stored = []
        for event in ready:
            try:
                (new,) = self.store.commit_events([event], self.clock())
            except StoreError:
                raise
            except Exception as exc:
                self.metrics.skipped.labels(reason="store_refused").inc()
                log.warning("store refused event %s: %s", truncated(event.event_id), exc)
                continue
            stored.append((event, new))
        return stored
