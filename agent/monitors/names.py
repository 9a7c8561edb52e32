"""The Stellantis data names (reference §5), their types and the operators each allows.

Used to validate a monitor when no vehicle catalog is at hand (``catalog=None``: the backend).
Extensions of SPEC §2 widen the Stellantis operator lists by type: numbers also take
``notEqualTo``, ``greaterOrEqual``, ``lowerOrEqual``, ``between``, ``risesBy``, ``fallsBy``;
names that take ``equalsTo`` also take ``notEqualTo``.
"""

from __future__ import annotations

from agent.model import SignalInfo, SignalKind

NUMERIC_OPS = frozenset(
    {
        "equalsTo",
        "notEqualTo",
        "greaterThan",
        "lowerThan",
        "greaterOrEqual",
        "lowerOrEqual",
        "between",
        "risesBy",
        "fallsBy",
        "includedIn",
        "onChange",
    }
)
DISCRETE_OPS = frozenset({"equalsTo", "notEqualTo", "includedIn", "onChange"})
ALL_OPS = NUMERIC_OPS | DISCRETE_OPS

_NUM = frozenset({"equalsTo", "greaterThan", "lowerThan"})
_NUM_EXT = frozenset(
    {"notEqualTo", "greaterOrEqual", "lowerOrEqual", "between", "risesBy", "fallsBy"}
)
_CHG = frozenset({"onChange"})
_INC = frozenset({"includedIn"})
_EQ = frozenset({"equalsTo", "notEqualTo"})

_POWERTRAIN = ("NotRunning", "Starting", "Running", "Stopping", "Stopped")
_CHARGING = ("Disconnected", "InProgress", "Failure", "Stopped", "Finished")
_DRIVING_MODES = (
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
)
_ALARM_TRIGGERS = (
    "NoBreakIn",
    "DoorBreakIn",
    "VolumetricBreakIn",
    "TrunkBreakIn",
    "HoodBreakIn",
    "WindowBreakIn",
    "BatteryBreakIn",
    "SirenBreakIn",
    "TiltBreakIn",
    "TowingBreakIn",
    "ShockBreakIn",
    "VehicleLifting",
    "KeyLearning",
    "UnauthenticatedStartup",
)


def _number(unit: str) -> tuple[SignalKind, tuple[str, ...], str, frozenset[str]]:
    return SignalKind.NUMBER, (), unit, _NUM | _NUM_EXT


def _enum(
    choices: tuple[str, ...], ops: frozenset[str]
) -> tuple[SignalKind, tuple[str, ...], str, frozenset[str]]:
    if "equalsTo" in ops:
        ops = ops | _EQ
    return SignalKind.ENUM, choices, "", ops


def _boolean(ops: frozenset[str]) -> tuple[SignalKind, tuple[str, ...], str, frozenset[str]]:
    if "equalsTo" in ops:
        ops = ops | _EQ
    return SignalKind.BOOLEAN, (), "", ops


