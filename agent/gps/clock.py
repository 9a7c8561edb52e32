"""Which clock the agent trusts for event dates and time windows: the system clock or GPS time.

A Raspberry Pi has no RTC: until NTP (or another time service) synchronises the system clock, it
starts wherever it was left (1970, or fake-hwclock's last save). The rule (``docs/clock.md``):

- policy ``auto`` (default): system time once the system clock is synchronised; before that, GPS
  time from the receiver; with neither, system time, marked untrusted.
- policy ``system``: always system time (trusted; the operator vouches for it).
- policy ``gps``: GPS time as soon as a fix gave it; system time until then (untrusted unless
  synchronised).

:class:`TrustedClock` is pure: observations go in (``observe_fix``, ``set_system_synced``), the
current system time is passed to ``now``; it never reads a clock. GPS time is kept as an offset
from the system time at which the fix was received, so ``now()`` advances between fixes.

The I/O edge, :func:`system_clock_synced`, asks the kernel (``adjtimex``: return value
``TIME_ERROR`` or the ``STA_UNSYNC`` status bit mean "not synchronised") and systemd-timesyncd
(``/run/systemd/timesync/synchronized`` exists once it synchronised since boot).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from agent.model import Fix

log = logging.getLogger(__name__)

ClockPolicy = Literal["auto", "system", "gps"]
ClockSource = Literal["system", "gps"]
CLOCK_POLICIES: tuple[ClockPolicy, ...] = ("auto", "system", "gps")

# GPS times before this are receiver defaults or week-rollover bugs, not the time.
EARLIEST_GPS_TIME = datetime(2024, 1, 1, tzinfo=UTC).timestamp()


class TrustedClock:
    """Chooses between system time and GPS time; see the module docstring for the rule."""

    def __init__(self, policy: ClockPolicy = "auto", *, earliest: float = EARLIEST_GPS_TIME):
        if policy not in CLOCK_POLICIES:
            raise ValueError(f"clock policy must be one of {CLOCK_POLICIES}, not {policy!r}")
        self.policy: ClockPolicy = policy
        self.earliest = earliest
        self._system_synced = False
        self._offset: float | None = None
        self.gps_observations = 0
        self.rejected_fixes = 0  # fixes with a time not worth trusting (no position, too early)

    def set_system_synced(self, synced: bool) -> None:
        self._system_synced = synced

    @property
    def system_synced(self) -> bool:
        return self._system_synced

    def observe_fix(self, fix: Fix, system_time: float) -> bool:
        """Learn GPS time from a fix received at ``system_time``; return whether it was used.

        Pass the system time at which the fix's last sentence arrived (``fix.timestamp`` for a
        live :class:`~agent.gps.source.GpsSource`). Only fixes with a position and a full UTC
        date and time count: a receiver without a position may still be guessing the time.
        """
        if fix.utc is None or not fix.has_position:
            self.rejected_fixes += 1
            return False
        return self.observe_gps_time(fix.utc.timestamp(), system_time)

    def observe_gps_time(self, gps_time: float, system_time: float) -> bool:
        """Record that GPS time was ``gps_time`` when system time was ``system_time``."""
        if gps_time < self.earliest:
            self.rejected_fixes += 1
            return False
        self._offset = gps_time - system_time
        self.gps_observations += 1
        return True

    @property
    def offset(self) -> float | None:
        """GPS time minus system time, from the latest usable fix; None before any."""
        return self._offset

    @property
    def source(self) -> ClockSource:
        if self.policy == "system" or self._offset is None:
            return "system"
        if self.policy == "gps":
            return "gps"
        return "system" if self._system_synced else "gps"

    @property
    def trusted(self) -> bool:
        """False while the time in use is an unsynchronised system clock."""
        return self.policy == "system" or self.source == "gps" or self._system_synced

    def now(self, system_time: float) -> float:
        """The trusted time (epoch seconds) when the system clock reads ``system_time``."""
        if self.source == "gps" and self._offset is not None:
            return system_time + self._offset
        return system_time

    def utcnow(self, system_time: float) -> datetime:
        return datetime.fromtimestamp(self.now(system_time), tz=UTC)


# --- the I/O edge: is the system clock synchronised? -----------------------------------------

TIMESYNCD_FLAG = Path("/run/systemd/timesync/synchronized")
STA_UNSYNC = 0x0040  # <linux/timex.h>
TIME_ERROR = 5  # adjtimex() return value: clock not synchronised


@dataclass(frozen=True, slots=True)
class KernelClockStatus:
    """What ``adjtimex(2)`` (read-only, ``modes = 0``) says about the kernel clock."""

    state: int  # TIME_OK 0, TIME_INS 1, TIME_DEL 2, TIME_OOP 3, TIME_WAIT 4, TIME_ERROR 5
    status: int  # STA_* bits
    maxerror_us: int
    esterror_us: int

    @property
    def synced(self) -> bool:
        return self.state != TIME_ERROR and not self.status & STA_UNSYNC


class _Timeval(ctypes.Structure):
    _fields_ = (("tv_sec", ctypes.c_long), ("tv_usec", ctypes.c_long))


class _Timex(ctypes.Structure):
    """``struct timex`` of glibc (<sys/timex.h>), with its trailing reserved ints."""

    _fields_ = (
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("constant", ctypes.c_long),
        ("precision", ctypes.c_long),
        ("tolerance", ctypes.c_long),
        ("time", _Timeval),
        ("tick", ctypes.c_long),
        ("ppsfreq", ctypes.c_long),
        ("jitter", ctypes.c_long),
        ("shift", ctypes.c_int),
        ("stabil", ctypes.c_long),
        ("jitcnt", ctypes.c_long),
        ("calcnt", ctypes.c_long),
        ("errcnt", ctypes.c_long),
        ("stbcnt", ctypes.c_long),
        ("tai", ctypes.c_int),
        ("reserved", ctypes.c_int * 11),
    )


def read_kernel_clock() -> KernelClockStatus | None:
    """Ask the kernel via ``adjtimex``; None where that call does not exist or fails."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name, use_errno=True)
        adjtimex = libc.adjtimex
    except (OSError, AttributeError) as exc:
        log.debug("adjtimex unavailable: %s", exc)
        return None
    timex = _Timex()  # modes = 0: read only, no privilege needed
    state = int(adjtimex(ctypes.byref(timex)))
    if state < 0:
        log.debug("adjtimex failed: errno %d", ctypes.get_errno())
        return None
    return KernelClockStatus(state, int(timex.status), int(timex.maxerror), int(timex.esterror))


def decide_synced(kernel: KernelClockStatus | None, timesyncd_synced: bool) -> bool:
    """Synchronised when the kernel says so, or when timesyncd has synchronised since boot."""
    return (kernel is not None and kernel.synced) or timesyncd_synced


def system_clock_synced(flag: Path = TIMESYNCD_FLAG) -> bool:
    """Is the system clock synchronised now? Cheap enough to poll every few seconds."""
    return decide_synced(read_kernel_clock(), flag.exists())
