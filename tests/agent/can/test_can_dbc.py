"""DBC and signal-map loading: the demo vehicle, clear errors for broken files and bad maps."""

from __future__ import annotations

import logging
from pathlib import Path

import cantools
import pytest

from agent.can.dbc import DEMO_DBC, DEMO_MAP, BusSpec, Vehicle, load_vehicle
from agent.errors import DbcError
from agent.model import SignalKind

# The Stellantis data names a CAN bus can carry (reference §5), plus the ignition.
REQUIRED_NAMES = {
    "vehicle.engines.thermic.oil.temp": SignalKind.NUMBER,
    "vehicle.kinetic.speed": SignalKind.NUMBER,
    "vehicle.odometer": SignalKind.NUMBER,
    "vehicle.energy.fuel.level": SignalKind.NUMBER,
    "vehicle.energy.electric.level": SignalKind.NUMBER,
    "vehicle.energy.fuel.autonomy": SignalKind.NUMBER,
    "vehicle.energy.electric.autonomy": SignalKind.NUMBER,
    "vehicle.autonomy": SignalKind.NUMBER,
    "vehicle.doorsState.opening": SignalKind.ENUM,
    "vehicle.doorsState.lockedState": SignalKind.ENUM,
    "vehicle.safety.beltWarning": SignalKind.ENUM,
    "vehicle.powertrain.status": SignalKind.ENUM,
    "vehicle.energy.charging.status": SignalKind.ENUM,
    "vehicle.energy.charging.plugged": SignalKind.BOOLEAN,
    "environment.air.temp": SignalKind.NUMBER,
    "vehicle.preconditioning.airConditioning": SignalKind.ENUM,
    "vehicle.alarm.status.activation": SignalKind.ENUM,
    "vehicle.alarm.trigger.type": SignalKind.ENUM,
    "vehicle.drivingBehavior.mode": SignalKind.ENUM,
    "vehicle.kinetic.moving": SignalKind.BOOLEAN,
    "vehicle.engines.running": SignalKind.BOOLEAN,
    "vehicle.ignition": SignalKind.BOOLEAN,
}

STELLANTIS_ENUMS = {
    "vehicle.powertrain.status": {"NotRunning", "Starting", "Running", "Stopping", "Stopped"},
    "vehicle.energy.charging.status": {
        "Disconnected",
        "InProgress",
        "Failure",
        "Stopped",
        "Finished",
    },
    "vehicle.safety.beltWarning": {"Normal", "Omission"},
    "vehicle.alarm.status.activation": {"Inactive", "Active"},
    "vehicle.preconditioning.airConditioning": {"Enabled", "Disabled", "Finished", "Failure"},
    "vehicle.drivingBehavior.mode": {
        "Normal",
        "Sport",
        "Comfort",
        "Eco",
        "Sand",
        "Mud",
        "Snow",
        "ZEV",
        "Hybrid",
        "ZEVEco",
        "HybridEco",
        "EcoPlus",
        "eAWD",
        "4AWD",
        "ReinforcedLoad",
    },
}

MINI_DBC = """VERSION ""

NS_ :

BS_:

BU_: ECU

BO_ 256 Engine: 8 ECU
 SG_ Rpm : 0|16@1+ (1,0) [0|65535] "rpm" ECU
 SG_ State : 16|2@1+ (1,0) [0|3] "" ECU

VAL_ 256 State 0 "OFF" 1 "ON" ;
"""


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_demo_dbc_loads_strictly_with_cantools() -> None:
    db = cantools.database.load_file(DEMO_DBC, strict=True)
    kinds = {
        "fd": any(m.is_fd and m.length == 64 for m in db.messages),
        "extended": any(m.is_extended_frame for m in db.messages),
        "multiplexed": any(m.is_multiplexed() for m in db.messages),
    }
    assert kinds == {"fd": True, "extended": True, "multiplexed": True}
    cycles = [m.cycle_time for m in db.messages]
    assert all(c is not None and 10 <= c <= 1000 for c in cycles)
    rolling = [s.name for m in db.messages for s in m.signals if "Counter" in s.name]
    assert len(rolling) >= 5


