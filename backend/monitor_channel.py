"""The backend's side of the retained monitor topics.

``MonitorChannel`` is the interface the API uses: publish (or clear) a monitor's retained
definition for a vehicle or a fleet. ``MqttMonitorChannel`` implements it with paho; it also
listens to the agents' retained ``…/monitors/{id}/state`` reports and writes them to the store,
and on every (re)connection republishes every live monitor, so a definition stored while the
broker was away still reaches the agents. ``MemoryMonitorChannel`` is the in-memory twin.

Capability manifests (``…/vehicles/{vin}/capabilities``, retained, from agents that poll OBD-II)
say which data names a vehicle can serve; a vehicle monitor naming data outside its vehicle's
manifest is logged as a warning (``capability_warnings``) instead of silently never firing.

State reports are vehicle-written (retained: they come back at every start), so each one passes
``backend.ingest.guard.admit_state``; a bad one, or one the store cannot take, is counted through
``on_bad_state`` and logged, and paho's network thread goes on (it also carries the monitors
the API publishes). ``alive()`` is false once that thread has died anyway.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, get_args

import paho.mqtt.client as mqtt

from agent.paho_compat import stop_network_loop
from agent.wire import Topics, WireError, capability_names
from backend.config import LimitsConfig, MqttConfig
from backend.errors import IngestError
from backend.ingest.guard import admit_state, admit_status, truncated
from backend.ingest.quota import SkipLog
from backend.mqtt_clients import BrokerLink, connect_properties, mqtt_client, network_alive
from backend.store.records import MonitorRecord, Store, VehicleMonitorState, VehicleStatus

log = logging.getLogger(__name__)


Delivery = Literal["pending", "pushed"]  # whether a monitor's definition is on the broker
DELIVERIES: tuple[Delivery, ...] = get_args(Delivery)


class MonitorChannel(Protocol):
    capability_warnings: int

    def publish(self, record: MonitorRecord) -> None: ...

    def clear(self, record: MonitorRecord) -> None: ...

    def delivery(self, monitor_id: str) -> Delivery: ...

    def obd_cost(self, monitor_id: str, vin: str) -> float | None: ...

    def missing_data(self, record: MonitorRecord, vin: str) -> list[str] | None: ...


class VehicleNotes:
    """What the vehicles said beside their monitor states, kept in memory (both are retained on
    the broker, so they come back at every start): each vehicle's capability manifest, and each
    applied monitor's OBD-II cost on each vehicle."""

    def __init__(self) -> None:
        self.capabilities: dict[str, frozenset[str]] = {}  # VIN -> data names it can serve
        self.costs: dict[tuple[str, str], float] = {}  # (monitor id, VIN) -> requests/min
        self.capability_warnings = 0  # monitors found needing data their vehicle cannot give

    def note_state(self, monitor_id: str, vin: str, state: VehicleMonitorState | None) -> None:
        key = (monitor_id, vin)
        cost = state.obd_requests_per_minute if state is not None else None
        if cost is None:
            self.costs.pop(key, None)
        elif key in self.costs or len(self.costs) < MAX_COSTS:
            self.costs[key] = cost

    def obd_cost(self, monitor_id: str, vin: str) -> float | None:
        return self.costs.get((monitor_id, vin))

    def missing_data(self, record: MonitorRecord, vin: str) -> list[str] | None:
        """The names ``record`` reads that ``vin``'s manifest lacks; None without a manifest."""
        names = self.capabilities.get(vin)
        return None if names is None else sorted(needed_names(record.definition) - names)


def monitor_topic(topics: Topics, record: MonitorRecord) -> str:
    if record.scope == "fleet":
        return topics.fleet_monitor(record.owner, record.monitor_id)
    return topics.vehicle_monitor(record.owner, record.monitor_id)


VEHICLE_KEYS = ("label", "triggerParam", "extendedEventParam")
STATUS_REFRESH = 300.0  # seconds between writes of an unchanged vehicle status
MAX_STATUS_TRACKED = 100_000


def vehicle_definition(definition: dict[str, Any]) -> dict[str, Any]:
    """What a vehicle needs to evaluate a monitor: label, triggers and expression, extensions and
    ``refreshEvent``. The webhook target, the attributes and the retry policy stay here: the
    vehicles of a fleet can read its monitors, and some customers put credentials there."""
    inner = definition.get("monitor")
    if isinstance(inner, dict) and "triggerParam" not in definition:
        definition = inner  # the Stellantis ``Monitor`` resource form: {monitor: {...}}
    body = {key: definition[key] for key in VEHICLE_KEYS if key in definition}
    subscribe = definition.get("subscribeParam")
    if isinstance(subscribe, dict) and "refreshEvent" in subscribe:
        body["subscribeParam"] = {"refreshEvent": subscribe["refreshEvent"]}
    return body


