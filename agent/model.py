"""The agent's own value types. Library types (python-can, pynmea2, paho) stop at their adapter.

Time: every ``timestamp`` is seconds since the Unix epoch as a float, on the clock of the source
(kernel receive time for SocketCAN, the recording's own clock for logs). ``agent.gps.clock`` decides
which clock is trusted for event dates and time windows.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime

# A decoded signal value: a physical number, a boolean, or an enum (choice) name.
Value = float | int | str | bool


@dataclass(frozen=True, slots=True)
class Frame:
    """One CAN or CAN FD frame as received."""

    timestamp: float
    arbitration_id: int
    data: bytes
    is_extended: bool = False
    is_fd: bool = False
    bus: str = "can0"  # logical bus name from the configuration (which DBC set applies)


@dataclass(frozen=True, slots=True)
class Sample:
    """A new value of one named signal (a data name or a ``Message.Signal`` key), read by asking
    (OBD-II) rather than decoded from a frame."""

    name: str
    value: Value
    timestamp: float
    max_age: float | None = None  # seconds after ``timestamp`` when it goes stale; None: never


class FixType(enum.IntEnum):
    """GSA fix mode, extended with NONE for "no position"."""

    NONE = 1
    FIX_2D = 2
    FIX_3D = 3


@dataclass(frozen=True, slots=True)
class Fix:
    """One GPS epoch, merged from that epoch's RMC/GGA/VTG/GSA sentences.

    ``latitude``/``longitude`` are None when the receiver has no position: "no position" is
    unknown, never (0, 0).
    """

    timestamp: float  # local receive time of the epoch's last sentence (source clock)
    utc: datetime | None  # receiver's UTC time of the epoch (timezone-aware), when given
    latitude: float | None
    longitude: float | None
    speed_kmh: float | None = None
    course: float | None = None  # degrees true
    altitude: float | None = None  # metres above mean sea level
    fix_type: FixType = FixType.NONE
    quality: int = 0  # GGA fix quality: 0 invalid, 1 GPS, 2 DGPS, 4 RTK fixed, 5 RTK float, 6 DR
    hdop: float | None = None
    satellites: int | None = None
    talker: str = "GP"

    @property
    def has_position(self) -> bool:
        return self.latitude is not None and self.longitude is not None


class SignalKind(enum.Enum):
    NUMBER = "number"
    BOOLEAN = "boolean"
    ENUM = "enum"


@dataclass(frozen=True, slots=True)
class SignalInfo:
    """What the vehicle can say about one name, for monitor validation and value conversion."""

    name: str
    kind: SignalKind
    choices: tuple[str, ...] = ()  # enum names, for SignalKind.ENUM
    unit: str = ""
    cycle_time: float | None = None  # expected period in seconds (DBC GenMsgCycleTime)
    source: str = "can"  # "can" or "gps"


@dataclass(frozen=True, slots=True)
class EventValue:
    """One entry of an event's ``values[]``: the data behind a firing."""

    data: str
    value: str  # literal value as text (Stellantis ``literalValue``)
    previous: str | None = None


@dataclass(frozen=True, slots=True)
class Extension:
    """One entry of an event's ``extensions[]`` (``extendedEventParam``)."""

    type: str
    body: dict[str, object]


@dataclass(frozen=True, slots=True)
class Event:
    """A monitor firing, as the agent commits it to its outbox and publishes it."""

    event_id: str  # time-ordered unique id (UUIDv7 text)
    seq: int  # per-vehicle sequence number, strictly increasing
    vin: str
    fleet_id: str | None
    monitor_id: str
    event_date: datetime  # timezone-aware UTC, from the trusted clock
    refresh: bool
    values: tuple[EventValue, ...] = ()
    extensions: tuple[Extension, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)  # e.g. {"clock": "gps"}
