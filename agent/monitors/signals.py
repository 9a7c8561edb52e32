"""Where the engine's data comes from besides the CAN catalog: GPS-derived names and "in use".

``vehicle.kinetic.speed`` comes from the GPS fix when the vehicle's catalog has no CAN speed
(SPEC §2 "Signal names"). ``with_gps(catalog)`` adds it, so that monitors naming it validate;
the engine then reads it from ``state.fix`` (unknown when the fix is missing or too old).

The time trigger's "in use" (reference §1.4: true while the vehicle is used within the window)
reads a configured data name, by default ``vehicle.engines.running``, falling back to an
ignition name when the catalog has no engine-running signal.
"""

from __future__ import annotations

from agent.instants import older_than
from agent.model import Fix, SignalInfo, SignalKind, Value
from agent.monitors.model import Catalog

GPS_SPEED = "vehicle.kinetic.speed"
GPS_MAX_AGE_S = 10.0
DEFAULT_IN_USE = "vehicle.engines.running"
IGNITION_NAMES = ("vehicle.ignition", "vehicle.ignition.on", "vehicle.ignition.status")
_IN_USE_TEXT = frozenset({"running", "starting", "on", "true", "start", "yes", "1"})

_GPS_NAMES = {
    GPS_SPEED: SignalInfo(GPS_SPEED, SignalKind.NUMBER, unit="km/h", source="gps"),
}


class GpsCatalog:
    """A catalog plus the position-derived names it lacks."""

    def __init__(self, base: Catalog | None) -> None:
        self.base = base

    def describe(self, name: str) -> SignalInfo | None:
        info = self.base.describe(name) if self.base is not None else None
        return info if info is not None else _GPS_NAMES.get(name)

    def names(self) -> list[str]:
        base_names = getattr(self.base, "names", None)
        names: list[str] = list(base_names()) if callable(base_names) else []
        return names + [n for n in _GPS_NAMES if n not in names]


def with_gps(catalog: Catalog | None) -> GpsCatalog:
    return catalog if isinstance(catalog, GpsCatalog) else GpsCatalog(catalog)


def gps_value(name: str, fix: Fix | None, now: float) -> Value | None:
    """A position-derived value, or None (unknown) without a recent fix."""
    if fix is None or older_than(now, fix.timestamp, GPS_MAX_AGE_S) or not fix.has_position:
        return None
    if name == GPS_SPEED:
        return fix.speed_kmh
    return None


def resolve_in_use(catalog: Catalog | None, configured: str | None = None) -> str:
    """The data name that says "the vehicle is in use"."""
    if configured:
        return configured
    if catalog is None or catalog.describe(DEFAULT_IN_USE) is not None:
        return DEFAULT_IN_USE
    for name in IGNITION_NAMES:
        if catalog.describe(name) is not None:
            return name
    return DEFAULT_IN_USE


def in_use(value: Value | None) -> bool | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value != 0
    return value.strip().lower() in _IN_USE_TEXT
