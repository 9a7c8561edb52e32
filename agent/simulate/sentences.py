"""NMEA 0183 sentences for one GPS epoch (RMC, VTG, GGA, GSA), with valid checksums. Pure.

Lines are returned without the ``\\r\\n`` terminator; writers add it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import reduce

KNOTS_PER_KMH = 1 / 1.852
# Satellite PRNs listed in GSA (a fixed, plausible set; only the count varies).
_PRNS = (2, 5, 7, 9, 13, 15, 18, 20, 24, 27, 29, 30)


@dataclass(frozen=True, slots=True)
class EpochFix:
    """What the receiver reports for one epoch; ``latitude`` None = no fix."""

    utc: datetime
    latitude: float | None
    longitude: float | None
    speed_kmh: float = 0.0
    course: float = 0.0
    altitude: float = 35.0
    hdop: float = 0.9
    satellites: int = 9


def checksum(body: str) -> str:
    """XOR of every character between ``$`` and ``*``, as two hex digits."""
    return f"{reduce(lambda acc, ch: acc ^ ord(ch), body, 0):02X}"


def sentence(body: str) -> str:
    return f"${body}*{checksum(body)}"


def _angle(value: float, degree_digits: int, hemispheres: str) -> tuple[str, str]:
    """``ddmm.mmmm`` / ``dddmm.mmmm`` text and hemisphere letter, rounded without a 60.0000."""
    hemisphere = hemispheres[0] if value >= 0 else hemispheres[1]
    ten_thousandths = round(abs(value) * 60 * 10_000)  # minutes x 1e4
    degrees, minutes = divmod(ten_thousandths, 60 * 10_000)
    text = f"{degrees:0{degree_digits}d}{minutes // 10_000:02d}.{minutes % 10_000:04d}"
    return text, hemisphere


def _time(utc: datetime) -> str:
    return f"{utc:%H%M%S}.{utc.microsecond // 10_000:02d}"


def rmc(fix: EpochFix, talker: str) -> str:
    date = f"{fix.utc:%d%m%y}"
    if fix.latitude is None or fix.longitude is None:
        return sentence(f"{talker}RMC,{_time(fix.utc)},V,,,,,,,{date},,,N")
    lat, ns = _angle(fix.latitude, 2, "NS")
    lon, ew = _angle(fix.longitude, 3, "EW")
    knots = fix.speed_kmh * KNOTS_PER_KMH
    return sentence(
        f"{talker}RMC,{_time(fix.utc)},A,{lat},{ns},{lon},{ew},{knots:.2f},{fix.course:.1f},"
        f"{date},,,A"
    )


def vtg(fix: EpochFix, talker: str) -> str:
    if fix.latitude is None:
        return sentence(f"{talker}VTG,,T,,M,,N,,K,N")
    knots = fix.speed_kmh * KNOTS_PER_KMH
    return sentence(f"{talker}VTG,{fix.course:.1f},T,,M,{knots:.2f},N,{fix.speed_kmh:.2f},K,A")


def gga(fix: EpochFix, talker: str) -> str:
    if fix.latitude is None or fix.longitude is None:
        return sentence(f"{talker}GGA,{_time(fix.utc)},,,,,0,00,99.99,,,,,,")
    lat, ns = _angle(fix.latitude, 2, "NS")
    lon, ew = _angle(fix.longitude, 3, "EW")
    return sentence(
        f"{talker}GGA,{_time(fix.utc)},{lat},{ns},{lon},{ew},1,{fix.satellites:02d},"
        f"{fix.hdop:.2f},{fix.altitude:.1f},M,47.0,M,,"
    )


def gsa(fix: EpochFix, talker: str) -> str:
    if fix.latitude is None:
        return sentence(f"{talker}GSA,A,1,,,,,,,,,,,,,99.99,99.99,99.99")
    count = max(0, min(fix.satellites, len(_PRNS)))
    prns = [f"{p:02d}" for p in _PRNS[:count]] + [""] * (len(_PRNS) - count)
    pdop = round(fix.hdop * 1.6, 2)
    vdop = round(fix.hdop * 1.3, 2)
    return sentence(f"{talker}GSA,A,3,{','.join(prns)},{pdop:.2f},{fix.hdop:.2f},{vdop:.2f}")


def epoch_sentences(fix: EpochFix, talker: str = "GP") -> list[str]:
    """The sentences a receiver sends for one epoch, in the usual order."""
    return [rmc(fix, talker), vtg(fix, talker), gga(fix, talker), gsa(fix, talker)]
