"""CAN ingest benchmark: frames already in memory -> vehicle state.

The stream: a real production DBC from opendbc (Ford/Lincoln powertrain bus, which carries
GenMsgCycleTime for 150 messages), every cyclic message at its own rate, a two-minute drive
(standstill, acceleration, cruise, braking, standstill) driving the analog signals, state
signals flipping now and then, and rolling counters and checksums ticking in every frame that
has them, so most payloads repeat except for those bits.

Compared in the same run, on the same frames:
- plain: ``db.decode_message(id, data)`` for every frame whose id carries a signal in use;
- edgemon: ``Decoder.feed(frame, state)`` (skips, masked-payload compare, decode, state update).

Timings are CPU time of this process (``time.process_time``), best of N interleaved runs, so
other load on the machine disturbs them less.

Usage: .venv/bin/python bench/bench_ingest.py [--seconds 120] [--repeat 7]
"""

from __future__ import annotations

import argparse
import math
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import opendbc
from cantools.database.can import Database, Message, Signal
from harness import guard, pick, stage, write_results
from machine import machine  # bench/machine.py: this folder is on sys.path

from agent.can.dbc import BusSpec, Vehicle, load_vehicle
from agent.can.decode import Decoder, is_rolling_name
from agent.model import Frame
from agent.state import VehicleState

DBC = Path(opendbc.__file__).resolve().parent / "dbc" / "ford_lincoln_base_pt.dbc"

# What monitors, extensions and status would use on such a car: speed, rpm, temperatures,
# fuel, gear, ignition, odometer, wheel speed, drive mode, charging, brake lamp, AWD range.
IN_USE = [
    "EngVehicleSpThrottle2.Veh_V_ActlEng",
    "EngVehicleSpThrottle.EngAout_N_Actl",
    "EngineData_6.EngOil_Te_Actl",
    "EngineData_6.EngClnt_Te_Actl",
    "Powertrain_Data_4.FuelLvl_Pc_DsplyEng",
    "Powertrain_Data_4.FuelRange_L_DsplyEng",
    "PowertrainData_10.GearPos_D_Actl",
    "PowertrainData_12.PtIgnSwtch_D_Stat",
    "EngineData_7.OdoCount",
    "BrakeSysFeatures.Veh_V_ActlBrk",
    "WheelSpeed.WhlFl_W_Meas",
    "SelectDriveModeData.SelDrvMde_D_Stat",
    "Cluster_HEV_Data1_FD1.ChrgStat_D_Dsply",
    "BrakeSysFeatures_2.BrkLamp_B_Rq",
    "Driveline_Data_1.AwdRnge_D_Actl",
]


def drive_speed(t: float) -> float:
    """Normalised vehicle speed (0..1) along a 120 s urban cycle."""
    t %= 120.0
    if t < 20:
        return 0.0
    if t < 35:
        return 0.5 * (t - 20) / 15
    if t < 80:
        return 0.5 + 0.03 * math.sin(t / 4.0)
    if t < 90:
        return 0.5 - 0.3 * (t - 80) / 10
    if t < 100:
        return 0.2
    if t < 115:
        return 0.2 * (1 - (t - 100) / 15)
    return 0.0


