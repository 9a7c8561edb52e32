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
FAULT_NAMES = frozenset({DTC_NEW, DTC_CONFIRMED_COUNT, DTC_PENDING_COUNT})


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