MAX_MANIFESTS = 100_000
MAX_COSTS = 1_000_000  # (monitor, vehicle) pairs whose OBD-II cost is kept


def needed_names(definition: dict[str, Any]) -> set[str]:
    """The data names a monitor definition's data triggers read."""
    names: set[str] = set()
    params = vehicle_definition(definition).get("triggerParam")
    if not isinstance(params, dict):
        return names
    triggers = params.get("triggers")
    for trigger in triggers if isinstance(triggers, list) else []:
        data = trigger.get("data") if isinstance(trigger, dict) else None
        if isinstance(data, dict) and isinstance(data.get("data"), str):
            names.add(data["data"])
    return names


def monitor_payload(record: MonitorRecord) -> bytes:
    """The retained message: what the vehicle evaluates, plus the status (Paused/Failed: not
    firing)."""
    body = vehicle_definition(record.definition)
    body["status"] = record.status
    return json.dumps(body, separators=(",", ":"), sort_keys=True).encode()


@dataclass
class MemoryMonitorChannel(VehicleNotes):
    topics: Topics = field(default_factory=Topics)
    retained: dict[str, bytes] = field(default_factory=dict)
    pushed: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        VehicleNotes.__init__(self)

    def publish(self, record: MonitorRecord) -> None:
        self.retained[monitor_topic(self.topics, record)] = monitor_payload(record)
        self.pushed.add(record.monitor_id)

    def clear(self, record: MonitorRecord) -> None:
        self.retained.pop(monitor_topic(self.topics, record), None)
        self.pushed.discard(record.monitor_id)

    def delivery(self, monitor_id: str) -> Delivery:
        return "pushed" if monitor_id in self.pushed else "pending"


