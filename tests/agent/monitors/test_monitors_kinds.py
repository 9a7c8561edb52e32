"""The registry of trigger kinds: one parser and one runtime state per kind, used by the
definition reader (new and v2 forms) and by the engine."""

from __future__ import annotations

from typing import Any

from agent.monitors.conditions import DataState
from agent.monitors.kinds import TRIGGER_KINDS, StateContext, state_for
from agent.monitors.model import parse_monitor
from agent.monitors.triggers import TimeState, ZoneState
from tests.agent.monitors.monitor_support import FakeCatalog, data, default_infos, make_monitor

ZONE = {"transition": "In", "place": {"radius": 1, "center": {"latitude": 48.8, "longitude": 2.3}}}
TIME = {"times": [{"recurrence": "Daily", "start": "PT22H", "duration": "PT8H"}]}


def test_each_kind_is_read_and_run_through_the_registry() -> None:
    catalog = FakeCatalog(default_infos())
    triggers: list[dict[str, Any]] = [
        {"name": "depot", "zone": ZONE},
        {"name": "night", "time": {**TIME, "requireInUse": False}},
        data("hot", "vehicle.engines.thermic.oil.temp", "greaterThan", "130"),
    ]
    monitor = make_monitor(triggers, "depot & night & hot", catalog)
    assert [type(t) for t in monitor.triggers] == [
        TRIGGER_KINDS[k].trigger_type for k in ("zone", "time", "data")
    ]
    context = StateContext(catalog, "vehicle.engines.running")
    states = [type(state_for(t, context)) for t in monitor.triggers]
    assert states == [ZoneState, TimeState, DataState]


def test_a_trigger_names_exactly_one_registered_kind() -> None:
    both = {"name": "x", "zone": ZONE, "time": TIME}
    result = parse_monitor(
        {"label": "l", "triggerParam": {"triggers": [both], "boolExp": "x"}},
        catalog=FakeCatalog(default_infos()),
    )
    assert any("needs exactly one of zone, time, data" in str(p) for p in result.problems)


def test_the_v2_form_goes_through_the_same_kind_checks() -> None:
    """The polygon bound applies to a v2 zoneTrigger too (it read zones without it before)."""
    ring = [[2.3 + i * 1e-4, 48.8] for i in range(2500)] + [[2.3, 48.8]]
    polygon = {"type": "Polygon", "coordinates": [ring]}
    zone = {"transition": "In", "place": {"polygon": polygon}}
    v2 = {"label": "l", "triggerParam": {"timeZoneTriggers": {"zoneTrigger": zone}}}
    result = parse_monitor(v2, catalog=FakeCatalog(default_infos()))
    assert result.monitor is None
    assert any("more than" in str(p) and "points" in str(p) for p in result.problems)
