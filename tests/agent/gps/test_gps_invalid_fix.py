"""A fix the receiver calls invalid never decides a zone: one sentence of the epoch saying "no
fix" (RMC V, GGA quality 0, mode N, GSA mode 1) outweighs another that gives a position."""

from __future__ import annotations

import pytest

from agent.gps.nmea import NmeaParser
from agent.model import Fix, FixType
from agent.monitors.zone import FixGate
from tests.agent.gps.gps_sentences import sentence

RMC_VALID = "GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W"
GGA_VALID = "GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,"
# what a receiver that lost its satellites sends while its RMC still claims the last position
GGA_NO_FIX = "GPGGA,123519,4807.038,N,01131.000,E,0,00,99.9,545.4,M,46.9,M,,"
GGA_NO_FIX_EMPTY = "GPGGA,123519,,,,,0,00,99.9,,M,,M,,"
GSA_3D = "GPGSA,A,3,04,05,,09,12,,,24,,,,,2.5,1.3,2.1"
GSA_NO_FIX = "GPGSA,A,1,,,,,,,,,,,,,99.9,99.9,99.9"
VTG_NO_FIX = "GPVTG,084.4,T,,M,022.4,N,041.5,K,N"
RMC_MODE_N = "GNRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,,,N"


def one_fix(*bodies: str) -> tuple[Fix, dict[str, int]]:
    parser = NmeaParser()
    fixes = parser.feed(b"".join(sentence(b) for b in bodies), 1000.0) + parser.flush(1000.5)
    assert len(fixes) == 1
    return fixes[0], parser.counters


def test_valid_epoch_passes_the_gate() -> None:
    fix, counters = one_fix(RMC_VALID, GGA_VALID, GSA_3D)
    assert fix.has_position and fix.quality == 1 and fix.fix_type is FixType.FIX_3D
    assert FixGate().passes(fix, 1001.0)
    assert counters["fixes_invalid"] == 0


@pytest.mark.parametrize(
    "bodies",
    [
        (RMC_VALID, GGA_NO_FIX),
        (GGA_NO_FIX, RMC_VALID),  # order does not matter
        (RMC_VALID, GGA_NO_FIX_EMPTY),
        (RMC_VALID, GGA_VALID, GSA_NO_FIX),
        (RMC_VALID, VTG_NO_FIX, GGA_VALID),
        (RMC_MODE_N, GGA_VALID),
    ],
    ids=["rmc-A-gga-0", "gga-0-first", "gga-0-empty", "gsa-1", "vtg-N", "rmc-mode-N"],
)
def test_any_sentence_calling_the_fix_invalid_removes_its_position(bodies: tuple[str]) -> None:
    fix, counters = one_fix(*bodies)
    assert not fix.has_position and fix.latitude is None and fix.longitude is None
    assert fix.quality == 0 and fix.fix_type is FixType.NONE
    assert not FixGate().passes(fix, 1001.0)
    assert not FixGate(require_fix=False).passes(fix, 1001.0)  # no position, whatever the gate
    assert counters["fixes_invalid"] == 1 and counters["fixes_no_position"] == 1


def test_invalid_epoch_keeps_what_the_receiver_said_of_its_sky() -> None:
    fix, _ = one_fix(RMC_VALID, GGA_NO_FIX)
    assert fix.hdop == 99.9 and fix.satellites == 0
    assert fix.utc is not None and fix.utc.hour == 12 and fix.utc.minute == 35


def test_next_valid_epoch_is_used_again() -> None:
    later_rmc = RMC_VALID.replace("123519", "123520")
    later_gga = GGA_VALID.replace("123519", "123520")
    parser = NmeaParser()
    data = b"".join(sentence(b) for b in (RMC_VALID, GGA_NO_FIX, later_rmc, later_gga))
    fixes = parser.feed(data, 1000.0) + parser.flush(1000.5)
    assert [f.has_position for f in fixes] == [False, True]
    assert FixGate().passes(fixes[1], 1001.0)
