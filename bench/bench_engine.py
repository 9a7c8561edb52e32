"""Monitor engine load: frames/s through decode + state + engine, 100 monitors vs none.

Both runs decode exactly the same signals (the decoder uses the names of the 100 monitors in
both), so the ratio isolates what the monitors cost. Two streams:
- drive (the target): every message of the demo DBC at its cycle time, values moving as in a
  drive (the speed changes on every 20 ms frame, oil over minutes, a door every 30 s);
- stress (the worst case): every frame changes a watched value and crosses thresholds, so nearly
  every frame flips triggers and fires events.
Times are CPU time of this process (the machine is shared). Each round runs both streams back to
back (alternating which goes first); the verdict uses the median of the per-round ratios.
Target (issue 4): 100 monitors keep >= 70 % of the throughput.

    .venv/bin/python bench/bench_engine.py [--seconds S] [--stress-frames N] [--rounds R]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cantools
from harness import guard, pick, stage, write_results
from machine import machine  # bench/machine.py: this folder is on sys.path

from agent.can.dbc import DEMO_DBC, demo_buses, load_vehicle
from agent.can.decode import Decoder
from agent.model import Frame
from agent.monitors.engine import Engine, MemoryFiredStore, MemorySequence, SeededIds
from agent.monitors.model import Monitor, parse_monitor
from agent.pipeline import Pipeline

T0 = 1_781_121_480.0
OIL = "vehicle.engines.thermic.oil.temp"
SPEED = "vehicle.kinetic.speed"
DOORS = "vehicle.doorsState.opening"
RUNNING = "vehicle.engines.running"


def _defaults(message: Any, page: int) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for signal in message.signals:
        if signal.multiplexer_ids and page not in signal.multiplexer_ids:
            continue
        low = signal.minimum if signal.minimum is not None else 0
        values[signal.name] = page if signal.is_multiplexer else max(low, 0)
    return values


# signal name -> value at t seconds: a car driving in waves (speed changes on every 20 ms frame),
# oil warming and cooling slowly (a new degree every few seconds), a door every 30 s.
DYNAMICS: dict[str, Any] = {
    "Speed": lambda t: round(60 + 40 * math.sin(t / 10), 2),
    "Moving": lambda t: 1,
    "EngineSpeed": lambda t: round(1500 + 1000 * math.sin(t / 10)),
    "OilTemp": lambda t: round(100 + 30 * math.sin(t / 60)),
    "EngineRunning": lambda t: 1,
    "PowertrainStatus": lambda t: 2,
    "IgnitionOn": lambda t: 1,
    "DoorFrontLeft": lambda t: int(t % 30 < 2),
    "AnyDoorOpen": lambda t: int(t % 30 < 2),
    "FuelLevel": lambda t: round(60 - t / 100, 1),
    "OdometerKm": lambda t: round(48_000 + t * 0.017, 1),
    "OutsideAirTemp": lambda t: round(20 + t / 120) % 40,
    "StateOfCharge": lambda t: round(80 - t / 200, 1),
}


def drive(seconds: float) -> list[Frame]:
    """Every message of the demo DBC at its cycle time, with the dynamics above."""
    db = cantools.database.load_file(str(DEMO_DBC))
    out: list[Frame] = []
    for message in db.messages:
        period = (message.cycle_time or 100) / 1000
        pages = [0, 1, 2] if message.is_multiplexed() else [0]
        for n in range(int(seconds / period)):
            t = n * period + (message.frame_id % 97) / 1000  # a phase per message
            values = _defaults(message, pages[n % len(pages)])
            for name in values:
                if name in DYNAMICS:
                    values[name] = DYNAMICS[name](t)
                elif name.endswith(("Counter", "_CRC", "Checksum")) or name == "AliveCounter":
                    values[name] = n % 16
            payload = message.encode(values, strict=False)
            frame = Frame(
                T0 + t, message.frame_id, payload, message.is_extended_frame, message.is_fd
            )
            out.append(frame)
    out.sort(key=lambda f: f.timestamp)
    return out


def stress(count: int) -> list[Frame]:
    """The worst case: every frame changes a watched value (oil, speed; doors every 50)."""
    db = cantools.database.load_file(str(DEMO_DBC))
    engine = db.get_message_by_name("EngineData")
    motion = db.get_message_by_name("VehicleMotion")
    doors = db.get_message_by_name("DoorStatus")
    out = []
    for i in range(count):
        t = T0 + i * 0.001
        kind = i % 3
        if kind == 0:
            payload = engine.encode(
                {
                    "EngineSpeed": 800 + (i % 4000),
                    "OilTemp": 60 + (i // 3) % 90,
                    "CoolantTemp": 90,
                    "PowertrainStatus": "RUNNING",
                    "EngineRunning": "RUNNING",
                    "ThrottlePosition": 10,
                    "EngineData_Counter": i % 16,
                    "EngineData_Checksum": 0,
                }
            )
            out.append(Frame(t, engine.frame_id, payload))
        elif kind == 1:
            payload = motion.encode(
                {
                    "Speed": (i // 3) % 130,
                    "Moving": 1,
                    "LongAccel": 0,
                    "VehicleMotion_Counter": i % 16,
                    "VehicleMotion_Checksum": 0,
                }
            )
            out.append(Frame(t, motion.frame_id, payload))
        else:
            door = "OPEN" if (i // 150) % 2 else "CLOSED"
            payload = doors.encode(
                {
                    "DoorFrontLeft": door,
                    "DoorFrontRight": "CLOSED",
                    "DoorRearLeft": "CLOSED",
                    "DoorRearRight": "CLOSED",
                    "Trunk": "CLOSED",
                    "Hood": "CLOSED",
                    "AnyDoorOpen": door,
                    "LockState": "UNLOCKED",
                    "DoorStatus_Counter": i % 16,
                    "DoorStatus_Checksum": 0,
                }
            )
            out.append(Frame(t, doors.frame_id, payload))
    return out


def _definition(i: int, triggers: list[dict[str, Any]], bool_exp: str) -> dict[str, Any]:
    return {
        "id": f"m{i:03d}",
        "label": f"bench {i}",
        "subscribeParam": {"refreshEvent": 60},
        "extendedEventParam": ["vehicle.status"] if i % 10 == 0 else [],
        "triggerParam": {"triggers": triggers, "boolExp": bool_exp},
    }


def _monitor(definition: dict[str, Any], catalog: Any) -> Monitor:
    parsed = parse_monitor(definition, catalog=catalog)
    assert parsed.monitor is not None, parsed.problems
    return parsed.monitor


def _data(name: str, data: str, op: str, *values: str, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"data": data, "op": op, **extra}
    if values:
        body["value"] = list(values)
    return {"name": name, "data": body}


def _zone(i: int) -> dict[str, Any]:
    lat, lon = 48.85 + i * 0.01, 2.35
    if i % 2:
        return {
            "name": "z",
            "zone": {
                "transition": "In",
                "place": {"radiusMeters": 300 + i, "center": {"latitude": lat, "longitude": lon}},
                "marginMeters": 20,
            },
        }
    ring = [[lon, lat], [lon + 0.01, lat], [lon + 0.01, lat + 0.01], [lon, lat + 0.01], [lon, lat]]
    return {
        "name": "z",
        "zone": {"transition": "Out", "place": {"type": "Polygon", "coordinates": [ring]}},
    }


def monitors(catalog: Any) -> list[Monitor]:
    """The 100 monitors of ``definitions``, parsed."""
    return [_monitor(definition, catalog) for definition in definitions()]


def definitions() -> list[dict[str, Any]]:
    """100 monitors, a fleet's usual mix: speed and oil thresholds (some with hysteresis or a
    minimum duration), ranges, rates, doors, fuel, outside air, zones, time windows, and
    combinations with AND/OR/NOT (also the agent's load in ``bench_agent``)."""
    specs: list[tuple[list[dict[str, Any]], str]] = []
    for i in range(25):  # speed thresholds, half of them with hysteresis or a minimum duration
        extra: dict[str, Any] = {"hysteresis": 3} if i % 2 else {"minDurationSeconds": 5}
        specs.append(([_data("fast", SPEED, "greaterThan", str(50 + 3 * i), **extra)], "fast"))
    for i in range(20):  # oil
        if i % 4 == 0:
            specs.append(([_data("rise", OIL, "risesBy", delta=10, withinSeconds=60)], "rise"))
        elif i % 4 == 1:
            specs.append(([_data("oil", OIL, "between", "60", str(90 + i))], "!oil"))
        else:
            specs.append(([_data("hot", OIL, "greaterThan", str(100 + i), hysteresis=5)], "hot"))
    for i in range(10):  # doors, alone or while moving fast
        door = _data(
            "door", DOORS, "onChange" if i % 2 else "equalsTo", *([] if i % 2 else ["Open"])
        )
        fast = _data("fast", SPEED, "greaterThan", str(20 + i))
        specs.append(([door, fast], "door & fast" if i < 5 else "door | fast"))
    for i in range(10):  # fuel, outside air
        if i % 2:
            specs.append(
                ([_data("low", "vehicle.energy.fuel.level", "lowerThan", str(10 + i))], "low")
            )
        else:
            specs.append(
                ([_data("air", "environment.air.temp", "lowerOrEqual", str(i - 5))], "air")
            )
    for i in range(20):  # zones, with the engine running
        specs.append(([_zone(i), _data("run", RUNNING, "equalsTo", "true")], "z & run"))
    for i in range(10):  # time windows, in use
        window = {"recurrence": "Daily", "start": f"PT{i + 8}H", "duration": "PT2H"}
        specs.append(
            ([{"name": "t", "time": {"timeZone": "Europe/Paris", "times": [window]}}], "t")
        )
    for i in range(5):  # combinations
        trig = [
            _data("hot", OIL, "greaterThan", str(110 + i)),
            _data("slow", SPEED, "lowerThan", "30"),
            _data("run", RUNNING, "equalsTo", "true"),
        ]
        specs.append((trig, "(hot & slow) | !run"))
    return [_definition(i, trig, exp) for i, (trig, exp) in enumerate(specs)]


def run(
    stream: list[Frame], vehicle: Any, names: set[str], active: list[Monitor]
) -> tuple[float, int]:
    engine = Engine(
        "BENCH", None, vehicle.catalog, MemoryFiredStore(), MemorySequence(), event_ids=SeededIds()
    )
    for monitor in active:
        engine.set_monitor(monitor)
    decoder = Decoder(vehicle)
    decoder.use(names)
    step = Pipeline(decoder, engine).step  # the daemon's and replay's step
    events = 0
    start = time.process_time()
    for frame in stream:
        events += len(step(frame, frame.timestamp))
    elapsed = time.process_time() - start
    return len(stream) / elapsed, events


def compare(
    stream: list[Frame], vehicle: Any, names: set[str], active: list[Monitor], rounds: int
) -> tuple[float, float, float, int]:
    """Best throughput of each, and the median of the per-round ratios (each round runs both,
    back to back, in alternating order, so a change of machine load hits both alike)."""
    best_none = best_full = 0.0
    ratios = []
    events = 0
    for round_ in range(rounds):
        if round_ % 2:
            full, events = run(stream, vehicle, names, active)
            none = run(stream, vehicle, names, [])[0]
        else:
            none = run(stream, vehicle, names, [])[0]
            full, events = run(stream, vehicle, names, active)
        best_none, best_full = max(best_none, none), max(best_full, full)
        ratios.append(full / none)
    return best_none, best_full, statistics.median(ratios), events


def main() -> int:
    guard("bench_engine")
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=pick(120.0, 5.0), help="drive length")
    parser.add_argument("--stress-frames", type=int, default=pick(6_000, 300))
    parser.add_argument("--rounds", type=int, default=pick(21, 1))
    args = parser.parse_args()
    with stage("engine", 25):
        measure(args)
    return 0


