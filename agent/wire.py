"""The wire contract shared by agent and backend: topics and versioned JSON messages.

Pure: no paho, no clock reads. The JSON Schemas published in ``docs/schemas/`` describe exactly
what ``event_to_json`` and friends produce; tests validate real messages against them.

Topics (prefix default ``edgemon/v1``)::

    {prefix}/vehicles/{vin}/events                      agent -> backend, QoS 1
    {prefix}/vehicles/{vin}/status                      agent, retained (last will: offline)
    {prefix}/vehicles/{vin}/monitors/{monitorId}        backend -> agent, retained, QoS 1
    {prefix}/fleets/{fleetId}/monitors/{monitorId}      backend -> agents, retained, QoS 1
    {prefix}/vehicles/{vin}/monitors/{monitorId}/state  agent -> backend, retained
"""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from agent.model import Event, EventValue, Extension

DEFAULT_PREFIX = "edgemon/v1"
EVENT_SCHEMA = "edgemon.event/1"
STATUS_SCHEMA = "edgemon.status/1"
MONITOR_STATE_SCHEMA = "edgemon.monitor-state/1"
CAPABILITIES_SCHEMA = "edgemon.capabilities/1"
MAX_CAPABILITY_NAMES = 5000  # a DBC with every signal listed stays well below
MAX_CAPABILITIES_BYTES = 512 * 1024

# A VIN is 17 characters without I, O, Q; test benches use shorter ids, so the check is loose:
# anything that is safe as one MQTT topic level.
_TOPIC_LEVEL = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


class WireError(ValueError):
    """A message or topic does not follow the contract."""


def valid_topic_level(text: str) -> bool:
    return bool(_TOPIC_LEVEL.match(text))


@dataclass(frozen=True, slots=True)
class Topics:
    prefix: str = DEFAULT_PREFIX

    def events(self, vin: str) -> str:
        return f"{self.prefix}/vehicles/{vin}/events"

    def all_events(self) -> str:
        return f"{self.prefix}/vehicles/+/events"

    def status(self, vin: str) -> str:
        return f"{self.prefix}/vehicles/{vin}/status"

    def vehicle_monitor(self, vin: str, monitor_id: str) -> str:
        return f"{self.prefix}/vehicles/{vin}/monitors/{monitor_id}"

    def vehicle_monitors(self, vin: str) -> str:
        return f"{self.prefix}/vehicles/{vin}/monitors/+"

    def fleet_monitor(self, fleet_id: str, monitor_id: str) -> str:
        return f"{self.prefix}/fleets/{fleet_id}/monitors/{monitor_id}"

    def fleet_monitors(self, fleet_id: str) -> str:
        return f"{self.prefix}/fleets/{fleet_id}/monitors/+"

    def monitor_state(self, vin: str, monitor_id: str) -> str:
        return f"{self.prefix}/vehicles/{vin}/monitors/{monitor_id}/state"

    def all_monitor_states(self) -> str:
        return f"{self.prefix}/vehicles/+/monitors/+/state"

    def capabilities(self, vin: str) -> str:
        return f"{self.prefix}/vehicles/{vin}/capabilities"

    def all_capabilities(self) -> str:
        return f"{self.prefix}/vehicles/+/capabilities"

    def vin_of(self, topic: str) -> str:
        """The VIN level of a ``{prefix}/vehicles/{vin}/...`` topic."""
        head = f"{self.prefix}/vehicles/"
        if not topic.startswith(head):
            raise WireError(f"topic {topic!r} is not under {head!r}")
        vin = topic[len(head) :].split("/", 1)[0]
        if not valid_topic_level(vin):
            raise WireError(f"topic {topic!r} has no valid VIN level")
        return vin


def uuid7(unix_ms: int | None = None) -> str:
    """A time-ordered UUID (RFC 9562 version 7) as text; sorts by creation time."""
    ms = int(time.time() * 1000) if unix_ms is None else unix_ms
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76
    value |= ((rand >> 62) & 0xFFF) << 64  # rand_a: 12 bits
    value |= 0b10 << 62
    value |= rand & ((1 << 62) - 1)
    return str(uuid.UUID(int=value))


