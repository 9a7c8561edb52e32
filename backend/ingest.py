"""Ingest: MQTT events -> validated, routed, committed to the store -> acknowledged.

``EventIntake`` is the core: it turns (topic, payload) into an ``IncomingEvent`` or raises
``IngestError`` with the counter's name. ``MqttIngest`` is the paho edge: an MQTT 5 shared
subscription with manual acknowledgement. paho's thread only enqueues; one worker thread takes
what has arrived, commits it in one transaction (``synchronous=FULL``) and only then acks every
message of the group, so a crash between receipt and commit loses nothing: the broker
redelivers, and the event id de-duplicates.

Test hook: with ``EDGEMON_TEST_HOLD_BEFORE_COMMIT=<file>`` set, the worker writes that file after
receiving a message and blocks before committing, so a test can SIGKILL the process exactly in
the window between receipt and commit.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import paho.mqtt.client as mqtt

from agent.wire import Topics, WireError, event_from_json
from backend.broker import connect_properties, mqtt_client
from backend.config import MqttConfig
from backend.errors import IngestError, StoreError
from backend.metrics import Metrics
from backend.monitors import delivery_spec, validate
from backend.records import IncomingEvent, MonitorRecord, Route, Store
from backend.routing import DeliverySpec, route, webhook_event

log = logging.getLogger(__name__)
HOLD_ENV = "EDGEMON_TEST_HOLD_BEFORE_COMMIT"


@dataclass(frozen=True, slots=True)
class Envelope:
    """An MQTT message as ingest sees it (paho's type stops at the adapter)."""

    topic: str
    payload: bytes
    mid: int
    qos: int


class EventIntake:
    """Validates and routes events. Parsed monitors are cached by (id, updated_at)."""

    def __init__(self, store: Store, topics: Topics) -> None:
        self.store = store
        self.topics = topics
        self._specs: dict[str, tuple[float, DeliverySpec | None]] = {}

    def _spec(self, record: MonitorRecord) -> DeliverySpec | None:
        cached = self._specs.get(record.monitor_id)
        if cached is not None and cached[0] == record.updated_at:
            return cached[1]
        checked = validate(record.definition, record.monitor_id, allow_insecure_http=True)
        spec = None if checked.monitor is None else delivery_spec(checked.monitor)
        self._specs[record.monitor_id] = (record.updated_at, spec)
        return spec

    def prepare(self, topic: str, payload: bytes) -> IncomingEvent:
        try:
            event = event_from_json(payload)
            topic_vin = self.topics.vin_of(topic)
        except WireError as exc:
            raise IngestError("malformed", f"malformed event on {topic}: {exc}") from exc
        if event.vin != topic_vin:
            raise IngestError(
                "vin_mismatch", f"event VIN {event.vin!r} differs from topic VIN {topic_vin!r}"
            )
        event = replace(event, fleet_id=self._fleet_of(event.vin, event.fleet_id))
        record = self.store.get_monitor(event.monitor_id)
        skip, spec = self._skip_reason(record, event.vin, event.fleet_id)
        routes: tuple[Route, ...] = ()
        if skip is None and spec is not None:
            routes = (
                route(spec, monitor_id=event.monitor_id, vin=event.vin, fleet_id=event.fleet_id),
            )
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
        fleet = self.store.vehicle_fleet(vin)
        if fleet is None:
            raise IngestError("unknown_vehicle", f"vehicle {vin!r} is not provisioned in a fleet")
        if claimed is not None and claimed != fleet:
            raise IngestError(
                "fleet_mismatch", f"vehicle {vin!r} of fleet {fleet!r} claims fleet {claimed!r}"
            )
        return fleet

    def _skip_reason(
        self, record: MonitorRecord | None, vin: str, fleet_id: str | None
    ) -> tuple[str | None, DeliverySpec | None]:
        if record is None:
            return "unknown_monitor", None
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
    ) -> None:
        self.config = config
        self.topics = topics
        self.intake = intake
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
        self._inbox: queue.Queue[Envelope | None] = queue.Queue()
        self._client = mqtt_client(config, config.client_id, manual_ack=True)
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        self._client.on_subscribe = self._on_subscribe
        self._worker = threading.Thread(target=self._work, name="ingest-commit", daemon=True)
        self._hold = os.environ.get(HOLD_ENV)
        self.connected = threading.Event()

    # paho thread: convert and enqueue, nothing else
    def _on_connect(
        self, client: mqtt.Client, _u: object, _f: object, rc: object, _p: object
    ) -> None:
        if getattr(rc, "is_failure", False):
            log.error("MQTT connection refused: %s", rc)
            return
        client.subscribe(self.subscription, qos=1)

    def _on_subscribe(
        self, _c: mqtt.Client, _u: object, _mid: int, codes: object, _p: object
    ) -> None:
        if any(getattr(code, "is_failure", False) for code in codes):  # type: ignore[attr-defined]
            log.error("subscription to %s refused: %s", self.subscription, codes)
            return
        self.connected.set()  # "connected" = subscribed: messages published now reach us
        log.info("ingest subscribed to %s", self.subscription)

    def _on_message(self, _c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        self._inbox.put(Envelope(message.topic, bytes(message.payload), message.mid, message.qos))

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
        self._client.disconnect()
        self._client.loop_stop()
        self._inbox.put(None)
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
            if self._hold:
                Path(self._hold).write_text(f"{len(group)} received\n")
                threading.Event().wait()  # test hook: block here until SIGKILL
            while True:
                try:
                    self._commit(group)
                    break
                except StoreError:
                    log.exception("store write failed; retrying in 1 s (messages not acked)")
                    time.sleep(1.0)

    def _commit(self, group: list[Envelope]) -> None:
        ready: list[IncomingEvent] = []
        for envelope in group:
            try:
                ready.append(self.intake.prepare(envelope.topic, envelope.payload))
            except IngestError as exc:
                self.metrics.skipped.labels(reason=exc.reason).inc()
                log.warning("skipped message on %s: %s", envelope.topic, exc)
        fresh = self.store.commit_events(ready, self.clock()) if ready else []
        for event, new in zip(ready, fresh, strict=True):
            if not new:
                self.metrics.duplicates.inc()
                continue
            self.metrics.events.inc()
            if event.skip_reason is not None:
                self.metrics.skipped.labels(reason=event.skip_reason).inc()
        for envelope in group:  # only after the commit: a crash before here loses nothing
            self._client.ack(envelope.mid, envelope.qos)
        if any(fresh):
            self.on_committed()
