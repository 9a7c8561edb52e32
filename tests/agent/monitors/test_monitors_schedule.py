"""Time triggers: Daily windows, midnight crossing, daylight saving, day and week rules."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from agent.monitors.fields import Fields, Report
from agent.monitors.schedule import Schedule, TimeTrigger, parse_duration, parse_time, parse_weeks
from tests.agent.monitors.monitor_support import T0, FakeCatalog, Rig, make_monitor

PARIS = ZoneInfo("Europe/Paris")


def at(text: str, tz: ZoneInfo = PARIS) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=tz).timestamp()


def utc(text: str) -> float:
    return at(text, ZoneInfo("UTC"))


def schedule(*entries: dict[str, Any], zone: str = "Europe/Paris") -> Schedule:
    report = Report()
    trigger = parse_time("t", Fields({"timeZone": zone, "times": list(entries)}, "$.time", report))
    assert report.problems == [], report.problems
    assert isinstance(trigger, TimeTrigger)
    return Schedule(trigger)


def daily(start: str, duration: str, **occ: list[str]) -> dict[str, Any]:
    entry: dict[str, Any] = {"recurrence": "Daily", "start": start, "duration": duration}
    if occ:
        entry["occurence"] = occ
    return entry


def test_iso_durations_and_week_ranges() -> None:
    assert parse_duration("PT14H30M") == 52_200
    assert parse_duration("P1DT1S") == 86_401
    assert parse_duration("PT0.5S") == 0.5
    assert parse_duration("PT") is None and parse_duration("14:30") is None
    assert parse_weeks("w34-w46") == frozenset(range(34, 47))
    assert parse_weeks("w52-w2") == frozenset({52, 53, 1, 2})
    assert parse_weeks("w60") is None


def test_window_across_midnight() -> None:
    s = schedule(daily("PT22H", "PT8H"))
    assert s.inside(at("2026-06-10T23:00"))
    assert s.inside(at("2026-06-11T05:59:59"))
    assert not s.inside(at("2026-06-11T06:00"))
    assert not s.inside(at("2026-06-10T21:59:59"))
    assert s.inside(at("2026-06-10T22:00"))
    assert s.next_boundary(at("2026-06-10T12:00")) == at("2026-06-10T22:00")
    assert s.next_boundary(at("2026-06-10T22:00")) == at("2026-06-11T06:00")


def test_daylight_saving_nights_keep_wall_clock_edges() -> None:
    s = schedule(daily("PT22H", "PT8H"))
    # spring forward (29 March 2026, 02:00 -> 03:00): 22:00 CET to 06:00 CEST = 7 real hours
    assert not s.inside(utc("2026-03-28T20:59"))
    assert s.inside(utc("2026-03-28T21:00"))
    assert s.inside(utc("2026-03-29T03:59"))
    assert not s.inside(utc("2026-03-29T04:00"))
    # fall back (25 October 2026, 03:00 -> 02:00): 22:00 CEST to 06:00 CET = 9 real hours
    assert s.inside(utc("2026-10-24T20:00"))
    assert s.inside(utc("2026-10-25T04:59"))
    assert not s.inside(utc("2026-10-25T05:00"))


def test_a_start_in_the_spring_gap_opens_at_the_change() -> None:
    s = schedule(daily("PT2H30M", "PT1H"))
    # 02:30 does not exist on 29 March: the window keeps the wall times that exist, 03:00-03:30
    assert not s.inside(utc("2026-03-29T00:59:59"))
    assert s.inside(utc("2026-03-29T01:00"))  # 03:00 CEST, the instant of the change
    assert not s.inside(utc("2026-03-29T01:30"))  # 03:30 CEST
    # an ordinary day: 02:30 CEST = 00:30 UTC
    assert s.inside(utc("2026-03-30T00:30"))
    # the repeated hour in autumn: 02:30 means its first occurrence (+02:00)
    assert s.inside(utc("2026-10-25T00:30"))


def test_day_rules_apply_to_the_opening_day() -> None:
    s = schedule(daily("PT22H", "PT4H", day=["Mon"]))
    monday = "2026-06-08"
    assert s.inside(at(f"{monday}T23:00"))
    assert s.inside(at("2026-06-09T01:00"))  # Tuesday night, opened Monday
    assert not s.inside(at("2026-06-09T23:00"))  # Tuesday's own window does not exist
    assert s.next_boundary(at("2026-06-09T12:00")) == at("2026-06-15T22:00")


def test_week_ranges_and_wrap_over_new_year() -> None:
    s = schedule(daily("PT8H", "PT1H", week=["w34-w46"]))
    assert not s.inside(at("2026-08-10T08:30"))  # ISO week 33
    assert s.inside(at("2026-08-17T08:30"))  # week 34
    assert s.inside(at("2026-11-15T08:30"))  # week 46 (Sunday)
    assert not s.inside(at("2026-11-16T08:30"))  # week 47
    assert s.next_boundary(at("2026-11-16T09:00")) == at("2027-08-23T08:00")
    wrap = schedule(daily("PT8H", "PT1H", week=["w52-w1"]))
    assert wrap.inside(at("2026-12-28T08:30")) and wrap.inside(at("2027-01-06T08:30"))
    assert not wrap.inside(at("2027-01-12T08:30"))


def test_one_off_windows() -> None:
    s = schedule({"recurrence": "None", "start": "2026-06-10T14:00:00+02:00", "duration": "PT1H"})
    assert not s.inside(utc("2026-06-10T11:59"))
    assert s.inside(utc("2026-06-10T12:00")) and not s.inside(utc("2026-06-10T13:00"))
    open_ended = schedule({"recurrence": "None", "start": "2026-06-10T14:00:00"})  # local time
    assert open_ended.inside(utc("2030-01-01T00:00")) and not open_ended.inside(
        utc("2026-06-10T11:59")
    )
    assert open_ended.next_boundary(utc("2026-06-11T00:00")) is None


@pytest.mark.parametrize(
    ("entry", "path"),
    [
        ({"recurrence": "Daily", "start": "PT8H"}, "$.time.times[0].duration"),
        ({"recurrence": "Daily", "start": "PT25H", "duration": "PT1H"}, "$.time.times[0].start"),
        (
            {"recurrence": "None", "start": "2026-01-01T00:00Z", "occurence": ["Mon"]},
            "$.time.times[0].occurence",
        ),
        (
            {"recurrence": "Weekly", "start": "PT1H", "duration": "PT1H"},
            "$.time.times[0].recurrence",
        ),
        (
            {"start": "PT1H", "duration": "PT1H", "occurence": {"week": ["w99"]}},
            "$.time.times[0].occurence.week[0]",
        ),
        (
            {"start": "PT1H", "duration": "PT1H", "occurence": {"day": ["Funday"]}},
            "$.time.times[0].occurence.day[0]",
        ),
    ],
)
def test_bad_entries_are_reported_with_paths(entry: dict[str, Any], path: str) -> None:
    report = Report()
    parse_time("t", Fields({"times": [entry]}, "$.time", report))
    assert [p.path for p in report.problems] == [path]


RUNNING = "vehicle.engines.running"


def time_monitor(catalog: FakeCatalog, **extra: Any) -> Any:
    body = {"timeZone": "Europe/Paris", "times": [daily("PT14H30M", "PT1H")], **extra}
    return make_monitor([{"name": "t", "time": body}], "t", catalog)


def test_time_trigger_needs_the_vehicle_in_use(
    rig: Callable[..., Rig], catalog: FakeCatalog
) -> None:
    r = rig(time_monitor(catalog))  # T0 is 14:00 in Paris; window 14:30-15:30
    r.set(RUNNING, True, T0, max_age=None)
    assert r.advance(T0 + 1799) == []
    fired = r.advance(T0 + 1800)
    assert [e.event_date.timestamp() for e in fired] == [T0 + 1800]  # at the window's opening
    assert r.set(RUNNING, False, T0 + 2000, max_age=None) == []
    assert len(r.set(RUNNING, True, T0 + 2100, max_age=None)) == 1  # re-armed by "not in use"
    assert r.engine.runtime("m1").fired is True
    r.advance(T0 + 5401)  # 15:30: the window closes, which re-arms
    assert r.engine.runtime("m1").fired is False
    next_day = r.advance(T0 + 90_000)
    assert [e.event_date.timestamp() for e in next_day] == [T0 + 86_400 + 1800]


def test_unknown_in_use_is_unknown_inside_the_window(
    rig: Callable[..., Rig], catalog: FakeCatalog
) -> None:
    r = rig(time_monitor(catalog))
    assert r.advance(T0 + 2000) == []
    assert r.engine.runtime("m1").truth is None


def test_plain_schedule_without_in_use(rig: Callable[..., Rig], catalog: FakeCatalog) -> None:
    r = rig(time_monitor(catalog, requireInUse=False))
    fired = r.advance(T0 + 86_400 + 1800)
    assert [e.event_date.timestamp() - T0 for e in fired] == [1800.0, 86_400 + 1800.0]


def test_one_off_window_opens_and_closes_on_deadlines(
    rig: Callable[..., Rig], catalog: FakeCatalog
) -> None:
    once = {"recurrence": "None", "start": "2026-06-10T14:10:00+02:00", "duration": "PT5M"}
    body = {"timeZone": "Europe/Paris", "times": [once], "requireInUse": False}
    r = rig(make_monitor([{"name": "t", "time": body}], "t", catalog))
    fired = r.advance(T0 + 3600)
    assert [e.event_date.timestamp() - T0 for e in fired] == [600.0]  # 14:10 Paris
    assert r.engine.runtime("m1").truth is False  # closed at 14:15
    assert r.engine.next_deadline() is None  # nothing left to wait for


def test_in_use_falls_back_to_ignition() -> None:
    from agent.model import SignalInfo, SignalKind
    from agent.monitors.signals import resolve_in_use

    ignition = FakeCatalog({"vehicle.ignition": SignalInfo("vehicle.ignition", SignalKind.BOOLEAN)})
    assert resolve_in_use(ignition) == "vehicle.ignition"
    assert resolve_in_use(FakeCatalog({})) == "vehicle.engines.running"
    assert resolve_in_use(ignition, "EngineData.EngineRunning") == "EngineData.EngineRunning"