def format_date(moment: datetime) -> str:
    """RFC 3339 in UTC with milliseconds and a ``Z``."""
    if moment.tzinfo is None:
        raise WireError("naive datetime: event dates must be timezone-aware")
    text = moment.astimezone(UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


def parse_date(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (TypeError, ValueError) as exc:
        raise WireError(f"bad date {text!r}") from exc
    if moment.tzinfo is None:
        raise WireError(f"date {text!r} has no time zone")
    return moment


def event_to_dict(event: Event) -> dict[str, Any]:
    """The event message. ``values[]`` already has the Stellantis webhook shape."""
    values: list[dict[str, Any]] = []
    for item in event.values:
        entry: dict[str, Any] = {
            "data": item.data,
            "value": {"type": "string", "body": {"literalValue": item.value}},
        }
        if item.previous is not None:
            entry["previous"] = item.previous
        values.append(entry)
    return {
        "schema": EVENT_SCHEMA,
        "eventId": event.event_id,
        "seq": event.seq,
        "vin": event.vin,
        "fleetId": event.fleet_id,
        "monitorId": event.monitor_id,
        "eventDate": format_date(event.event_date),
        "refresh": event.refresh,
        "values": values,
        "extensions": [{"type": ext.type, "body": ext.body} for ext in event.extensions],
        "labels": dict(event.labels),
    }


def event_to_json(event: Event) -> bytes:
    return json.dumps(event_to_dict(event), separators=(",", ":"), sort_keys=True).encode()


def _require(obj: dict[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    if key not in obj:
        raise WireError(f"missing {key!r}")
    value = obj[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise WireError(f"{key!r} has the wrong type ({type(value).__name__})")
    return value


def event_from_dict(obj: Any) -> Event:
    """Parse and check an event message; raise WireError naming the first problem."""
    if not isinstance(obj, dict):
        raise WireError("an event is a JSON object")
    if obj.get("schema") != EVENT_SCHEMA:
        raise WireError(f"unsupported schema {obj.get('schema')!r}, expected {EVENT_SCHEMA!r}")
    event_id = _require(obj, "eventId", str)
    try:
        uuid.UUID(event_id)
    except ValueError as exc:
        raise WireError(f"eventId {event_id!r} is not a UUID") from exc
    seq = _require(obj, "seq", int)
    vin = _require(obj, "vin", str)
    if not valid_topic_level(vin):
        raise WireError(f"vin {vin!r} is not valid")
    fleet = obj.get("fleetId")
    if fleet is not None and not isinstance(fleet, str):
        raise WireError("'fleetId' must be a string or null")
    values = []
    for raw in _require(obj, "values", list):
        try:
            literal = raw["value"]["body"]["literalValue"]
            previous = raw.get("previous")
            values.append(
                EventValue(
                    str(raw["data"]), str(literal), None if previous is None else str(previous)
                )
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise WireError(f"bad values[] entry {raw!r}") from exc
    extensions = []
    for raw in _require(obj, "extensions", list):
        if (
            not isinstance(raw, dict)
            or not isinstance(raw.get("type"), str)
            or not isinstance(raw.get("body"), dict)
        ):
            raise WireError(f"bad extensions[] entry {raw!r}")
        extensions.append(Extension(raw["type"], raw["body"]))
    labels = obj.get("labels") or {}
    if not isinstance(labels, dict):
        raise WireError("'labels' must be an object")
    return Event(
        event_id=event_id,
        seq=seq,
        vin=vin,
        fleet_id=fleet,
        monitor_id=_require(obj, "monitorId", str),
        event_date=parse_date(_require(obj, "eventDate", str)),
        refresh=_require(obj, "refresh", bool),
        values=tuple(values),
        extensions=tuple(extensions),
        labels={str(k): str(v) for k, v in labels.items()},
    )


def event_from_json(payload: bytes | str) -> Event:
    try:
        obj = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WireError(f"not JSON: {exc}") from exc
    return event_from_dict(obj)


def status_to_json(
    *,
    vin: str,
    online: bool,
    at: datetime,
    version: str = "",
    outbox_depth: int = 0,
    monitors: list[str] | None = None,
    counters: dict[str, int] | None = None,
    clock: str = "system",
    buses: dict[str, dict[str, bool | float | None]] | None = None,
) -> bytes:
    body = {
        "schema": STATUS_SCHEMA,
        "vin": vin,
        "online": online,
        "at": format_date(at),
        "version": version,
        "outboxDepth": outbox_depth,
        "monitors": sorted(monitors or []),
        "counters": dict(sorted((counters or {}).items())),
        "clock": clock,
    }
    if buses is not None:
        body["buses"] = {name: buses[name] for name in sorted(buses)}
    return json.dumps(body, separators=(",", ":")).encode()


def monitor_state_to_json(
    *,
    monitor_id: str,
    applied: bool,
    at: datetime,
    definition_hash: str = "",
    reasons: list[dict[str, str]] | None = None,
    obd_requests_per_minute: float | None = None,
) -> bytes:
    """``reasons`` items are ``{"path": ..., "message": ...}`` (agent.errors.Problem);
    ``obd_requests_per_minute``: what the applied monitor costs on OBD-II (None: no [[obd]])."""
    body: dict[str, object] = {
        "schema": MONITOR_STATE_SCHEMA,
        "monitorId": monitor_id,
        "state": "applied" if applied else "rejected",
        "hash": definition_hash,
        "reasons": reasons or [],
        "at": format_date(at),
    }
    if obd_requests_per_minute is not None:
        body["obdRequestsPerMinute"] = round(obd_requests_per_minute, 2)
    return json.dumps(body, separators=(",", ":")).encode()


def capabilities_to_json(
    *, vin: str, at: datetime, data_names: list[str], obd: dict[str, dict[str, Any]]
) -> bytes:
    """The retained capability manifest: every data name this vehicle can serve (its CAN
    catalog, GPS, and what the OBD-II scan found), and per OBD bus its VIN, ECUs and PIDs."""
    body = {
        "schema": CAPABILITIES_SCHEMA,
        "vin": vin,
        "at": format_date(at),
        "dataNames": sorted(set(data_names))[:MAX_CAPABILITY_NAMES],
        "obd": {name: obd[name] for name in sorted(obd)},
    }
    return json.dumps(body, separators=(",", ":")).encode()


def capability_names(payload: bytes) -> frozenset[str] | None:
    """The data names of a manifest; None for an empty (cleared) one. Raises WireError for
    anything else (too big, not JSON, not a manifest)."""
    if not payload:
        return None
    if len(payload) > MAX_CAPABILITIES_BYTES:
        raise WireError(f"capability manifest of {len(payload)} bytes is too large")
    try:
        body = json.loads(payload)
    except (ValueError, RecursionError) as exc:
        raise WireError(f"capability manifest is not JSON: {exc}") from exc
    if not isinstance(body, dict) or body.get("schema") != CAPABILITIES_SCHEMA:
        raise WireError("not an edgemon.capabilities/1 manifest")
    names = body.get("dataNames")
    if not isinstance(names, list) or len(names) > MAX_CAPABILITY_NAMES:
        raise WireError("dataNames must be a list of at most 5000 names")
    if not all(isinstance(n, str) and 0 < len(n) <= 200 for n in names):
        raise WireError("dataNames must be names of 1-200 characters")
    return frozenset(names)