def test_demo_vehicle_provides_every_can_data_name(demo_vehicle: Vehicle) -> None:
    assert demo_vehicle.warnings == ()
    for name, kind in REQUIRED_NAMES.items():
        info = demo_vehicle.catalog.describe(name)
        assert info is not None, name
        assert info.kind is kind, name
        assert info.cycle_time is not None and info.cycle_time > 0
    for name, choices in STELLANTIS_ENUMS.items():
        info = demo_vehicle.catalog.describe(name)
        assert info is not None
        assert set(info.choices) == choices, name
    trigger = demo_vehicle.catalog.describe("vehicle.alarm.trigger.type")
    assert trigger is not None and len(trigger.choices) == 14
    assert {"NoBreakIn", "VehicleLifting", "KeyLearning", "UnauthenticatedStartup"} <= set(
        trigger.choices
    )


def test_catalog_describes_dbc_keys(demo_vehicle: Vehicle) -> None:
    catalog = demo_vehicle.catalog
    speed = catalog.describe("VehicleMotion.Speed")
    assert speed is not None
    assert (speed.kind, speed.unit, speed.cycle_time) == (SignalKind.NUMBER, "km/h", 0.02)
    status = catalog.describe("EngineData.PowertrainStatus")
    assert status is not None and status.kind is SignalKind.ENUM
    assert "NOT_RUNNING" in status.choices
    # A multiplexed signal comes once every (pages x cycle).
    air = catalog.describe("BodyInfo.OutsideAirTemp")
    assert air is not None and air.cycle_time == pytest.approx(0.3)
    assert catalog.describe("VehicleMotion.Nope") is None
    assert catalog.describe("vehicle.nope") is None
    names = catalog.names()
    assert "vehicle.kinetic.speed" in names and "BatteryStatusFD.CellVoltage24" in names
    assert names.index("vehicle.kinetic.speed") < names.index("VehicleMotion.Speed")


def test_broken_dbc_is_one_line_naming_file_and_reason(tmp_path: Path) -> None:
    broken = write(tmp_path / "broken.dbc", MINI_DBC.replace("BO_ 256 Engine: 8", "BO_ x Engine"))
    with pytest.raises(DbcError) as caught:
        load_vehicle([BusSpec("can0", (broken,), None)])
    message = str(caught.value)
    assert "\n" not in message
    assert str(broken) in message
    assert "Invalid syntax" in message  # cantools' own reason


def test_missing_dbc_file(tmp_path: Path) -> None:
    with pytest.raises(DbcError, match=r"nowhere\.dbc: DBC file not found"):
        load_vehicle([BusSpec("can0", (tmp_path / "nowhere.dbc",), None)])


def test_dbc_refused_strictly_loads_non_strict_with_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    overlapping = MINI_DBC.replace("SG_ State : 16|2@1+", "SG_ State : 8|2@1+")
    path = write(tmp_path / "overlap.dbc", overlapping)
    with pytest.raises(Exception, match="overlapping"):
        cantools.database.load_file(path, strict=True)
    with caplog.at_level(logging.WARNING, logger="agent.can.dbc"):
        vehicle = load_vehicle([BusSpec("can0", (path,), None)])
    assert vehicle.catalog.describe("Engine.State") is not None
    assert len(vehicle.warnings) == 1 and "non-strict" in vehicle.warnings[0]
    assert "overlapping" in vehicle.warnings[0]
    assert any("non-strict" in r.getMessage() for r in caplog.records)


