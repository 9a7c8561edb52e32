"""The kinds of trigger, one registry: each kind's parser beside the state the engine runs for it.

A kind is named by its key in the Stellantis JSON (``zone``, ``time``, ``data``; reference §1.4).
``definition.py`` reads a trigger through ``TRIGGER_KINDS[key].parse`` and the engine builds its
runtime state through ``state_for``: a new kind (an OBD fault code, say) is one entry here, not a
branch in each of them (STYLE: registries are plain dicts).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from agent.model import SignalInfo
from agent.monitors.conditions import DataState
from agent.monitors.data import STATEFUL_OPS, DataTrigger, convert, operands, parse_data
from agent.monitors.fields import Fields
from agent.monitors.limits import MAX_POLYGON_POINTS, count_positions
from agent.monitors.model import Catalog, Trigger
from agent.monitors.names import PREVIOUS_ELIGIBLE, STELLANTIS_NAMES, allowed_ops, stellantis_info
from agent.monitors.schedule import TimeTrigger, parse_time
from agent.monitors.signals import resolve_in_use
from agent.monitors.triggers import TimeState, TriggerState, ZoneState
from agent.monitors.zone import ZoneTrigger, parse_zone
from agent.obd.names import obd_info

_DBC_SIGNAL = re.compile(r"^[A-Z][A-Za-z0-9_]*\.[A-Za-z0-9_]+$")


@dataclass(frozen=True, slots=True)
class StateContext:
    """What a trigger's runtime state may need from its engine."""

    catalog: Catalog
    in_use_name: str


@dataclass(frozen=True, slots=True)
class TriggerKind:
    key: str  # the trigger's key in the monitor JSON
    trigger_type: type
    parse: Callable[[str, Fields, Catalog | None], Trigger | None]
    state: Callable[[Any, StateContext], TriggerState]


def _parse_zone(name: str, body: Fields, _catalog: Catalog | None) -> Trigger | None:
    if (points := count_positions(body.obj)) > MAX_POLYGON_POINTS:
        body.report.problem(body.path, f"has {points} points, more than {MAX_POLYGON_POINTS}")
        return None
    return parse_zone(name, body)


def _parse_time(name: str, body: Fields, catalog: Catalog | None) -> Trigger | None:
    time_trigger = parse_time(name, body)
    if time_trigger is not None and time_trigger.require_in_use and catalog is not None:
        in_use = resolve_in_use(catalog)
        if catalog.describe(in_use) is None:
            body.report.warn(
                body.at("requireInUse"),
                f"this vehicle has no {in_use!r} (nor an ignition name): the trigger stays "
                "unknown; set requireInUse to false for a plain schedule",
            )
    return time_trigger


def _parse_data(name: str, body: Fields, catalog: Catalog | None) -> Trigger | None:
    trigger = parse_data(name, body)
    return check_data(trigger, body, catalog) if trigger is not None else None


def _resolve_name(name: str, catalog: Catalog | None) -> str | None:
    """The data name as the table or the catalog spells it (the docs write ``Vehicle.odometer``)."""
    lowered = name.lower()
    names = list(STELLANTIS_NAMES)
    listed = getattr(catalog, "names", None)
    if catalog is not None and callable(listed):
        names = list(listed())
    for known in names:
        if known.lower() == lowered:
            return known
    return None


def _table_info(name: str) -> SignalInfo | None:
    """Without a vehicle catalog (the backend): the Stellantis table, then the OBD-II names."""
    return stellantis_info(name) or obd_info(name)


def _describe(
    trigger: DataTrigger, body: Fields, catalog: Catalog | None
) -> tuple[DataTrigger, SignalInfo | None]:
    info = catalog.describe(trigger.data) if catalog is not None else _table_info(trigger.data)
    if info is None and (spelled := _resolve_name(trigger.data, catalog)) is not None:
        body.report.warn(body.at("data"), f"read as {spelled!r} (data names are case-sensitive)")
        trigger = replace(trigger, data=spelled)
        info = catalog.describe(spelled) if catalog is not None else _table_info(spelled)
    return trigger, info


def check_data(trigger: DataTrigger, body: Fields, catalog: Catalog | None) -> DataTrigger | None:
    """The data name, operator and values against the catalog (or the Stellantis table);
    the trigger (its data name as spelled by the catalog), or None when it has problems."""
    report = body.report
    before = len(report.problems)
    trigger, info = _describe(trigger, body, catalog)
    if info is None:
        if catalog is None and _DBC_SIGNAL.match(trigger.data):
            report.warn(
                body.at("data"), f"{trigger.data!r} looks like a DBC signal; the vehicle checks it"
            )
            return trigger
        where = "this vehicle does not provide" if catalog is not None else "unknown data name"
        report.problem(body.at("data"), f"{where} {trigger.data!r}")
        return None
    ops = allowed_ops(trigger.data, info, from_table=catalog is None)
    if trigger.op not in ops:
        report.problem(
            body.at("op"),
            f"{trigger.op} is not allowed for {trigger.data} (allowed: {', '.join(sorted(ops))})",
        )
        return None
    try:
        values = operands(trigger, info)
    except ValueError as exc:
        report.problem(body.at("value"), str(exc))
        return None
    if trigger.op == "between" and float(values[0]) > float(values[1]):  # type: ignore[arg-type]
        report.problem(body.at("value"), "between needs low <= high")
    if trigger.previous is not None:
        if (
            catalog is None
            and trigger.data not in PREVIOUS_ELIGIBLE
            and trigger.data in STELLANTIS_NAMES
        ):
            report.warn(
                body.at("previous"), f"Stellantis does not define previous for {trigger.data}"
            )
        for text in trigger.previous.values:
            try:
                convert(text, info)
            except ValueError as exc:
                report.problem(f"{body.at('previous')}.value", str(exc))
    if trigger.min_duration_s and trigger.op in STATEFUL_OPS - {"risesBy", "fallsBy"}:
        report.problem(body.at("minDurationSeconds"), "does not apply to onChange")
    return trigger if len(report.problems) == before else None


TRIGGER_KINDS: dict[str, TriggerKind] = {
    "zone": TriggerKind("zone", ZoneTrigger, _parse_zone, lambda t, _c: ZoneState(t)),
    "time": TriggerKind("time", TimeTrigger, _parse_time, lambda t, c: TimeState(t, c.in_use_name)),
    "data": TriggerKind(
        "data", DataTrigger, _parse_data, lambda t, c: DataState(t, c.catalog.describe(t.data))
    ),
}
_BY_TYPE = {kind.trigger_type: kind for kind in TRIGGER_KINDS.values()}


def state_for(trigger: Trigger, context: StateContext) -> TriggerState:
    """The runtime state the engine keeps for ``trigger``, by its kind."""
    return _BY_TYPE[type(trigger)].state(trigger, context)