class MqttMonitorChannel(VehicleNotes):
    def __init__(
        self,
        config: MqttConfig,
        topics: Topics,
        *,
        store: Store,
        on_state: Callable[[str, VehicleMonitorState | None, str, str], None],
        on_bad_state: Callable[[str], None] = lambda _reason: None,
        on_status: Callable[[VehicleStatus], None] | None = None,
        publish_timeout: float = 5.0,
        limits: LimitsConfig | None = None,
    ) -> None:
        super().__init__()
        self.limits = limits or LimitsConfig()
        self._skip_log = SkipLog(log)
        self.topics = topics
        self.config = config
        self.store = store
        self.on_state = on_state
        self.on_bad_state = on_bad_state
        self.on_status = on_status or store.set_vehicle_status
        self.publish_timeout = publish_timeout
        self._client = mqtt_client(config, config.client_id + "-api", manual_ack=False)
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        self.link = BrokerLink("monitor channel", config)
        self.link.watch(self._client)
        self.connected = self.link.ready
        self.published: dict[str, str] = {}  # monitor id -> status last published
        self._sent: dict[str, mqtt.MQTTMessageInfo] = {}  # monitor id -> its last publish
        self._status_written: dict[str, tuple[tuple[bool, str, str], float]] = {}

    def alive(self) -> bool:
        """False once paho's network thread, started by ``start``, is gone."""
        return network_alive(self._client)

    def start(self) -> None:
        self._client.connect_async(
            self.config.host,
            self.config.port,
            keepalive=self.config.keepalive,
            clean_start=True,
            properties=connect_properties(0),
        )
        self._client.loop_start()

    def stop(self) -> None:
        self._client.disconnect()
        stop_network_loop(self._client)

    def _on_connect(
        self, client: mqtt.Client, _u: object, _f: object, rc: object, _p: object
    ) -> None:
        if getattr(rc, "is_failure", False):
            self.link.down(f"connection refused: {rc}")
            return
        client.subscribe(self.topics.all_monitor_states(), qos=1)
        client.subscribe(self.topics.all_capabilities(), qos=1)
        client.subscribe(self.topics.status("+"), qos=1)  # each vehicle's last status (retained)
        for record in self.store.live_monitors():
            self.published[record.monitor_id] = record.status
            self._send(record, monitor_payload(record), wait=False)
        self.link.up()

    def _on_message(self, _c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        topic = "(topic not UTF-8)"
        try:
            topic = message.topic
            if topic.endswith("/capabilities"):
                self._on_capabilities(topic, bytes(message.payload))
                return
            if topic.endswith("/status"):
                self._status(topic, bytes(message.payload))
                return
            state = admit_state(self.topics, topic, bytes(message.payload), self.limits)
            parts = topic.split("/")
            self.note_state(parts[-2], self.topics.vin_of(topic), state)
            self.on_state(topic, state, self.topics.vin_of(topic), parts[-2])
        except IngestError as exc:  # every refusal of the guard, whatever the payload was
            self._bad(topic, "bad_monitor_state", str(exc))
        except Exception as exc:  # the store refused it, say; never end the network thread
            self._bad(topic, "monitor_state_not_stored", f"{type(exc).__name__}: {exc}")

    def _on_capabilities(self, topic: str, payload: bytes) -> None:
        try:
            vin = self.topics.vin_of(topic)
            names = capability_names(payload)
        except WireError as exc:
            self._bad(topic, "bad_capabilities", str(exc))
            return
        if names is None:
            self.capabilities.pop(vin, None)
            return
        if vin not in self.capabilities and len(self.capabilities) >= MAX_MANIFESTS:
            self._bad(topic, "too_many_manifests", f"more than {MAX_MANIFESTS} vehicles")
            return
        self.capabilities[vin] = names
        for record in self.store.live_monitors():
            if record.scope == "vehicle" and record.owner == vin:
                self.warn_unservable(record)

    def warn_unservable(self, record: MonitorRecord) -> set[str]:
        """Log the data names a vehicle monitor needs that its vehicle's manifest lacks."""
        names = self.capabilities.get(record.owner) if record.scope == "vehicle" else None
        if names is None:
            return set()
        missing = needed_names(record.definition) - names
        if missing:
            self.capability_warnings += 1
            log.warning(
                "monitor %s needs %s, which vehicle %s cannot give (its capability manifest): "
                "it will never fire there", record.monitor_id, ", ".join(sorted(missing)),
                record.owner,
            )  # fmt: skip
        return missing

    def _status(self, topic: str, payload: bytes) -> None:
        """Keep a provisioned vehicle's last status (others are counted: a table of every VIN
        that ever published would grow without bound)."""
        status = admit_status(self.topics, topic, payload, self.limits, time.time())
        if status is None:
            return
        if not self._worth_writing(status):
            return
        if self.store.vehicle_fleet(status.vin) is None:
            self._bad(topic, "status_unknown_vehicle", "the vehicle is not provisioned")
            return
        self.on_status(status)

    def _worth_writing(self, status: VehicleStatus) -> bool:
        """A vehicle publishes its status every minute: the store is written when what the API
        shows changes (online, version, clock) or every ``STATUS_REFRESH`` seconds, not for every
        message (10,000 vehicles would be ~170 writes a second)."""
        key = (status.online, status.version, status.clock)
        last = self._status_written.get(status.vin)
        if last is not None and last[0] == key and status.received_at - last[1] < STATUS_REFRESH:
            return False
        if len(self._status_written) >= MAX_STATUS_TRACKED:
            self._status_written.clear()
        self._status_written[status.vin] = (key, status.received_at)
        return True

    def _bad(self, topic: str, reason: str, text: str) -> None:
        self.on_bad_state(reason)
        message = "bad monitor state on %s: %s"
        self._skip_log.warn(
            reason, time.monotonic(), message, truncated(topic, 120), truncated(text)
        )

    def _send(self, record: MonitorRecord, payload: bytes, *, wait: bool = True) -> None:
        topic = monitor_topic(self.topics, record)
        info = self._client.publish(topic, payload, qos=1, retain=True)
        self._sent[record.monitor_id] = info
        if wait and self.connected.is_set():
            try:
                info.wait_for_publish(self.publish_timeout)
            except (RuntimeError, ValueError) as exc:  # queued; the reconnect republishes
                log.warning("publish to %s not confirmed: %s", topic, exc)

    def publish(self, record: MonitorRecord) -> None:
        self.published[record.monitor_id] = record.status
        self.warn_unservable(record)
        self._send(record, monitor_payload(record))

    def clear(self, record: MonitorRecord) -> None:
        self.published.pop(record.monitor_id, None)
        self._send(record, b"")
        self._sent.pop(record.monitor_id, None)

    def delivery(self, monitor_id: str) -> Delivery:
        """``pushed`` once the broker has acknowledged (PUBACK) the monitor's latest retained
        definition, so every vehicle it addresses gets it at its next connection; ``pending``
        while that publish waits for the broker (away, or not yet answered). A monitor this
        process has not published yet (created by another API process) is ``pending`` until the
        status sync or the next reconnection publishes it here."""
        info = self._sent.get(monitor_id)
        if info is None or info.rc != mqtt.MQTT_ERR_SUCCESS:  # queued while away: republished
            return "pending"
        return "pushed" if info.is_published() else "pending"
