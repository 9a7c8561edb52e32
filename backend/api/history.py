"""What happened, as the API shows it (issue 18): stored events, and each vehicle's last known
state folded from its latest events and its last retained status.

Pure: values in, JSON-ready dicts out. ``base`` is the configured ``[api] base_url`` (empty:
links are paths), so every ``_links`` entry has one form, ``{"href": base + path}``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence, Set
from datetime import UTC, datetime
from typing import Any

from agent.errors import Problem
from agent.wire import format_date
from backend.errors import ApiProblem
from backend.store.records import StoredEvent, VehicleRecord, VehicleStatus

RECENT_EVENTS = 500  # the last known values come from at most this many latest events
POSITION = "vehicle.position"


def iso(moment: float | None) -> str | None:
    return None if moment is None else format_date(datetime.fromtimestamp(moment, tz=UTC))


def parse_moment(name: str, text: str | None) -> float | None:
    """A ``from``/``to`` query value: RFC 3339 with a time zone (``Z`` or an offset)."""
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
        if moment.tzinfo is None:
            raise ValueError("no time zone")
        return moment.timestamp()
    except (ValueError, OverflowError, OSError) as exc:
        problem = Problem(
            name, f"must be a date-time with a time zone, e.g. 2026-01-31T08:00Z ({exc})"
        )
        raise ApiProblem(400, "invalid time range", (problem,)) from exc


def link(base: str, path: str) -> dict[str, str]:
    return {"href": base + path}


def event_view(
    base: str, event: StoredEvent, monitors: Set[str], vehicles: Set[str]
) -> dict[str, Any]:
    """An event; it links its monitor and vehicle when they still exist (``monitors``,
    ``vehicles``), so that every link resolves."""
    links = {}
    if event.vin in vehicles:
        links["vehicle"] = link(base, f"/vehicles/{event.vin}")
    if event.monitor_id in monitors:
        links["monitor"] = link(base, f"/monitors/{event.monitor_id}")
    return {
        "eventId": event.event_id,
        "vin": event.vin,
        "fleetId": event.fleet_id,
        "monitorId": event.monitor_id,
        "eventDate": iso(event.event_date),
        "receivedAt": iso(event.received_at),
        "skipReason": event.skip_reason,
        "event": json.loads(event.webhook_json),
        "_links": links,
    }


def last_known(events: Sequence[StoredEvent]) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """(last position, last value of each data name) from events given newest first; each
    carries the ``eventId`` and ``eventDate`` it came from."""
    position: dict[str, Any] | None = None
    values: dict[str, dict[str, Any]] = {}
    for event in events:
        body = json.loads(event.webhook_json)
        source = {"eventId": event.event_id, "eventDate": iso(event.event_date)}
        for item in body.get("values", []):
            name = item.get("data") if isinstance(item, dict) else None
            if isinstance(name, str) and name not in values:
                values[name] = {"data": name, "value": item.get("value"), **source}
        if position is None:
            for extension in body.get("extensions", []):
                if isinstance(extension, dict) and extension.get("type") == POSITION:
                    position = {"position": extension.get("body"), **source}
                    break
    return position, [values[name] for name in sorted(values)]


def status_view(status: VehicleStatus | None) -> dict[str, Any] | None:
    if status is None:
        return None
    return {
        "online": status.online,
        "at": status.at,
        "version": status.version,
        "outboxDepth": status.outbox_depth,
        "clock": status.clock,
        "receivedAt": iso(status.received_at),
    }


def vehicle_links(base: str, vin: str, fleet_id: str) -> dict[str, Any]:
    me = f"/vehicles/{vin}"
    return {
        "self": link(base, me),
        "fleet": link(base, f"/fleets/{fleet_id}"),
        "monitors": link(base, f"{me}/monitors"),
        "events": link(base, f"{me}/events"),
    }


def vehicle_state_view(
    base: str,
    vehicle: VehicleRecord,
    status: VehicleStatus | None,
    recent: Sequence[StoredEvent],
) -> dict[str, Any]:
    """A vehicle's last known state: its last status message, last position and last values."""
    position, values = last_known(recent)
    return {
        "vin": vehicle.vin,
        "fleetId": vehicle.fleet_id,
        "createdAt": iso(vehicle.created_at),
        "status": status_view(status),
        "lastEventAt": iso(recent[0].event_date) if recent else None,
        "position": position,
        "values": values,
        "_links": vehicle_links(base, vehicle.vin, vehicle.fleet_id),
    }


def fleet_view(base: str, fleet_id: str, vehicles: int) -> dict[str, Any]:
    me = f"/fleets/{fleet_id}"
    return {
        "fleetId": fleet_id,
        "vehicleCount": vehicles,
        "_links": {
            "self": link(base, me),
            "vehicles": link(base, f"{me}/vehicles"),
            "monitors": link(base, f"{me}/monitors"),
            "events": link(base, f"{me}/events"),
        },
    }
