"""Random monitors and random drives for the differential test, and running both engines.

A case is plain JSON (``tests/data/monitors/differential/*.json`` keeps the shrunk failures):
monitor definitions as the API takes them, and inputs with integer-microsecond times.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import strategies as st

from agent.model import SignalInfo, SignalKind
from agent.monitors.model import Monitor
from tests.agent.monitors.monitor_support import (
    FakeCatalog,
    Rig,
    default_infos,
    fix_at,
    make_monitor,
)
from tests.agent.monitors.reference import US, Fired, Input, Position, Reading, Reference, us

OIL = "vehicle.engines.thermic.oil.temp"
FUEL = "vehicle.energy.fuel.level"
RUNNING = "vehicle.engines.running"
CHARGING = "vehicle.energy.charging.status"
SPEED = "vehicle.kinetic.speed"  # from CAN here (the catalog has it)
CENTER = (48.7466, 2.3518)
CASES = Path(__file__).resolve().parents[2] / "data" / "monitors" / "differential"


def _utc(text: str) -> int:
    return us(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp())


# (time zone, an instant worth driving through): clocks changing, local midnight, a plain day
MOMENTS = [
    ("Europe/Paris", _utc("2026-03-29T01:00:00")),  # 02:00 CET -> 03:00 CEST
    ("Europe/Paris", _utc("2026-10-25T01:00:00")),  # 03:00 CEST -> 02:00 CET
    ("America/New_York", _utc("2026-03-08T07:00:00")),
    ("America/New_York", _utc("2026-11-01T06:00:00")),
    ("Australia/Lord_Howe", _utc("2026-04-04T15:00:00")),  # half an hour back
    ("Europe/Paris", _utc("2026-06-10T22:00:00")),  # midnight in Paris
    ("Asia/Kolkata", _utc("2026-06-10T08:30:00")),  # 14:00, no DST
]
LENGTH_MS = 30_000
KINDS = ["threshold", "threshold", "threshold", "discrete", "rate", "zone", "time"]


# -- monitors ----------------------------------------------------------------------------------

COMPARE_OPS = [
    "greaterThan",
    "greaterOrEqual",
    "lowerThan",
    "lowerOrEqual",
    "between",
    "equalsTo",
    "notEqualTo",
    "includedIn",
]
NUMBERS = st.sampled_from(["97", "98.5", "99", "100", "101", "102"])
DURATIONS = st.sampled_from([0, 0, 0, 0.25, 1, 2.35, 3.55])


@st.composite
def threshold(draw: st.DrawFn, name: str) -> dict[str, Any]:
    data = draw(st.sampled_from([OIL, FUEL, SPEED]))
    op = draw(st.sampled_from(COMPARE_OPS))
    body: dict[str, Any] = {"data": data, "op": op}
    if op == "between":
        low, high = sorted(draw(st.lists(NUMBERS, min_size=2, max_size=2, unique=True)), key=float)
        body["value"] = [low, high]
    elif op == "includedIn":
        body["value"] = draw(st.lists(NUMBERS, min_size=1, max_size=3, unique=True))
    else:
        body["value"] = [draw(NUMBERS)]
    if op not in ("equalsTo", "notEqualTo", "includedIn"):
        body["hysteresis"] = draw(st.sampled_from([0, 0, 1, 2.5]))
    body["minDurationSeconds"] = draw(DURATIONS)
    return {"name": name, "data": body}


@st.composite
def discrete(draw: st.DrawFn, name: str) -> dict[str, Any]:
    if draw(st.booleans()):
        body = {
            "data": RUNNING,
            "op": "equalsTo",
            "value": [draw(st.sampled_from(["true", "false"]))],
        }
    else:
        op = draw(st.sampled_from(["equalsTo", "notEqualTo", "includedIn", "onChange"]))
        body = {"data": CHARGING, "op": op}
        if op != "onChange":
            count = 2 if op == "includedIn" else 1
            body["value"] = draw(
                st.lists(st.sampled_from(["InProgress", "Stopped", "Disconnected"]),
                         min_size=count, max_size=count, unique=True)
            )  # fmt: skip
    if body["op"] != "onChange":
        body["minDurationSeconds"] = draw(DURATIONS)
    return {"name": name, "data": body}


@st.composite
def rate(draw: st.DrawFn, name: str) -> dict[str, Any]:
    body = {
        "data": draw(st.sampled_from([OIL, FUEL])),
        "op": draw(st.sampled_from(["risesBy", "fallsBy"])),
        "delta": draw(st.sampled_from([1, 2.5])),
        "withinSeconds": draw(st.sampled_from([0.5, 1.5, 3.55])),
    }
    return {"name": name, "data": body}


@st.composite
def zone(draw: st.DrawFn, name: str) -> dict[str, Any]:
    body = {
        "transition": draw(st.sampled_from(["In", "Out"])),
        "place": {
            "radiusMeters": draw(st.sampled_from([100, 150])),
            "center": {"latitude": CENTER[0], "longitude": CENTER[1]},
        },
        "marginMeters": draw(st.sampled_from([0, 10, 30])),
        "minDwellSeconds": draw(DURATIONS),
        "maxFixAgeSeconds": draw(st.sampled_from([1.5, 2.5, 10])),
    }
    return {"name": name, "zone": body}


def _iso(seconds: int) -> str:
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"PT{h}H{m}M{s}S"


@st.composite
def window(draw: st.DrawFn, name: str, zone_name: str, start: int) -> dict[str, Any]:
    """A daily window opening near the drive, on its local wall clock (perhaps in a DST gap or
    overlap: the wall time of an instant near the drive, moved by a few seconds)."""
    tz = ZoneInfo(draw(st.sampled_from([zone_name, zone_name, "UTC"])))
    near = start + draw(st.integers(-5_000, LENGTH_MS + 5_000)) * 1000
    wall = datetime.fromtimestamp(near / US, tz).replace(tzinfo=None)
    wall += timedelta(seconds=draw(st.sampled_from([0, 0, 5, -5, 1800, 3600])))
    begin = wall.hour * 3600 + wall.minute * 60 + wall.second
    length = draw(st.sampled_from([3, 10, 20, 3600, 8 * 3600, 86_399]))
    body = {
        "timeZone": str(tz.key),
        "times": [{"recurrence": "Daily", "start": _iso(begin), "duration": _iso(length)}],
        "requireInUse": draw(st.booleans()),
    }
    return {"name": name, "time": body}


def expression(draw: st.DrawFn, names: list[str]) -> str:
    """Each name once, with random ``&``, ``|``, ``!`` and parentheses (never constant)."""
    parts = [("!" if draw(st.booleans()) and draw(st.booleans()) else "") + n for n in names]
    while len(parts) > 1:
        i = draw(st.integers(0, len(parts) - 2))
        op = draw(st.sampled_from(["&", "&", "|"]))
        joined = f"{parts[i]} {op} {parts[i + 1]}"
        parts[i : i + 2] = [f"({joined})" if draw(st.booleans()) else joined]
    return parts[0]


@st.composite
def monitor_bodies(draw: st.DrawFn, zone_name: str, start: int) -> list[dict[str, Any]]:
    bodies = []
    for index in range(draw(st.integers(1, 3))):
        triggers = []
        for k in range(draw(st.sampled_from([1, 2, 2, 3]))):
            kind = draw(st.sampled_from(KINDS))
            name = f"{kind[0]}{k}"
            if kind == "time":
                triggers.append(draw(window(name, zone_name, start)))
            else:
                maker = {"threshold": threshold, "discrete": discrete, "rate": rate, "zone": zone}
                triggers.append(draw(maker[kind](name)))
        body: dict[str, Any] = {
            "id": f"m{index}",
            "triggerParam": {
                "triggers": triggers,
                "boolExp": expression(draw, [t["name"] for t in triggers]),
            },
        }
        refresh = draw(st.sampled_from([None, None, 1, 2, 7]))
        if refresh is not None:
            body["subscribeParam"] = {"refreshEvent": refresh}
        bodies.append(body)
    return bodies


# -- drives ------------------------------------------------------------------------------------

VALUES: dict[str, list[Any]] = {
    OIL: [96.0, 98.5, 99.0, 99.5, 100.0, 101.0, 102.0, 104.0],
    FUEL: [96.0, 97.0, 98.5, 99.0, 100.0, 100.5, 102.0, 103.5],
    SPEED: [96.0, 98.0, 99.0, 101.0, 102.0, 104.0],
    RUNNING: [True, False],
    CHARGING: ["InProgress", "Stopped", "Disconnected"],
}


@st.composite
def signal(draw: st.DrawFn, name: str, start: int) -> list[dict[str, Any]]:
    """Frames at a cycle time, now and then late (stale), values held or jumping."""
    cycle = draw(st.sampled_from([20, 50, 100, 250, 500]))
    max_age = draw(st.sampled_from([3 * cycle, 3 * cycle, None]))
    t = start + draw(st.integers(0, 3000)) * 1000
    frames = []
    value = draw(st.sampled_from(VALUES[name]))
    for _ in range(draw(st.integers(0, 40))):
        if draw(st.integers(0, 7)) == 0:  # values held a while: durations can complete
            value = draw(st.sampled_from(VALUES[name]))
        frames.append({"t": t, "name": name, "value": value, "maxAge": max_age and max_age * 1000})
        late = draw(st.sampled_from([0, 0, 0, 1, cycle, 2 * cycle, 3 * cycle, 3000]))
        t += (cycle + late) * 1000
    return frames


def destination(lat: float, lon: float, distance: float, bearing: float) -> tuple[float, float]:
    d = distance / 6_371_008.8
    p1, l1, b = math.radians(lat), math.radians(lon), math.radians(bearing)
    p2 = math.asin(math.sin(p1) * math.cos(d) + math.cos(p1) * math.sin(d) * math.cos(b))
    l2 = l1 + math.atan2(
        math.sin(b) * math.sin(d) * math.cos(p1), math.cos(d) - math.sin(p1) * math.sin(p2)
    )
    return math.degrees(p2), math.degrees(l2)


@st.composite
def fixes(draw: st.DrawFn, start: int) -> list[dict[str, Any]]:
    out = []
    t = start + draw(st.integers(0, 2000)) * 1000
    for _ in range(draw(st.integers(0, 25))):
        distance = draw(st.floats(40, 200, allow_nan=False))
        lat, lon = destination(*CENTER, distance, draw(st.floats(0, 359)))
        out.append({"t": t, "latitude": lat, "longitude": lon})
        t += draw(st.sampled_from([1000, 1000, 500, 2000, 3550])) * 1000
    return out


@st.composite
def cases(draw: st.DrawFn) -> dict[str, Any]:
    zone_name, moment = draw(st.sampled_from(MOMENTS))
    start = moment - draw(st.integers(0, LENGTH_MS)) * 1000
    inputs: list[dict[str, Any]] = []
    for name in VALUES:
        if draw(st.integers(0, 3)):
            inputs += draw(signal(name, start))
    inputs += draw(fixes(start))
    inputs.sort(key=lambda i: i["t"])  # stable: frames of one instant keep their order
    end = start + LENGTH_MS * 1000
    inputs = [i for i in inputs if i["t"] <= end]
    return {"start": start, "end": end, "monitors": draw(monitor_bodies(zone_name, start)),
            "inputs": inputs}  # fmt: skip


# -- running both ------------------------------------------------------------------------------


def catalog() -> FakeCatalog:
    infos = default_infos()
    infos[SPEED] = SignalInfo(SPEED, SignalKind.NUMBER, unit="km/h")
    return FakeCatalog(infos)


def parse(case: dict[str, Any], catalog: FakeCatalog) -> list[Monitor]:
    return [
        make_monitor(b["triggerParam"]["triggers"], b["triggerParam"]["boolExp"], catalog,
                     monitor_id=b["id"], **{k: v for k, v in b.items() if k == "subscribeParam"})
        for b in case["monitors"]
    ]  # fmt: skip


def inputs_of(case: dict[str, Any]) -> list[Input]:
    out: list[Input] = []
    for item in case["inputs"]:
        if "name" in item:
            out.append(Reading(item["t"], item["name"], item["value"], item["maxAge"]))
        else:
            out.append(Position(item["t"], item["latitude"], item["longitude"]))
    return out


def reference_events(case: dict[str, Any]) -> list[Fired]:
    engine = Reference(parse(case, catalog()), RUNNING)
    return engine.run(inputs_of(case), case["start"], case["end"])


def production_events(case: dict[str, Any]) -> list[Fired]:
    vehicle = catalog()
    rig = Rig(vehicle)
    rig.clock = case["start"] / US
    for monitor in parse(case, vehicle):
        rig.add(monitor)
    for item in inputs_of(case):
        if isinstance(item, Reading):
            age = None if item.max_age is None else item.max_age / US
            rig.set(item.name, item.value, item.t / US, max_age=age)
        else:
            rig.fix(fix_at(item.latitude, item.longitude, item.t / US))
    rig.advance(case["end"] / US)
    return [
        Fired(
            e.monitor_id,
            us(e.event_date.timestamp()),
            e.refresh,
            tuple((v.data, v.value, v.previous) for v in e.values),
        )
        for e in rig.events
    ]


def in_ms(events: list[Fired]) -> list[tuple[str, int, bool, tuple[Any, ...]]]:
    return [(e.monitor_id, round(e.t / 1000), e.refresh, e.values) for e in events]


def dump(case: dict[str, Any]) -> str:
    return json.dumps(case, indent=1)
