"""A scenario: one simulated drive, read from TOML or JSON and validated once.

Format (documented with examples in ``docs/scenarios/README.md``)::

    name = "Night depot exit"
    start = 2026-11-23T22:50:00        # local time (TOML datetime or ISO text), or a time of
                                        # day (22:50:00): its latest occurrence before now
    timezone = "Europe/Paris"
    seed = 7
    duration = 240                      # seconds; default: end of route/timelines + 10 s
    odometer_km = 12345.6               # optional: drives vehicle.odometer from the route

    [gps]                               # optional
    rate_hz = 1                         # 1..10 epochs per second
    talker = "GN"
    outages = [[100, 110]]              # no fix from 100 s to 110 s

    [[route]]                           # waypoints; the first is where the drive starts
    lat = 48.8566
    lon = 2.3522
    dwell = 30                          # seconds stopped here before leaving
    speed_kmh = 30                      # speed on the leg that leaves this waypoint

    [signals]                           # data names (signal map) or DBC Message.Signal keys
    "vehicle.engines.thermic.oil.temp" = { points = [[0, 60], [120, 135]] }
    "vehicle.powertrain.status" = { points = [[0, "NotRunning"], [20, "Running"]] }
    "environment.air.temp" = 8.5

Times inside a drive are seconds after ``start``: a number, or text ``"M:SS"`` / ``"H:MM:SS"``.
"""

from __future__ import annotations

import itertools
import json
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from agent.errors import ConfigError, Problem
from agent.simulate.route import Route, Waypoint

ScenarioValue = float | int | str | bool
_TOP_KEYS = {"name", "description", "start", "timezone", "seed", "duration", "odometer_km"}
_TOP_KEYS |= {"gps", "route", "signals", "bus"}
_GPS_KEYS = {"rate_hz", "talker", "hdop", "satellites", "altitude", "noise_m", "outages"}
_WAYPOINT_KEYS = {"lat", "lon", "speed_kmh", "dwell", "name"}
_TIMELINE_KEYS = {"points", "interpolate", "noise"}


@dataclass(frozen=True, slots=True)
class Timeline:
    """A signal's values over the drive: held before the first and after the last point."""

    name: str
    points: tuple[tuple[float, ScenarioValue], ...]
    interpolate: str = "linear"  # "linear" (numbers only) or "step"
    noise: float = 0.0  # standard deviation added to numbers, from the seeded generator

    def at(self, t: float) -> ScenarioValue:
        points = self.points
        if t <= points[0][0]:
            return points[0][1]
        for (t0, v0), (t1, v1) in itertools.pairwise(points):
            if t < t1:
                if self.interpolate == "step" or not _is_number(v0) or not _is_number(v1):
                    return v0
                return float(v0) + (float(v1) - float(v0)) * (t - t0) / (t1 - t0)
            if t == t1:
                return v1
        return points[-1][1]


@dataclass(frozen=True, slots=True)
class GpsPlan:
    rate_hz: float = 1.0
    talker: str = "GP"
    hdop: float = 0.9
    satellites: int = 9
    altitude: float = 35.0
    noise_m: float = 0.0  # position jitter (standard deviation, metres)
    outages: tuple[tuple[float, float], ...] = ()

    def has_fix(self, t: float) -> bool:
        return not any(start <= t < end for start, end in self.outages)


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    start: datetime  # timezone-aware
    timezone: str
    duration: float
    seed: int = 0
    description: str = ""
    route: tuple[Waypoint, ...] = ()
    signals: tuple[Timeline, ...] = ()
    gps: GpsPlan = field(default_factory=GpsPlan)
    odometer_km: float | None = None
    bus: str = "can0"

    @property
    def start_epoch(self) -> float:
        return self.start.timestamp()

    @property
    def start_utc(self) -> datetime:
        return self.start.astimezone(UTC)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def parse_offset(value: object) -> float | None:
    """Seconds after start from a number or ``"S"``, ``"M:SS"``, ``"H:MM:SS"`` text; None if bad."""
    if _is_number(value):
        seconds = float(value)  # type: ignore[arg-type]
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    if not isinstance(value, str):
        return None
    total = 0.0
    try:
        for part in value.strip().split(":"):
            total = total * 60 + float(part)
    except ValueError:
        return None
    return total if math.isfinite(total) and total >= 0 and value.count(":") <= 2 else None


