"""TrustedClock: which clock is trusted, both ways; and the synchronisation probe."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from agent.gps.clock import (
    STA_UNSYNC,
    TIME_ERROR,
    KernelClockStatus,
    TrustedClock,
    decide_synced,
    read_kernel_clock,
    system_clock_synced,
)
from agent.model import Fix, FixType

GPS_NOW = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)
BOOT_CLOCK = 1_000.0  # a Pi without RTC starts near 1970


def fix_at(utc: datetime | None, position: bool = True) -> Fix:
    return Fix(
        timestamp=BOOT_CLOCK,
        utc=utc,
        latitude=48.1 if position else None,
        longitude=11.5 if position else None,
        fix_type=FixType.FIX_3D if position else FixType.NONE,
    )


def test_unsynchronised_system_clock_gives_way_to_gps_time_which_keeps_running() -> None:
    clock = TrustedClock("auto")
    assert clock.source == "system" and not clock.trusted
    assert clock.now(BOOT_CLOCK) == BOOT_CLOCK
    assert clock.observe_fix(fix_at(GPS_NOW), system_time=BOOT_CLOCK)
    assert clock.source == "gps" and clock.trusted
    assert clock.offset == GPS_NOW.timestamp() - BOOT_CLOCK
    assert clock.now(BOOT_CLOCK) == GPS_NOW.timestamp()
    assert clock.now(BOOT_CLOCK + 2.5) == GPS_NOW.timestamp() + 2.5  # advances between fixes
    assert clock.utcnow(BOOT_CLOCK + 60) == datetime(2026, 11, 23, 12, 1, tzinfo=UTC)


def test_synchronised_system_clock_wins_over_gps() -> None:
    clock = TrustedClock("auto")
    clock.observe_fix(fix_at(GPS_NOW), system_time=BOOT_CLOCK)
    clock.set_system_synced(True)
    assert clock.source == "system" and clock.trusted
    system_now = GPS_NOW.timestamp() + 0.3  # NTP says a little more than GPS did
    assert clock.now(system_now) == system_now
    clock.set_system_synced(False)  # synchronisation lost: back to GPS
    assert clock.source == "gps"


def test_synchronised_without_any_fix_is_trusted_system_time() -> None:
    clock = TrustedClock("auto")
    clock.set_system_synced(True)
    assert clock.source == "system" and clock.trusted and clock.offset is None


def test_fix_without_position_or_date_or_with_a_receiver_default_time_is_not_used() -> None:
    clock = TrustedClock("auto")
    assert not clock.observe_fix(fix_at(GPS_NOW, position=False), BOOT_CLOCK)
    assert not clock.observe_fix(fix_at(None), BOOT_CLOCK)
    assert not clock.observe_fix(fix_at(datetime(2006, 4, 9, tzinfo=UTC)), BOOT_CLOCK)  # rollover
    assert clock.source == "system" and clock.offset is None
    assert clock.rejected_fixes == 3 and clock.gps_observations == 0


def test_latest_fix_sets_the_offset() -> None:
    clock = TrustedClock("auto")
    clock.observe_fix(fix_at(GPS_NOW), BOOT_CLOCK)
    clock.observe_gps_time(GPS_NOW.timestamp() + 10, BOOT_CLOCK + 9)  # system clock ran slow
    assert clock.now(BOOT_CLOCK + 9) == GPS_NOW.timestamp() + 10
    assert clock.gps_observations == 2


def test_policy_system_never_uses_gps() -> None:
    clock = TrustedClock("system")
    clock.observe_fix(fix_at(GPS_NOW), BOOT_CLOCK)
    assert clock.source == "system" and clock.trusted
    assert clock.now(BOOT_CLOCK) == BOOT_CLOCK


def test_policy_gps_uses_gps_even_when_the_system_clock_is_synchronised() -> None:
    clock = TrustedClock("gps")
    clock.set_system_synced(True)
    assert clock.source == "system"  # nothing from GPS yet
    clock.observe_fix(fix_at(GPS_NOW), BOOT_CLOCK)
    assert clock.source == "gps" and clock.now(BOOT_CLOCK) == GPS_NOW.timestamp()


def test_unknown_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="clock policy"):
        TrustedClock("ntp")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("state", "status", "flag", "synced"),
    [
        (0, 0, False, True),  # TIME_OK, STA_UNSYNC clear
        (TIME_ERROR, STA_UNSYNC, False, False),  # fresh boot, nobody set the clock
        (0, STA_UNSYNC, False, False),
        (TIME_ERROR, 0, False, False),
        (TIME_ERROR, STA_UNSYNC, True, True),  # timesyncd synchronised since boot
    ],
)
def test_synchronisation_decision(state: int, status: int, flag: bool, synced: bool) -> None:
    assert decide_synced(KernelClockStatus(state, status, 0, 0), flag) is synced


def test_no_adjtimex_falls_back_to_the_timesyncd_flag() -> None:
    assert decide_synced(None, True) and not decide_synced(None, False)


def test_kernel_probe_reads_adjtimex_and_the_flag_file(tmp_path: Path) -> None:
    kernel = read_kernel_clock()
    assert kernel is not None  # Linux: adjtimex with modes=0 needs no privilege
    assert 0 <= kernel.state <= TIME_ERROR and kernel.maxerror_us >= 0
    flag = tmp_path / "synchronized"
    assert system_clock_synced(flag) is kernel.synced
    flag.touch()
    assert system_clock_synced(flag) is True