def measure(args: argparse.Namespace) -> None:
    vehicle = load_vehicle(demo_buses())
    active = monitors(vehicle.catalog)
    probe = Engine("BENCH", None, vehicle.catalog, MemoryFiredStore(), MemorySequence())
    for monitor in active:
        probe.set_monitor(monitor)
    names = probe.wanted_names()
    print(f"machine: {machine()}")
    count, rounds = len(active), args.rounds
    print(f"{count} monitors, {len(names)} names decoded in both runs, best of {rounds} rounds")
    ratio = 0.0
    for title, stream in (("drive", drive(args.seconds)), ("stress", stress(args.stress_frames))):
        none, full, median, events = compare(stream, vehicle, names, active, args.rounds)
        ratio = median if title == "drive" else ratio
        print(f"{title}: {len(stream)} frames")
        print(f"  decode + state + engine, no monitors:   {none:10.0f} frames/s (best)")
        print(f"  decode + state + engine, 100 monitors:  {full:10.0f} frames/s (best)")
        print(f"  events with 100 monitors: {events}")
        print(f"  kept: {full / none:.1%} best vs best, {median:.1%} median of paired rounds")
    verdict = "OK" if ratio >= 0.7 else "BELOW TARGET"
    print(f"target (drive, median of paired rounds): >= 70% kept -> {ratio:.1%} {verdict}")
    write_results("engine", {"monitors_100_throughput_ratio": ratio})


if __name__ == "__main__":
    sys.exit(main())
