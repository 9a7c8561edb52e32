"""The pure engine on an injected clock: firing, reminders, re-arming, unknown, restart."""

from __future__ import annotations

from collections.abc import Callable

from agent.monitors.engine import FiredState, MemoryFiredStore
from tests.agent.monitors.monitor_support import T0, FakeCatalog, Rig, data, make_monitor

OIL = "vehicle.engines.thermic.oil.temp"


def oil_monitor(catalog: FakeCatalog, **subscribe: object) -> object:
    extra = {"subscribeParam": subscribe} if subscribe else {}
    return make_monitor([data("hot", OIL, "greaterThan", "120")], "hot", catalog, **extra)


def test_fires_once_when_the_expression_becomes_true(
    rig: Callable[..., Rig], catalog: FakeCatalog
) -> None:
    r = rig(oil_monitor(catalog))
    assert r.set(OIL, 100.0, T0) == []
    fired = r.set(OIL, 125.0, T0 + 1)
    assert len(fired) == 1
    event = fired[0]
    assert event.refresh is False
    assert event.monitor_id == "m1" and event.vin == "VIN0001" and event.fleet_id == "fleet-1"
    assert event.event_date.timestamp() == T0 + 1
    assert [(v.data, v.value) for v in event.values] == [(OIL, "125")]
    assert r.set(OIL, 130.0, T0 + 2) == []  # still true: no new event without refreshEvent


def test_rearms_only_on_false_and_fires_again(
    rig: Callable[..., Rig], catalog: FakeCatalog
) -> None:
    r = rig(oil_monitor(catalog))
    r.set(OIL, 125.0, T0)
    assert r.set(OIL, 110.0, T0 + 1) == []
    again = r.set(OIL, 126.0, T0 + 2)
    assert len(again) == 1 and again[0].refresh is False
    assert [e.seq for e in r.events] == [1, 2]


def test_unknown_stretch_neither_fires_nor_rearms(
    rig: Callable[..., Rig], catalog: FakeCatalog
) -> None:
    r = rig(oil_monitor(catalog))
    assert len(r.set(OIL, 125.0, T0, max_age=1.0)) == 1
    assert r.advance(T0 + 30) == []  # stale: unknown
    assert r.engine.runtime("m1").fired is True
    # data returns, still hot (a new value): no duplicate, since unknown did not re-arm
    assert r.set(OIL, 127.0, T0 + 31, max_age=1.0) == []


def test_reminders_every_refresh_event_while_true(
    rig: Callable[..., Rig], catalog: FakeCatalog
) -> None:
    r = rig(oil_monitor(catalog, refreshEvent=60))
    r.set(OIL, 125.0, T0, max_age=None)
    reminders = r.advance(T0 + 150)
    assert [(e.refresh, e.event_date.timestamp() - T0) for e in reminders] == [
        (True, 60.0),
        (True, 120.0),
    ]
    r.set(OIL, 100.0, T0 + 151, max_age=None)
    assert r.advance(T0 + 400) == []


def test_restart_inside_the_condition_sends_no_duplicate(catalog: FakeCatalog) -> None:
    store = MemoryFiredStore()
    first = Rig(catalog, store).add(oil_monitor(catalog))
    assert len(first.set(OIL, 125.0, T0)) == 1
    assert store.load("m1") == FiredState(True, T0)
    second = Rig(catalog, store).add(oil_monitor(catalog))
    assert second.set(OIL, 125.0, T0 + 100) == []
    assert second.set(OIL, 90.0, T0 + 101) == []
    assert store.load("m1") == FiredState(False, T0)
    assert len(second.set(OIL, 125.0, T0 + 102)) == 1
