"""Helpers of the monitor engine tests: a fake catalog, monitors from JSON, a clocked rig."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from agent.model import Fix, FixType, SignalInfo, SignalKind
from agent.monitors.engine import Engine, MemoryFiredStore, MemorySequence, SeededIds
from agent.monitors.model import Monitor, parse_monitor
from agent.state import VehicleState

NUMBER = SignalKind.NUMBER
T0 = datetime(2026, 6, 10, 12, 0, tzinfo=UTC).timestamp()  # a Wednesday, 14:00 in Paris


class FakeCatalog:
    def __init__(self, infos: dict[str, SignalInfo]) -> None:
        self.infos = infos

    def describe(self, name: str) -> SignalInfo | None:
        return self.infos.get(name)

    def names(self) -> list[str]:
        return sorted(self.infos)


def default_infos() -> dict[str, SignalInfo]:
    entries = [
        SignalInfo("vehicle.engines.thermic.oil.temp", NUMBER, unit="degC"),
        SignalInfo("vehicle.odometer", NUMBER, unit="km"),
        SignalInfo("vehicle.energy.fuel.level", NUMBER, unit="%"),
        SignalInfo("environment.air.temp", NUMBER, unit="degC"),
        SignalInfo("vehicle.engines.running", SignalKind.BOOLEAN),
        SignalInfo("vehicle.kinetic.moving", SignalKind.BOOLEAN),
        SignalInfo(
            "vehicle.energy.charging.status",
            SignalKind.ENUM,
            ("Disconnected", "InProgress", "Failure", "Stopped", "Finished"),
        ),
        SignalInfo("vehicle.doorsState.opening", SignalKind.ENUM, ("Closed", "Open")),
        SignalInfo("vehicle.doorsState.opening.Driver", SignalKind.ENUM, ("Closed", "Open")),
        SignalInfo("vehicle.doorsState.lockedState", SignalKind.ENUM, ("Locked", "Unlocked")),
        SignalInfo("EngineData.CoolantTemp", NUMBER, unit="degC"),
    ]
    return {info.name: info for info in entries}


def make_monitor(
    triggers: list[dict[str, Any]],
    bool_exp: str,
    catalog: Any,
    *,
    monitor_id: str = "m1",
    **extra: Any,
) -> Monitor:
    obj = {"label": monitor_id, "triggerParam": {"triggers": triggers, "boolExp": bool_exp}}
    obj.update(extra)
    result = parse_monitor(obj, monitor_id=monitor_id, catalog=catalog)
    assert result.problems == [], result.problems
    assert result.monitor is not None
    return result.monitor


def data(name: str, trigger_data: str, op: str, *values: str, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"data": trigger_data, "op": op}
    if values:
        body["value"] = list(values)
    body.update(extra)
    return {"name": name, "data": body}


def fix_at(lat: float, lon: float, t: float, **extra: Any) -> Fix:
    base: dict[str, Any] = {
        "timestamp": t,
        "utc": datetime.fromtimestamp(t, UTC),
        "latitude": lat,
        "longitude": lon,
        "fix_type": FixType.FIX_3D,
        "quality": 1,
        "hdop": 0.9,
        "satellites": 9,
        "speed_kmh": 30.0,
        "course": 90.0,
    }
    base.update(extra)
    return Fix(**base)


class Rig:
    """An engine, its state and stores, driven on an injected clock."""

    def __init__(self, catalog: FakeCatalog, store: MemoryFiredStore | None = None) -> None:
        self.catalog = catalog
        self.state = VehicleState()
        self.store = store or MemoryFiredStore()
        self.engine = Engine(
            "VIN0001",
            "fleet-1",
            catalog,
            self.store,
            MemorySequence(),
            event_ids=SeededIds("test"),
        )
        self.events: list[Any] = []

    def add(self, monitor: Monitor) -> Rig:
        self.engine.set_monitor(monitor)
        return self

    def run_until(self, now: float) -> None:
        """Run every deadline up to ``now`` at its own time (as replay does)."""
        while (when := self.engine.next_deadline()) is not None and when <= now:
            self.events += self.engine.tick(self.state, max(when, self.clock))
            self.clock = max(self.clock, when)
        self.clock = now

    clock: float = T0 - 3600.0

    def set(self, name: str, value: Any, t: float, max_age: float | None = 3.0) -> list[Any]:
        self.run_until(t)
        before = len(self.events)
        if self.state.update(name, value, t, max_age):
            self.events += self.engine.on_change([name], self.state, t)
        return self.events[before:]

    def fix(self, fix: Fix) -> list[Any]:
        self.run_until(fix.timestamp)
        before = len(self.events)
        self.state.update_fix(fix)
        self.events += self.engine.on_fix(self.state, fix.timestamp)
        return self.events[before:]

    def advance(self, t: float) -> list[Any]:
        before = len(self.events)
        self.run_until(t)
        return self.events[before:]
