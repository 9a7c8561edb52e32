"""What an event carries: ``values[]`` (the data behind the firing) and ``extensionParam``
snapshots (``extensions[]``: the latest known data of each requested kind at the event).

Bodies (objects, the B2B shape of reference §3.1; an extension with nothing known is left out):

- ``vehicle.position``: ``latitude``, ``longitude``, ``altitude``, ``heading`` (degrees true),
  ``speed`` (km/h), ``fix`` (``type`` "NONE"/"2D"/"3D", ``quality``, ``hdop``, ``satellites``),
  ``updatedAt`` (RFC 3339 UTC of the fix).
- ``vehicle.doorsState``: ``lockedState`` and ``opening`` = ``[{identifier, state}]`` from the
  data names ``vehicle.doorsState.opening.<Identifier>`` (Driver, Passenger, RearLeft, ...), or the
  summary ``vehicle.doorsState.opening`` as ``{identifier: "Any", state}``.
- ``vehicle.status``: the current value of each status data name the vehicle has
  (engine, ignition, motion, odometer, energy levels), keyed by data name.
- ``vehicle.telemetry`` (every data name) and ``vehicle.telemetry.<group>`` (names under
  ``vehicle.<group>`` or ``<group>``), keyed by data name.
- ``vehicle.maintenance``, ``vehicle.alarm``, ``vehicle.trip``, ``vehicle.alerts``,
  ``vehicle.collisions``, ``vehicle.stolen``: the data names under the matching prefix.
- any single data name (``environment.air.temp``, as in the docs' example): ``{data, value}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from agent.model import EventValue, Extension, Fix
from agent.monitors.data import DataTrigger, literal
from agent.monitors.model import Monitor
from agent.monitors.triggers import Context, TriggerState
from agent.state import VehicleState

DOOR_IDS = ("Driver", "Passenger", "RearLeft", "RearRight", "Trunk", "Hood", "RearWindow", "Roof")
STATUS_NAMES = (
    "vehicle.powertrain.status",
    "vehicle.engines.running",
    "vehicle.ignition",
    "vehicle.kinetic.moving",
    "vehicle.kinetic.speed",
    "vehicle.odometer",
    "vehicle.energy.fuel.level",
    "vehicle.energy.electric.level",
    "vehicle.autonomy",
    "vehicle.energy.charging.status",
    "vehicle.energy.charging.plugged",
)
PREFIXES = {
    "vehicle.maintenance": ("vehicle.maintenance.",),
    "vehicle.alarm": ("vehicle.alarm.",),
    "vehicle.trip": ("vehicle.trip.",),
    "vehicle.alerts": ("vehicle.alert",),
    "vehicle.collisions": ("vehicle.collision.",),
    "vehicle.stolen": ("stolen.",),
}


def is_data_name(name: str) -> bool:
    """Data names start lower-case (``vehicle.x``); DBC keys (``Message.Signal``) do not."""
    return bool(name) and name[0].islower()


def position_body(fix: Fix | None) -> dict[str, object] | None:
    if fix is None or not fix.has_position:
        return None
    updated = fix.utc if fix.utc is not None else datetime.fromtimestamp(fix.timestamp, UTC)
    text = updated.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return {
        "latitude": fix.latitude,
        "longitude": fix.longitude,
        "altitude": fix.altitude,
        "heading": fix.course,
        "speed": fix.speed_kmh,
        "fix": {
            "type": {1: "NONE", 2: "2D", 3: "3D"}[int(fix.fix_type)],
            "quality": fix.quality,
            "hdop": fix.hdop,
            "satellites": fix.satellites,
        },
        "updatedAt": text,
    }


def doors_body(state: VehicleState, now: float) -> dict[str, object] | None:
    body: dict[str, object] = {}
    locked = state.current("vehicle.doorsState.lockedState", now)
    if locked is not None:
        body["lockedState"] = literal(locked)
    opening = []
    for ident in DOOR_IDS:
        value = state.current(f"vehicle.doorsState.opening.{ident}", now)
        if value is not None:
            opening.append({"identifier": ident, "state": literal(value)})
    if not opening:
        summary = state.current("vehicle.doorsState.opening", now)
        if summary is not None:
            opening.append({"identifier": "Any", "state": literal(summary)})
    if opening:
        body["opening"] = opening
    return body or None


def _values(state: VehicleState, now: float, names: list[str]) -> dict[str, object] | None:
    body: dict[str, object] = {}
    for name in names:
        value = state.current(name, now)
        if value is not None:
            body[name] = value
    return body or None


def _under(state: VehicleState, prefixes: tuple[str, ...]) -> list[str]:
    return sorted(
        n for n in state.names() if is_data_name(n) and any(n.startswith(p) for p in prefixes)
    )


def snapshot(kind: str, state: VehicleState, now: float) -> Extension | None:
    """One ``extensions[]`` entry, or None when nothing of that kind is known."""
    body: dict[str, object] | None
    if kind == "vehicle.position":
        body = position_body(state.fix)
    elif kind == "vehicle.doorsState":
        body = doors_body(state, now)
    elif kind == "vehicle.status":
        body = _values(state, now, list(STATUS_NAMES))
    elif kind == "vehicle.telemetry":
        body = _values(state, now, sorted(n for n in state.names() if is_data_name(n)))
    elif kind.startswith("vehicle.telemetry."):
        group = kind.removeprefix("vehicle.telemetry.")
        prefixes = (f"vehicle.{group}", group) if group != "vehicle" else ("vehicle.",)
        body = _values(state, now, _under(state, prefixes))
    elif kind in PREFIXES:
        body = _values(state, now, _under(state, PREFIXES[kind]))
    else:
        value = state.current(kind, now)
        body = None if value is None else {"data": kind, "value": literal(value)}
    return None if body is None else Extension(kind, body)


def wanted_for(kind: str, catalog_names: list[str]) -> set[str]:
    """The data names an extension reads, so the decoder keeps them up to date."""
    if kind == "vehicle.position":
        return set()
    if kind == "vehicle.doorsState":
        names = {"vehicle.doorsState.lockedState", "vehicle.doorsState.opening"}
        return names | {f"vehicle.doorsState.opening.{ident}" for ident in DOOR_IDS}
    if kind == "vehicle.status":
        return set(STATUS_NAMES)
    if kind == "vehicle.telemetry":
        return {n for n in catalog_names if is_data_name(n)}
    if kind.startswith("vehicle.telemetry."):
        group = kind.removeprefix("vehicle.telemetry.")
        prefixes = (f"vehicle.{group}", group) if group != "vehicle" else ("vehicle.",)
        return {n for n in catalog_names if is_data_name(n) and n.startswith(prefixes)}
    if kind in PREFIXES:
        return {n for n in catalog_names if n.startswith(PREFIXES[kind])}
    return {kind}


def event_extensions(monitor: Monitor, ctx: Context) -> tuple[Extension, ...]:
    """The ``extensions[]`` of an event: one snapshot per ``extendedEventParam`` entry."""
    found = (snapshot(kind, ctx.state, ctx.now) for kind in monitor.extended)
    return tuple(ext for ext in found if ext is not None)


def event_values(
    monitor: Monitor, states: Mapping[str, TriggerState], ctx: Context
) -> tuple[EventValue, ...]:
    """The ``values[]`` of an event: the data triggers that are true, in definition order."""
    values = []
    for trigger in monitor.triggers:
        if isinstance(trigger, DataTrigger):
            entry = states[trigger.name].value(ctx)
            if entry is not None:
                values.append(entry)
    return tuple(values)