class SignalModel:
    """How one signal's raw value evolves: counter, analog (follows the drive), or state."""

    def __init__(self, signal: Signal, rng: random.Random, cycle: float) -> None:
        self.signal = signal
        self.length = signal.length
        self.low = -(1 << (self.length - 1)) if signal.is_signed else 0
        self.high = (1 << (self.length - 1)) - 1 if signal.is_signed else (1 << self.length) - 1
        self.rolling = is_rolling_name(signal.name)
        self.analog = not self.rolling and self.length >= 8 and not signal.choices
        self.base, self.gain = rng.uniform(0.05, 0.4), rng.uniform(0.1, 0.5)
        # A sensor value moves in steps of ~0.2 % of its range (filtered by the ECU).
        self.quantum = max(1, (self.high - self.low) // 500)
        # A state signal changes about once a minute.
        self.flip = cycle / 60.0
        self.value = rng.randint(self.low, min(self.high, self.low + 3))

    def raw(self, t: float, n: int, rng: random.Random) -> int | float:
        if self.signal.is_float:
            return float(round(drive_speed(t) * 100))
        if self.rolling:
            return self.low + (n * (29 if self.length > 4 else 1)) % (self.high - self.low + 1)
        if self.analog:
            fraction = self.base + self.gain * drive_speed(t)
            value = self.low + int(fraction * (self.high - self.low))
            return value - value % self.quantum
        if rng.random() < self.flip:
            self.value = rng.randint(self.low, self.high)
        return self.value


def stream(vehicle: Vehicle, seconds: float, seed: int = 7) -> list[Frame]:
    """Every cyclic message at its rate for ``seconds``, merged in time order."""
    rng = random.Random(seed)
    t0 = 1_763_900_000.0
    frames: list[tuple[float, Frame]] = []
    for message in vehicle.buses["can0"].by_name.values():
        cycle = (message.cycle_time or 0) / 1000.0
        if not 0.01 <= cycle <= 1.0 or not message.signals:
            continue
        models = [SignalModel(s, rng, cycle) for s in message.signals]
        phase = rng.uniform(0, cycle)
        for n in range(int((seconds - phase) / cycle)):
            t = phase + n * cycle
            data = encode(message, {m.signal.name: m.raw(t, n, rng) for m in models})
            frame = Frame(t0 + t, message.frame_id, data, message.is_extended_frame)
            frames.append((t, frame))
    frames.sort(key=lambda pair: pair[0])
    return [frame for _, frame in frames]


def encode(message: Message, raw: dict[str, Any]) -> bytes:
    return bytes(message.encode(raw, scaling=False, padding=False, strict=False))


def plain_loop(db: Database, frames: list[Frame], used_ids: set[int]) -> float:
    start = time.process_time()
    for frame in frames:
        if frame.arbitration_id in used_ids:
            db.decode_message(frame.arbitration_id, frame.data)
    return time.process_time() - start


def feed_loop(decoder: Decoder, frames: list[Frame]) -> float:
    """The one path (daemon and replay alike): one ``feed`` call per frame."""
    state = VehicleState()
    decoder.reset()
    feed = decoder.feed
    start = time.process_time()
    for frame in frames:
        feed(frame, state)
    return time.process_time() - start


def compare(
    label: str, frames: list[Frame], plain: Callable[[], float], ours: Callable[[], float], n: int
) -> tuple[float, float]:
    """Best of ``n`` interleaved runs of both loops; print frames/s and the ratio; return the
    ratio and edgemon's frames/s."""
    plain_best = ours_best = math.inf
    for _ in range(n):
        plain_best = min(plain_best, plain())
        ours_best = min(ours_best, ours())
    ratio = plain_best / ours_best
    print(f"{label}: {len(frames)} frames")
    print(f"  plain loop, decode_message per in-use frame: {len(frames) / plain_best:11,.0f} fr/s")
    print(f"  edgemon Decoder -> VehicleState:             {len(frames) / ours_best:11,.0f} fr/s")
    print(f"  ratio: {ratio:.1f}x")
    return ratio, len(frames) / ours_best


def main() -> None:
    guard("bench_ingest")
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--seconds", type=float, default=pick(120.0, 5.0), help="simulated drive length"
    )
    parser.add_argument("--repeat", type=int, default=pick(7, 1), help="best of N interleaved")
    args = parser.parse_args()
    with stage("ingest", 40):
        measure(args)


def measure(args: argparse.Namespace) -> None:

    vehicle = load_vehicle([BusSpec("can0", (DBC,), None)])
    db = Database(list(vehicle.buses["can0"].by_name.values()), strict=False)
    decoder = Decoder(vehicle)
    decoder.use(IN_USE)
    assert not decoder.unresolved, decoder.unresolved
    used_ids = {frame_id for frame_id, _ in decoder.used_ids("can0")}
    frames = stream(vehicle, args.seconds)
    filtered = [f for f in frames if f.arbitration_id in used_ids]

    print(f"machine: {machine()}")
    print(f"DBC: {DBC.name}; {args.seconds:.0f} s drive; {len(IN_USE)} signals in use on "
          f"{len(used_ids)} of {len(vehicle.buses['can0'].by_id)} ids")  # fmt: skip
    state = VehicleState()
    decoder.reset_counters()
    for frame in frames:
        decoder.feed(frame, state)
    c = decoder.counters
    print(f"in-use frames: {len(filtered)}; decoded {c['decoded']}, skipped unchanged "
          f"{c['skipped_unchanged']} ({c['skipped_unchanged'] / len(filtered):.0%})")  # fmt: skip
    n = args.repeat
    live, live_rate = compare(
        "ids in use (kernel filter live, read_log filter in replay), feed per frame",
        filtered,
        lambda: plain_loop(db, filtered, used_ids),
        lambda: feed_loop(decoder, filtered),
        n,
    )
    full, _ = compare(
        "full bus, no filter (for reference), feed per frame",
        frames,
        lambda: plain_loop(db, frames, used_ids),
        lambda: feed_loop(decoder, frames),
        n,
    )
    print(f"target >= 4x: filtered (live and replay) {live:.1f}x; unfiltered full bus {full:.1f}x")
    write_results(
        "ingest",
        {
            "ingest_frames_per_s": live_rate,
            "ingest_ratio_vs_plain": live,
            "ingest_full_bus_ratio_vs_plain": full,
        },
    )


if __name__ == "__main__":
    main()