def test_map_entry_naming_missing_signal_names_both(tmp_path: Path) -> None:
    dbc = write(tmp_path / "mini.dbc", MINI_DBC)
    signal_map = write(
        tmp_path / "mini.map.toml",
        '[signals."vehicle.kinetic.speed"]\nsignal = "Engine.Speed"\n'
        '[signals."vehicle.engines.running"]\nsignal = "Gearbox.State"\n',
    )
    with pytest.raises(DbcError) as caught:
        load_vehicle([BusSpec("can0", (dbc,), signal_map)])
    message = str(caught.value)
    assert "\n" not in message
    assert "vehicle.kinetic.speed -> Engine.Speed" in message
    assert "has no signal Speed" in message
    # Every problem at once: the second entry names a message the DBC lacks.
    assert "vehicle.engines.running -> Gearbox.State: no message Gearbox" in message
    assert str(signal_map) in message


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ('signal = "Engine.State"\nvalues = { OF = "Off" }', "values.OF is not a choice of State"),
        ('signal = "Engine.State"\nvalues = { OFF = 1 }', "must map to text or true/false"),
        ('signal = "Engine.State"\nvalues = { OFF = "Off", ON = true }', "mixes text"),
        ('signal = "Engine.State"\nkind = "colour"', "'kind' must be one of"),
        ('signal = "Engine.State"\nkind = "number"\nvalues = { ON = true }', "does not match"),
        ('signal = "Engine.Rpm"\nscale = "x"', "'scale' must be a number"),
        ('signal = "EngineRpm"', "'signal' must be \"Message.Signal\""),
        ('signal = "Engine.Rpm"\nfactor = 2', "unknown key(s) factor"),
    ],
)
def test_bad_map_entries_are_reported(tmp_path: Path, entry: str, expected: str) -> None:
    dbc = write(tmp_path / "mini.dbc", MINI_DBC)
    signal_map = write(tmp_path / "m.toml", f'[signals."vehicle.x"]\n{entry}\n')
    with pytest.raises(DbcError) as caught:
        load_vehicle([BusSpec("can0", (dbc,), signal_map)])
    assert expected in str(caught.value)
    assert "vehicle.x" in str(caught.value)


def test_map_that_is_not_toml(tmp_path: Path) -> None:
    dbc = write(tmp_path / "mini.dbc", MINI_DBC)
    signal_map = write(tmp_path / "m.toml", "[signals\n")
    with pytest.raises(DbcError, match="not valid TOML"):
        load_vehicle([BusSpec("can0", (dbc,), signal_map)])


def test_map_values_accept_raw_integers_and_infer_kinds(tmp_path: Path) -> None:
    dbc = write(tmp_path / "mini.dbc", MINI_DBC)
    signal_map = write(
        tmp_path / "m.toml",
        '[signals."engine.state"]\nsignal = "Engine.State"\nvalues = { "0" = "Off", ON = "On" }\n'
        '[signals."engine.on"]\nsignal = "Engine.State"\nkind = "boolean"\n'
        '[signals."engine.rpm"]\nsignal = "Engine.Rpm"\nscale = 0.001\nunit = "krpm"\n',
    )
    vehicle = load_vehicle([BusSpec("can0", (dbc,), signal_map)])
    state = vehicle.catalog.describe("engine.state")
    assert state is not None and state.kind is SignalKind.ENUM
    assert state.choices == ("Off", "On") and state.cycle_time is None
    on = vehicle.catalog.describe("engine.on")
    assert on is not None and on.kind is SignalKind.BOOLEAN
    rpm = vehicle.catalog.describe("engine.rpm")
    assert rpm is not None and (rpm.kind, rpm.unit) == (SignalKind.NUMBER, "krpm")
    assert vehicle.catalog.data_names() == ["engine.on", "engine.rpm", "engine.state"]


def test_two_buses_and_duplicate_names(tmp_path: Path) -> None:
    dbc = write(tmp_path / "mini.dbc", MINI_DBC)
    vehicle = load_vehicle([BusSpec("can0", (DEMO_DBC,), DEMO_MAP), BusSpec("can1", (dbc,))])
    assert set(vehicle.buses) == {"can0", "can1"}
    ref = vehicle.lookup("Engine.Rpm")
    assert ref is not None and ref.bus == "can1"
    with pytest.raises(DbcError, match="listed twice"):
        load_vehicle([BusSpec("can0", (dbc,)), BusSpec("can0", (dbc,))])
    clash = write(tmp_path / "m.toml", '[signals."vehicle.kinetic.speed"]\nsignal = "Engine.Rpm"\n')
    with pytest.raises(DbcError, match=r"vehicle\.kinetic\.speed: name defined twice"):
        load_vehicle([BusSpec("can0", (DEMO_DBC,), DEMO_MAP), BusSpec("can1", (dbc,), clash)])