# name -> (kind, enum choices, unit, allowed ops). Enum choices left empty are open lists
# (alerts, door states): any text is accepted as a value.
STELLANTIS_NAMES: dict[str, tuple[SignalKind, tuple[str, ...], str, frozenset[str]]] = {
    "vehicle.alert": _enum((), _CHG | _INC | _EQ),
    "vehicle.odometer": _number("km"),
    "vehicle.engines.thermic.oil.temp": _number("degC"),
    "vehicle.energy.electric.level": _number("%"),
    "vehicle.energy.fuel.level": _number("%"),
    "vehicle.energy.electric.autonomy": _number("km"),
    "vehicle.energy.fuel.autonomy": _number("km"),
    "vehicle.autonomy": _number("km"),
    "vehicle.kinetic.speed": _number("km/h"),
    "environment.air.temp": _number("degC"),
    "vehicle.trip.duration": _number("s"),
    "vehicle.trip.distance": _number("km"),
    "vehicle.maintenance.daysBeforeMaintenance": _number("d"),
    "vehicle.maintenance.mileageBeforeMaintenance": _number("km"),
    "vehicle.powertrain.status": _enum(_POWERTRAIN, _EQ | _CHG | _INC),
    "vehicle.energy.charging.status": _enum(_CHARGING, _CHG | _EQ | _INC),
    "vehicle.energy.charging.plugged": _boolean(_CHG | _EQ),
    "vehicle.energy.charging.type": _enum((), _CHG | _EQ),
    "vehicle.doorsState.lockedState": _enum((), _CHG),
    "vehicle.doorsState.opening": _enum((), _CHG),
    "vehicle.kinetic.moving": _boolean(_CHG | _EQ),
    "vehicle.trip": _enum((), _CHG),
    "vehicle.trip.start": _enum((), _CHG),
    "vehicle.trip.stop": _enum((), _CHG),
    "vehicle.trip.state": _enum(("Nominal", "Unstarted", "DataLacking", "Unfinished"), _INC | _EQ),
    "vehicle.safety.beltWarning": _enum(("Normal", "Omission"), _CHG | _EQ),
    "privacy.state": _enum(("None", "Geolocation", "Full"), _EQ | _CHG | _INC),
    "vehicle.drivingBehavior.mode": _enum(_DRIVING_MODES, _EQ | _CHG | _INC),
    "vehicle.collision.side": _enum(("Front", "Rear", "Lateral"), _EQ | _INC),
    "vehicle.collision.severity": _enum(("Minimal", "Minor", "Major"), _EQ | _INC),
    "vehicle.safety.autoECallTriggering": _enum(
        ("NotDetected", "Detected", "ShockDetectionUnabled"), _EQ | _CHG | _INC
    ),
    "vehicle.preconditioning.airConditioning": _enum((), _CHG),
    "vehicle.alarm.trigger.type": _enum(_ALARM_TRIGGERS, _CHG | _EQ | _INC),
    "vehicle.alarm.status.activation": _enum(("Inactive", "Active"), _CHG | _EQ),
    "stolen.state": _boolean(_CHG | _EQ),
    # legacy (v2, and B2C `previous`)
    "vehicle.engines.running": _boolean(_CHG | _EQ),
    "privacy.driverRequestState": _enum((), _CHG | _EQ | _INC),
}

# Data names whose trigger may carry a `previous` precondition (reference §1.4).
PREVIOUS_ELIGIBLE = frozenset(
    {
        "vehicle.alert",
        "vehicle.engines.running",
        "vehicle.energy.charging.status",
        "vehicle.energy.charging.plugged",
        "vehicle.kinetic.moving",
        "vehicle.safety.beltWarning",
        "vehicle.safety.autoECallTriggering",
        "privacy.state",
        "vehicle.drivingBehavior.mode",
    }
)

# extendedEventParam values (B2B and B2C lists together, reference §1.3).
EXTENSION_TYPES = frozenset(
    {
        "vehicle.doorsState",
        "vehicle.status",
        "vehicle.maintenance",
        "vehicle.position",
        "vehicle.telemetry",
        "vehicle.collisions",
        "vehicle.alerts",
        "vehicle.trip",
        "vehicle.stolen",
        "vehicle.alarm",
    }
)


def stellantis_info(name: str) -> SignalInfo | None:
    entry = STELLANTIS_NAMES.get(name)
    if entry is None:
        return None
    kind, choices, unit, _ops = entry
    return SignalInfo(name=name, kind=kind, choices=choices, unit=unit)


def allowed_ops(name: str, info: SignalInfo, *, from_table: bool) -> frozenset[str]:
    """Operators allowed on ``name``: the table's list, else what the signal's kind permits."""
    if from_table and name in STELLANTIS_NAMES:
        return STELLANTIS_NAMES[name][3]
    if info.kind is SignalKind.NUMBER:
        return NUMERIC_OPS
    return DISCRETE_OPS


class StellantisCatalog:
    """The Stellantis name table as a ``Catalog`` (``describe(name) -> SignalInfo | None``)."""

    def describe(self, name: str) -> SignalInfo | None:
        return stellantis_info(name)

    def names(self) -> list[str]:
        return sorted(STELLANTIS_NAMES)
