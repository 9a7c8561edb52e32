"""How to read each source: plain frozen descriptions, no adapter imported (issue 13).

``agent.config`` builds these from ``agent.toml`` without loading python-can, cantools or
pyserial; the adapters (``agent.can.dbc``, ``agent.can.source``, ``agent.gps.source``,
``agent.gps.gpsd_source``) take them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from agent.errors import Problem
from agent.gps.gpsd import parse_gpsd_url

ReplayPace = Literal["realtime", "fast"]


@dataclass(frozen=True)
class BusSpec:
    """One bus's DBC set and signal map (built from the agent configuration)."""

    name: str
    dbc_files: tuple[Path, ...]
    signal_map: Path | None = None
    # Extra rolling counters / checksums to ignore when comparing payloads, as ``Message.Signal``
    # or a bare signal name; names matching :func:`agent.can.decode.is_rolling_name` need no entry.
    rolling_signals: tuple[str, ...] = ()


@dataclass(frozen=True)
class BusConfig:
    """How to open one bus with python-can; ``name`` is the logical bus (which DBC set applies)."""

    name: str
    interface: str
    channel: str
    bitrate: int | None = None
    fd: bool = False
    data_bitrate: int | None = None
    receive_own_messages: bool = False
    options: Mapping[str, Any] = field(default_factory=dict)  # any other python-can kwargs


@dataclass(frozen=True)
class GpsConfig:
    """Where the receiver is and how to read it."""

    port: str  # /dev/ttyACM0, socket://host:port, rfc2217://host:port, gpsd://host:port, a file
    baudrate: int = 9600
    replay_pace: ReplayPace = "realtime"  # the older switch: realtime (1x) or fast (0)
    # a file's time factor, as CAN's ``replay_speed`` (5.0: five times faster; 0: as fast as
    # possible); when set it wins over ``replay_pace``
    replay_speed: float | None = None
    require_checksum: bool = True
    epoch_timeout: float = 0.5  # seconds of silence that close an epoch
    read_timeout: float = 0.2  # bounds how long stop() waits for the reader
    reopen_min: float = 0.5  # first reopen delay, doubled per failure ...
    reopen_max: float = 30.0  # ... up to this

    def problems(self, path: str = "$.gps") -> list[Problem]:
        """Every reason this configuration cannot be used (empty when it is fine)."""
        found = []
        if not self.port.strip():
            found.append(Problem(f"{path}.port", "must name a device, a pyserial URL or a file"))
        if self.baudrate <= 0:
            found.append(Problem(f"{path}.baudrate", f"must be positive, not {self.baudrate}"))
        if self.replay_pace not in ("realtime", "fast"):
            found.append(Problem(f"{path}.replay_pace", "must be 'realtime' or 'fast'"))
        if self.replay_speed is not None and not self.replay_speed >= 0:  # also NaN
            found.append(
                Problem(f"{path}.replay_speed", "must be 0 (as fast as possible) or positive")
            )
        for name in ("epoch_timeout", "read_timeout", "reopen_min", "reopen_max"):
            if not getattr(self, name) > 0:
                found.append(Problem(f"{path}.{name}", "must be a positive number of seconds"))
        if self.reopen_max < self.reopen_min:
            found.append(Problem(f"{path}.reopen_max", "must not be below reopen_min"))
        if self.is_gpsd:
            try:
                parse_gpsd_url(self.port)
            except ValueError as exc:
                found.append(Problem(f"{path}.port", f"gpsd://host[:port][/device]: {exc}"))
        return found

    @property
    def speed(self) -> float:
        """A recording's time factor: 1.0 real time, 5.0 five times faster, 0 no pacing."""
        if self.replay_speed is not None:
            return self.replay_speed
        return 1.0 if self.replay_pace == "realtime" else 0.0

    @property
    def is_file(self) -> bool:
        return "://" not in self.port and Path(self.port).is_file()

    @property
    def is_gpsd(self) -> bool:
        return self.port.startswith("gpsd://")
