"""The standard service 01 PIDs a fleet uses, with their SAE J1979 formulas and units.

A, B, C, D are the data bytes after the PID, as J1979 names them. ``size`` is how many bytes a
PID's answer carries: a multi-PID answer (up to 6 PIDs in one request) is split by these sizes,
so a PID outside this table cannot be asked together with others (its size is unknown).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

MAX_PIDS_PER_REQUEST = 6  # ISO 15765-4: a service 01 request names at most 6 PIDs
BITMAP_PIDS = (0x00, 0x20, 0x40, 0x60, 0x80, 0xA0, 0xC0, 0xE0)  # "PIDs supported [n+1, n+0x20]"


def _u16(data: bytes) -> int:
    return data[0] << 8 | data[1]


@dataclass(frozen=True, slots=True)
class Pid:
    pid: int
    key: str  # short name, used in the CLI and the docs
    size: int  # data bytes in the answer
    unit: str
    decode: Callable[[bytes], float]
    data_name: str  # the vehicle-state name monitors use


PIDS: dict[int, Pid] = {
    p.pid: p
    for p in (
        Pid(0x04, "engine_load", 1, "%", lambda d: d[0] * 100 / 255, "obd.engine.load"),
        Pid(0x05, "coolant_temp", 1, "degC", lambda d: d[0] - 40, "obd.engine.coolant.temp"),
        Pid(0x0C, "rpm", 2, "rpm", lambda d: _u16(d) / 4, "obd.engine.rpm"),
        Pid(0x0D, "speed", 1, "km/h", lambda d: d[0], "vehicle.kinetic.speed"),
        Pid(0x0F, "intake_temp", 1, "degC", lambda d: d[0] - 40, "obd.engine.intake.temp"),
        Pid(0x10, "maf", 2, "g/s", lambda d: _u16(d) / 100, "obd.engine.maf"),
        Pid(0x11, "throttle", 1, "%", lambda d: d[0] * 100 / 255, "obd.engine.throttle"),
        Pid(0x1F, "run_time", 2, "s", _u16, "obd.engine.runTime"),
        Pid(0x2F, "fuel_level", 1, "%", lambda d: d[0] * 100 / 255, "vehicle.energy.fuel.level"),
        Pid(0x31, "distance_since_clear", 2, "km", _u16, "obd.distanceSinceCodesCleared"),
        Pid(0x42, "module_voltage", 2, "V", lambda d: _u16(d) / 1000, "obd.controlModule.voltage"),
        Pid(0x46, "ambient_temp", 1, "degC", lambda d: d[0] - 40, "environment.air.temp"),
        Pid(0x5C, "oil_temp", 1, "degC", lambda d: d[0] - 40, "vehicle.engines.thermic.oil.temp"),
        Pid(0x5E, "fuel_rate", 2, "L/h", lambda d: _u16(d) / 20, "obd.fuel.rate"),
        Pid(
            0xA6,
            "odometer",
            4,
            "km",
            lambda d: int.from_bytes(d[:4], "big") / 10,
            "vehicle.odometer",
        ),
    )
}
# Sizes of PIDs that are not values but may share a multi-PID answer.
_OTHER_SIZES = {0x01: 4, 0x03: 2, 0x1C: 1, 0x41: 4, 0x51: 1, **dict.fromkeys(BITMAP_PIDS, 4)}
BY_DATA_NAME: dict[str, Pid] = {p.data_name: p for p in PIDS.values()}
ENGINE_RUNNING = "vehicle.engines.running"  # derived: rpm > 0


def pid_size(pid: int) -> int | None:
    """Bytes a PID's answer carries, or None when this table does not know it."""
    known = PIDS.get(pid)
    return known.size if known is not None else _OTHER_SIZES.get(pid)


def decode(pid: int, data: bytes) -> float | None:
    """The PID's physical value, or None for a PID outside the table or a short answer."""
    known = PIDS.get(pid)
    if known is None or len(data) < known.size:
        return None
    return float(known.decode(data[: known.size]))