class _Reader:
    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def bad(self, path: str, message: str) -> None:
        self.problems.append(Problem(path, message))

    def unknown(self, table: Mapping[str, Any], allowed: set[str], where: str) -> None:
        for key in sorted(set(table) - allowed):
            self.bad(f"{where}.{key}", "unknown key")

    def number(self, table: Mapping[str, Any], key: str, where: str, default: float) -> float:
        value = table.get(key, default)
        if not _is_number(value) or not math.isfinite(float(value)):
            self.bad(f"{where}.{key}", f"expected a number, got {value!r}")
            return default
        return float(value)

    def offset(self, value: object, where: str) -> float:
        found = parse_offset(value)
        if found is None:
            self.bad(where, f"expected seconds (>= 0) or 'M:SS', got {value!r}")
            return 0.0
        return found


def latest_occurrence(clock: time, zone: ZoneInfo, now: float) -> datetime:
    """The latest moment at or before ``now`` whose local time in ``zone`` is ``clock``.

    A drive written as "22:58" then always lies in the last 24 hours: tests and the demo that run
    real processes on the wall clock never depend on the day they run (issue 11).
    """
    today = datetime.fromtimestamp(now, zone).date()
    for back in range(3):  # a day lost to a DST change never hides more than one day
        moment = datetime.combine(today - timedelta(days=back), clock, tzinfo=zone)
        if moment.timestamp() <= now:
            return moment
    return datetime.combine(today - timedelta(days=3), clock, tzinfo=zone)


def _start_value(r: _Reader, value: object) -> datetime | time | None:
    if isinstance(value, str):
        for kind in (datetime, time):
            try:
                return kind.fromisoformat(value)
            except ValueError:
                continue
        r.bad("$.start", f"not an ISO date-time nor a time of day: {value!r}")
        return None
    if isinstance(value, datetime | time):
        return value
    r.bad("$.start", "expected a local date-time such as 2026-11-23T22:50:00, or 22:50:00")
    return None


def _read_start(r: _Reader, raw: Mapping[str, Any], now: float | None) -> tuple[datetime, str]:
    zone_name = raw.get("timezone", "UTC")
    zone: ZoneInfo | None = None
    try:
        zone = ZoneInfo(str(zone_name))
    except (ZoneInfoNotFoundError, ValueError):
        r.bad("$.timezone", f"unknown time zone {zone_name!r}")
    fallback = datetime(2026, 1, 5, 8, tzinfo=UTC)
    value = _start_value(r, raw.get("start", "2026-01-05T08:00:00"))
    if isinstance(value, time):
        if now is None:
            r.bad("$.start", "a time-of-day start needs the current time (none was given)")
            return fallback, str(zone_name)
        return latest_occurrence(value.replace(tzinfo=None), zone or ZoneInfo("UTC"), now), str(
            zone_name
        )
    if value is None:
        return fallback, str(zone_name)
    if value.tzinfo is None:
        value = value.replace(tzinfo=zone or UTC)
    return value, str(zone_name)


def _read_gps(r: _Reader, raw: object) -> GpsPlan:
    if raw is None:
        return GpsPlan()
    if not isinstance(raw, dict):
        r.bad("$.gps", "expected a table")
        return GpsPlan()
    r.unknown(raw, _GPS_KEYS, "$.gps")
    rate = r.number(raw, "rate_hz", "$.gps", 1.0)
    if not 1.0 <= rate <= 10.0:
        r.bad("$.gps.rate_hz", "must be between 1 and 10")
        rate = 1.0
    talker = str(raw.get("talker", "GP"))
    if len(talker) != 2 or not talker.isalpha() or not talker.isupper():
        r.bad("$.gps.talker", f"expected two capital letters (GP, GN...), got {talker!r}")
        talker = "GP"
    outages: list[tuple[float, float]] = []
    for i, item in enumerate(raw.get("outages", [])):
        if not isinstance(item, list) or len(item) != 2:
            r.bad(f"$.gps.outages[{i}]", "expected [from, to]")
            continue
        outages.append(
            (
                r.offset(item[0], f"$.gps.outages[{i}][0]"),
                r.offset(item[1], f"$.gps.outages[{i}][1]"),
            )
        )
    return GpsPlan(
        rate_hz=rate,
        talker=talker,
        hdop=r.number(raw, "hdop", "$.gps", 0.9),
        satellites=int(r.number(raw, "satellites", "$.gps", 9)),
        altitude=r.number(raw, "altitude", "$.gps", 35.0),
        noise_m=r.number(raw, "noise_m", "$.gps", 0.0),
        outages=tuple(outages),
    )


