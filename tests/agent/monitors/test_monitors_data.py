"""Data triggers in the engine: every operator, hysteresis, durations, rates, onChange, previous."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.agent.monitors.monitor_support import T0, FakeCatalog, Rig, data, fix_at, make_monitor

OIL = "vehicle.engines.thermic.oil.temp"
FUEL = "vehicle.energy.fuel.level"
CHARGING = "vehicle.energy.charging.status"
DOORS = "vehicle.doorsState.opening"
RUNNING = "vehicle.engines.running"


def firings(r: Rig, name: str, values: list[Any], step: float = 1.0) -> list[int]:
    """Indexes of the values whose arrival produced an event."""
    out = []
    for i, value in enumerate(values):
        if r.set(name, value, T0 + i * step, max_age=None):
            out.append(i)
    return out


@pytest.mark.parametrize(
    "case",
    [
        (OIL, "equalsTo", ["100"], [90.0, 100.0, 101.0, 100.0], [1, 3]),
        (OIL, "notEqualTo", ["100"], [100.0, 90.0, 80.0, 100.0, 90.0], [1, 4]),
        (OIL, "greaterThan", ["100"], [100.0, 100.5, 99.0, 120.0], [1, 3]),
        (OIL, "greaterOrEqual", ["100"], [99.0, 100.0, 99.0, 100.0], [1, 3]),
        (OIL, "lowerThan", ["10"], [10.0, 9.0, 11.0, 5.0], [1, 3]),
        (OIL, "lowerOrEqual", ["10"], [11.0, 10.0, 12.0, 9.0], [1, 3]),
        (OIL, "between", ["10", "20"], [5.0, 10.0, 15.0, 21.0, 20.0], [1, 4]),
        (OIL, "includedIn", ["1", "3"], [2.0, 1.0, 3.0, 2.0, 3.0], [1, 4]),
        (CHARGING, "equalsTo", ["inprogress"], ["Stopped", "InProgress", "Finished"], [1]),
        (
            CHARGING,
            "includedIn",
            ["Failure", "Stopped"],
            ["InProgress", "Failure", "Stopped", "Finished", "Stopped"],
            [1, 4],
        ),
        (
            CHARGING,
            "notEqualTo",
            ["Finished"],
            ["Finished", "InProgress", "Failure", "Finished"],
            [1],
        ),
        (RUNNING, "equalsTo", ["TRUE"], [False, True, False, True], [1, 3]),
        (DOORS, "onChange", [], ["Closed", "Open", "Closed", "Closed", "Open"], [1, 2, 4]),
    ],
)
def test_operators(rig: Callable[..., Rig], catalog: FakeCatalog, case: tuple[Any, ...]) -> None:
    name, op, operands, values, fired = case
    r = rig(make_monitor([data("t", name, op, *operands)], "t", catalog))
    assert firings(r, name, values) == fired


def test_values_carry_literal_and_previous(rig: Callable[..., Rig], catalog: FakeCatalog) -> None:
    r = rig(
        make_monitor(
            [data("d", DOORS, "onChange"), data("hot", OIL, "greaterThan", "100")],
            "d | hot",
            catalog,
        )
    )
    r.set(OIL, 105.5, T0, max_age=None)
    r.set(DOORS, "Closed", T0 + 1, max_age=None)
    r.set(OIL, 90.0, T0 + 2, max_age=None)
    events = r.set(DOORS, "Open", T0 + 3, max_age=None)
    assert [(v.data, v.value, v.previous) for v in events[0].values] == [(DOORS, "Open", "Closed")]
    assert [(v.data, v.value, v.previous) for v in r.events[0].values] == [(OIL, "105.5", None)]


def test_threshold_hysteresis(rig: Callable[..., Rig], catalog: FakeCatalog) -> None:
    r = rig(make_monitor([data("t", OIL, "greaterThan", "120", hysteresis=5)], "t", catalog))
    # crosses 120, wobbles down to 116 (still true within 5), back over: one event only
    assert firings(r, OIL, [110.0, 121.0, 117.0, 116.0, 122.0, 114.0, 121.0]) == [1, 6]


def test_between_hysteresis_widens_both_edges(
    rig: Callable[..., Rig], catalog: FakeCatalog
) -> None:
    r = rig(make_monitor([data("t", FUEL, "between", "10", "20", hysteresis=2)], "t", catalog))
    assert firings(r, FUEL, [5.0, 11.0, 21.5, 8.5, 7.0, 15.0]) == [1, 5]


def test_min_duration_counts_from_the_observed_start(
    rig: Callable[..., Rig], catalog: FakeCatalog
) -> None:
    r = rig(
        make_monitor([data("t", OIL, "greaterThan", "120", minDurationSeconds=30)], "t", catalog)
    )
    r.set(OIL, 100.0, T0, max_age=None)
    r.set(OIL, 125.0, T0 + 10, max_age=None)
    assert r.set(OIL, 110.0, T0 + 30, max_age=None) == []  # only 20 s: nothing
    r.set(OIL, 125.0, T0 + 40, max_age=None)
    fired = r.advance(T0 + 100)
    assert [e.event_date.timestamp() for e in fired] == [T0 + 70]


def test_min_duration_already_true_at_start_is_unknown_not_false(
    rig: Callable[..., Rig], catalog: FakeCatalog
) -> None:
    r = rig(
        make_monitor([data("t", OIL, "greaterThan", "120", minDurationSeconds=30)], "t", catalog)
    )
    r.set(OIL, 125.0, T0, max_age=None)
    assert r.engine.runtime("m1").truth is None
    assert [e.event_date.timestamp() for e in r.advance(T0 + 60)] == [T0 + 30]


def test_rises_by_within_a_window(rig: Callable[..., Rig], catalog: FakeCatalog) -> None:
    trigger = data("t", OIL, "risesBy", delta=10, withinSeconds=60)
    r = rig(make_monitor([trigger], "t", catalog))
    # slow rise: 5 degrees a minute never makes 10 within 60 s
    assert firings(r, OIL, [80.0, 85.0, 90.0, 95.0], step=61.0) == []
    # fast rise: +12 in 20 s
    assert r.set(OIL, 100.0, T0 + 300, max_age=None) == []
    assert r.set(OIL, 112.0, T0 + 320, max_age=None) != []
    # the low sample leaves the window 60 s later: false, re-armed
    r.advance(T0 + 400)
    assert r.engine.runtime("m1").truth is False and r.engine.runtime("m1").fired is False


def test_falls_by(rig: Callable[..., Rig], catalog: FakeCatalog) -> None:
    r = rig(make_monitor([data("t", FUEL, "fallsBy", "5", withinSeconds=30)], "t", catalog))
    assert firings(r, FUEL, [50.0, 48.0, 44.9], step=10.0) == [2]


def test_previous_precondition_on_the_first_firing_only(
    rig: Callable[..., Rig], catalog: FakeCatalog
) -> None:
    trigger = data(
        "t", CHARGING, "equalsTo", "Failure", previous={"op": "includedIn", "value": ["InProgress"]}
    )
    r = rig(make_monitor([trigger], "t", catalog, subscribeParam={"refreshEvent": 60}))
    assert firings(r, CHARGING, ["Stopped", "Failure"]) == []  # came from Stopped
    r.set(CHARGING, "InProgress", T0 + 10, max_age=None)
    events = r.set(CHARGING, "Failure", T0 + 11, max_age=None)
    assert [(v.value, v.previous) for v in events[0].values] == [("Failure", "InProgress")]
    reminder = r.advance(T0 + 71)  # a reminder does not check previous again
    assert [e.refresh for e in reminder] == [True]


def test_string_values_convert_to_the_signal_type(
    rig: Callable[..., Rig], catalog: FakeCatalog
) -> None:
    r = rig(make_monitor([data("t", RUNNING, "equalsTo", "true")], "t", catalog))
    assert r.set(RUNNING, 1, T0, max_age=None) != []  # a raw 1 counts as true


def test_dbc_signal_names_work_directly(rig: Callable[..., Rig], catalog: FakeCatalog) -> None:
    r = rig(make_monitor([data("t", "EngineData.CoolantTemp", "greaterThan", "100")], "t", catalog))
    assert r.set("EngineData.CoolantTemp", 101.0, T0) != []


def test_gps_speed_when_the_catalog_has_no_can_speed(
    rig: Callable[..., Rig], catalog: FakeCatalog
) -> None:
    r = rig(make_monitor([data("t", "vehicle.kinetic.speed", "greaterThan", "90")], "t", catalog))
    assert "vehicle.kinetic.speed" not in r.engine.wanted_names()
    assert r.fix(fix_at(45.0, 5.0, T0, speed_kmh=50.0)) == []
    assert len(r.fix(fix_at(45.0, 5.0, T0 + 1, speed_kmh=95.0))) == 1
    r.advance(T0 + 60)  # no fix for a minute: unknown, not false
    assert r.engine.runtime("m1").truth is None and r.engine.runtime("m1").fired is True


def test_unknown_propagates_through_the_expression(
    rig: Callable[..., Rig], catalog: FakeCatalog
) -> None:
    monitor = make_monitor(
        [data("hot", OIL, "greaterThan", "100"), data("low", FUEL, "lowerThan", "10")],
        "hot | !low",
        catalog,
    )
    r = rig(monitor)
    assert r.set(FUEL, 5.0, T0, max_age=None) == []  # hot unknown, !low false -> unknown
    assert r.engine.runtime("m1").truth is None
    assert r.set(OIL, 90.0, T0 + 1, max_age=None) == []
    assert r.engine.runtime("m1").truth is False
    assert len(r.set(FUEL, 50.0, T0 + 2, max_age=None)) == 1


def test_only_dependent_monitors_are_evaluated(
    rig: Callable[..., Rig], catalog: FakeCatalog
) -> None:
    monitors = [
        make_monitor(
            [data("t", OIL, "greaterThan", str(100 + i))], "t", catalog, monitor_id=f"oil{i}"
        )
        for i in range(5)
    ] + [make_monitor([data("t", FUEL, "lowerThan", "5")], "t", catalog, monitor_id="fuel")]
    r = rig(*monitors)
    r.advance(T0)  # the first evaluation of each new monitor
    before = r.engine.counters["evaluations"]
    r.set(FUEL, 50.0, T0 + 1, max_age=None)
    assert r.engine.counters["evaluations"] - before == 1
    r.set(OIL, 103.0, T0 + 2, max_age=None)
    assert r.engine.counters["evaluations"] - before == 6
    assert sorted(e.monitor_id for e in r.events) == ["oil0", "oil1", "oil2"]


def test_paused_monitor_does_not_fire(rig: Callable[..., Rig], catalog: FakeCatalog) -> None:
    r = rig(make_monitor([data("t", OIL, "greaterThan", "100")], "t", catalog, status="Paused"))
    assert r.set(OIL, 150.0, T0) == []
    assert r.engine.next_deadline() is None


def test_stale_signal_returns_with_the_same_value(
    rig: Callable[..., Rig], catalog: FakeCatalog
) -> None:
    r = rig(make_monitor([data("t", OIL, "greaterThan", "100")], "t", catalog))
    r.set(OIL, 120.0, T0, max_age=1.0)
    assert len(r.events) == 1
    r.set(OIL, 90.0, T0 + 0.5, max_age=1.0)  # false: re-armed
    r.advance(T0 + 5)  # stale since T0 + 1.5
    assert r.set(OIL, 90.0, T0 + 6, max_age=1.0) == []  # the same value: known again at once
    assert r.engine.runtime("m1").truth is False
    assert len(r.set(OIL, 120.0, T0 + 6.5, max_age=1.0)) == 1


def test_extensions_are_snapshots_at_the_event(
    rig: Callable[..., Rig], catalog: FakeCatalog
) -> None:
    monitor = make_monitor(
        [data("hot", OIL, "greaterThan", "100")],
        "hot",
        catalog,
        extendedEventParam=[
            "vehicle.position",
            "vehicle.doorsState",
            "vehicle.status",
            "environment.air.temp",
            "vehicle.alerts",
        ],
    )
    r = rig(monitor)
    assert {
        "vehicle.doorsState.opening.Driver",
        "vehicle.doorsState.lockedState",
        RUNNING,
        OIL,
    } <= r.engine.wanted_names()
    r.fix(fix_at(48.1, 2.2, T0, speed_kmh=42.0, course=180.0))
    r.set("vehicle.doorsState.opening.Driver", "Open", T0, max_age=None)
    r.set("vehicle.doorsState.lockedState", "Unlocked", T0, max_age=None)
    r.set(RUNNING, True, T0, max_age=None)
    r.set("environment.air.temp", 31.5, T0, max_age=None)
    (event,) = r.set(OIL, 130.0, T0 + 1, max_age=None)
    ext = {e.type: e.body for e in event.extensions}
    assert set(ext) == {
        "vehicle.position",
        "vehicle.doorsState",
        "vehicle.status",
        "environment.air.temp",
    }
    position = ext["vehicle.position"]
    assert (
        position["latitude"],
        position["longitude"],
        position["heading"],
        position["speed"],
    ) == (48.1, 2.2, 180.0, 42.0)
    assert position["fix"] == {"type": "3D", "quality": 1, "hdop": 0.9, "satellites": 9}
    assert ext["vehicle.doorsState"] == {
        "lockedState": "Unlocked",
        "opening": [{"identifier": "Driver", "state": "Open"}],
    }
    assert ext["vehicle.status"] == {RUNNING: True}
    assert ext["environment.air.temp"] == {"data": "environment.air.temp", "value": "31.5"}


def test_a_value_of_the_wrong_type_is_unknown_not_a_crash(
    rig: Callable[..., Rig], catalog: FakeCatalog
) -> None:
    r = rig(make_monitor([data("t", OIL, "greaterThan", "100")], "t", catalog))
    r.set(OIL, 90.0, T0, max_age=None)
    r.set(OIL, 95.0, T0 + 1, max_age=None)  # the index now has a shortcut around 95
    assert r.set(OIL, "SNA", T0 + 2, max_age=None) == []
    assert r.engine.runtime("m1").truth is None
    assert len(r.set(OIL, 120.0, T0 + 3, max_age=None)) == 1


def test_telemetry_extensions_pick_data_names(
    rig: Callable[..., Rig], catalog: FakeCatalog
) -> None:
    kinds = [
        "vehicle.telemetry.engines",
        "vehicle.telemetry",
        "vehicle.alerts",
        "vehicle.maintenance",
    ]
    r = rig(
        make_monitor(
            [data("hot", OIL, "greaterThan", "100")], "hot", catalog, extendedEventParam=kinds
        )
    )
    r.set(FUEL, 40.0, T0, max_age=None)
    r.set("EngineData.CoolantTemp", 90.0, T0, max_age=None)  # a DBC key: not telemetry
    (event,) = r.set(OIL, 130.0, T0 + 1, max_age=None)
    ext = {e.type: e.body for e in event.extensions}
    assert ext["vehicle.telemetry.engines"] == {OIL: 130.0}
    assert ext["vehicle.telemetry"] == {OIL: 130.0, FUEL: 40.0}
    assert set(ext) == {"vehicle.telemetry.engines", "vehicle.telemetry"}  # nothing known: left out
