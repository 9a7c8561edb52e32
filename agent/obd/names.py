"""The data names OBD-II can feed, as monitors see them (pure: the backend imports it too).

Standard PIDs map to the Stellantis names where one exists (speed, fuel level, odometer, oil and
ambient temperature); the others are ``obd.*``. Fault codes are names too, so a plain data
trigger says "webhook on a new confirmed fault code": ``obd.dtc.new`` takes the code (``P0301``)
each time one becomes confirmed (``onChange``), and goes back to ``none`` when every code is
cleared, so the same code coming back fires again.
"""

from __future__ import annotations

from agent.model import SignalInfo, SignalKind
from agent.monitors.model import Catalog
from agent.obd.pids import BY_DATA_NAME, ENGINE_RUNNING, PIDS

DTC_NEW = "obd.dtc.new"  # the newest confirmed code (enum, open list), "none" once all cleared
DTC_CONFIRMED_COUNT = "obd.dtc.confirmed.count"
DTC_PENDING_COUNT = "obd.dtc.pending.count"
NO_CODE = "none"

OBD_NAMES: dict[str, SignalInfo] = {
    p.data_name: SignalInfo(p.data_name, SignalKind.NUMBER, unit=p.unit, source="obd")
    for p in PIDS.values()
}
OBD_NAMES[ENGINE_RUNNING] = SignalInfo(ENGINE_RUNNING, SignalKind.BOOLEAN, source="obd")
OBD_NAMES[DTC_NEW] = SignalInfo(DTC_NEW, SignalKind.ENUM, source="obd")
OBD_NAMES[DTC_CONFIRMED_COUNT] = SignalInfo(DTC_CONFIRMED_COUNT, SignalKind.NUMBER, source="obd")
OBD_NAMES[DTC_PENDING_COUNT] = SignalInfo(DTC_PENDING_COUNT, SignalKind.NUMBER, source="obd")
# Freeze frame 0 (service 02): the code that stored it and the PIDs the ECU froze with it, read
# when a code becomes confirmed, before ``obd.dtc.new`` changes: an event on the new code can
# carry them (``extendedEventParam: ["vehicle.telemetry.obd.dtc.freeze"]``).
FREEZE_PREFIX = "obd.dtc.freeze."
FREEZE_CODE = "obd.dtc.freeze.code"
FREEZE_KEYS = {0x04: "engineLoad", 0x05: "coolantTemp", 0x0C: "rpm", 0x0D: "speed",
               0x11: "throttle", 0x2F: "fuelLevel"}  # fmt: skip
FREEZE_PIDS = tuple(FREEZE_KEYS)
OBD_NAMES[FREEZE_CODE] = SignalInfo(FREEZE_CODE, SignalKind.ENUM, source="obd")
for _pid, _key in FREEZE_KEYS.items():
    _name = FREEZE_PREFIX + _key
    OBD_NAMES[_name] = SignalInfo(_name, SignalKind.NUMBER, unit=PIDS[_pid].unit, source="obd")
FAULT_NAMES = frozenset({DTC_NEW, DTC_CONFIRMED_COUNT, DTC_PENDING_COUNT}) | frozenset(
    n for n in OBD_NAMES if n.startswith(FREEZE_PREFIX)
)


def freeze_name(pid: int) -> str:
    """``obd.dtc.freeze.rpm`` for PID 0C: the value the ECU froze with the code."""
    return FREEZE_PREFIX + FREEZE_KEYS[pid]


def freeze_pids_for(names: set[str] | frozenset[str]) -> set[int]:
    return {pid for pid in FREEZE_PIDS if freeze_name(pid) in names}


def obd_info(name: str) -> SignalInfo | None:
    return OBD_NAMES.get(name)


def pids_for(names: set[str] | frozenset[str]) -> set[int]:
    """The service 01 PIDs these data names need (engine running reads rpm)."""
    pids = {BY_DATA_NAME[n].pid for n in names if n in BY_DATA_NAME}
    if ENGINE_RUNNING in names:
        pids.add(0x0C)
    return pids


class ObdCatalog:
    """A vehicle catalog plus the OBD names it lacks (the CAN catalog wins on a shared name)."""

    def __init__(self, base: Catalog | None) -> None:
        self.base = base

    def describe(self, name: str) -> SignalInfo | None:
        info = self.base.describe(name) if self.base is not None else None
        return info if info is not None else OBD_NAMES.get(name)

    def names(self) -> list[str]:
        listed = getattr(self.base, "names", None)
        names: list[str] = list(listed()) if callable(listed) else []
        return names + sorted(n for n in OBD_NAMES if n not in names)