def _read_route(r: _Reader, raw: object) -> tuple[Waypoint, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        r.bad("$.route", "expected an array of tables ([[route]])")
        return ()
    points: list[Waypoint] = []
    for i, item in enumerate(raw):
        where = f"$.route[{i}]"
        if not isinstance(item, dict):
            r.bad(where, "expected a table")
            continue
        r.unknown(item, _WAYPOINT_KEYS, where)
        lat = r.number(item, "lat", where, math.nan)
        lon = r.number(item, "lon", where, math.nan)
        if not -90 <= lat <= 90 or not -180 <= lon <= 180:
            r.bad(where, "lat/lon required, within ±90/±180 degrees")
        speed = r.number(item, "speed_kmh", where, 0.0)
        if i < len(raw) - 1 and speed <= 0:
            r.bad(f"{where}.speed_kmh", "needed (> 0) to drive to the next waypoint")
        dwell = r.offset(item.get("dwell", 0), f"{where}.dwell")
        points.append(Waypoint(lat, lon, speed, dwell, str(item.get("name", ""))))
    return tuple(points)


def _read_timeline(r: _Reader, name: str, raw: object) -> Timeline | None:
    where = f'$.signals."{name}"'
    if isinstance(raw, str | int | float | bool):
        return Timeline(name, ((0.0, raw),), "step")
    if not isinstance(raw, dict):
        r.bad(where, "expected a value or a table { points = [[t, value], ...] }")
        return None
    r.unknown(raw, _TIMELINE_KEYS, where)
    points: list[tuple[float, ScenarioValue]] = []
    for i, item in enumerate(raw.get("points", [])):
        if not isinstance(item, list) or len(item) != 2 or isinstance(item[1], list | dict):
            r.bad(f"{where}.points[{i}]", "expected [time, value]")
            continue
        points.append((r.offset(item[0], f"{where}.points[{i}][0]"), item[1]))
    if not points:
        r.bad(f"{where}.points", "at least one [time, value] point")
        return None
    if any(b[0] < a[0] for a, b in itertools.pairwise(points)):
        r.bad(f"{where}.points", "times must not decrease")
    numeric = all(_is_number(v) for _, v in points)
    interpolate = raw.get("interpolate", "linear" if numeric else "step")
    if interpolate not in ("linear", "step") or (interpolate == "linear" and not numeric):
        r.bad(f"{where}.interpolate", "'linear' (numbers only) or 'step'")
    noise = r.number(raw, "noise", where, 0.0)
    return Timeline(name, tuple(points), str(interpolate), noise)


def _default_duration(route: tuple[Waypoint, ...], signals: tuple[Timeline, ...]) -> float:
    end = Route(route).end_time if route else 0.0
    for timeline in signals:
        end = max(end, timeline.points[-1][0])
    return end + 10.0


def parse_scenario(raw: object, now: float | None = None) -> Scenario:
    """Validate a decoded scenario; raise ConfigError listing every problem.

    ``now`` (epoch seconds) resolves a time-of-day ``start``; nothing here reads the clock.
    """
    r = _Reader()
    if not isinstance(raw, dict):
        raise ConfigError([Problem("$", "a scenario is a table/object")])
    r.unknown(raw, _TOP_KEYS, "$")
    start, zone = _read_start(r, raw, now)
    route = _read_route(r, raw.get("route"))
    signals_raw = raw.get("signals", {})
    timelines: list[Timeline] = []
    if not isinstance(signals_raw, dict):
        r.bad("$.signals", "expected a table of name = value or timeline")
    else:
        for name, item in signals_raw.items():
            timeline = _read_timeline(r, str(name), item)
            if timeline is not None:
                timelines.append(timeline)
    seed = raw.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        r.bad("$.seed", "expected an integer")
        seed = 0
    odometer = raw.get("odometer_km")
    if odometer is not None and not _is_number(odometer):
        r.bad("$.odometer_km", "expected a number")
        odometer = None
    gps = _read_gps(r, raw.get("gps"))
    if r.problems:
        raise ConfigError(r.problems, "scenario: " + "; ".join(map(str, r.problems)))
    duration = raw.get("duration")
    if duration is None:
        duration = _default_duration(route, tuple(timelines))
    elif (parse_offset(duration) or 0) <= 0:
        raise ConfigError([Problem("$.duration", "expected seconds > 0")])
    return Scenario(
        name=str(raw.get("name", "scenario")),
        description=str(raw.get("description", "")),
        start=start,
        timezone=zone,
        duration=float(parse_offset(duration) or 0),
        seed=seed,
        route=route,
        signals=tuple(timelines),
        gps=gps,
        odometer_km=None if odometer is None else float(odometer),
        bus=str(raw.get("bus", "can0")),
    )


def load_scenario(path: Path, now: float | None = None) -> Scenario:
    """Read a ``.toml`` or ``.json`` scenario file (``now`` as for ``parse_scenario``)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([Problem(str(path), f"cannot read: {exc.strerror}")]) from exc
    try:
        raw = json.loads(text) if Path(path).suffix == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError([Problem(str(path), f"not valid TOML/JSON: {exc}")]) from exc
    try:
        return parse_scenario(raw, now)
    except ConfigError as exc:
        raise ConfigError(exc.problems, f"{path}: {exc}") from exc
