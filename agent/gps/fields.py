"""Read the fields of RMC, GGA, VTG and GSA sentences (pynmea2 objects) into plain readings.

Pure. pynmea2 splits and types the sentence; its converters silently return the raw string when
a field does not convert, and its ``latitude`` reads a missing hemisphere as 0.0, so every field
is checked here and a field that is present but wrong raises :class:`MalformedSentence`. An empty
field is simply absent (None). The pynmea2 objects go no further than this module and
``agent.gps.nmea``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import date, time
from typing import Any

KNOT_KMH = 1.852

# NMEA 2.3+ mode indicator (RMC/VTG/GLL) to the GGA quality it corresponds to.
_MODE_QUALITY = {"A": 1, "D": 2, "P": 3, "R": 4, "F": 5, "E": 6, "M": 7, "S": 8}
_COORDINATE = re.compile(r"^(\d{1,3})(\d\d(?:\.\d+)?)$")
MIN_FIELDS = {"RMC": 9, "GGA": 9, "VTG": 8, "GSA": 17}


class MalformedSentence(ValueError):
    """A field is present but does not hold a valid value."""


@dataclass(slots=True)
class Reading:
    """What one sentence says; None means "not said"."""

    kind: str
    talker: str
    tod: time | None = None
    day: date | None = None
    valid: bool | None = None  # does this sentence claim a usable position/velocity?
    latitude: float | None = None
    longitude: float | None = None
    speed_kmh: float | None = None
    course: float | None = None
    altitude: float | None = None
    quality: int | None = None
    hdop: float | None = None
    satellites: int | None = None
    gsa_mode: int | None = None


def read_sentence(kind: str, msg: Any) -> Reading:
    """Turn a pynmea2 sentence of a handled ``kind`` into a Reading (or raise MalformedSentence)."""
    if len(msg.data) < MIN_FIELDS[kind]:
        raise MalformedSentence(f"{kind} has {len(msg.data)} fields, needs {MIN_FIELDS[kind]}")
    reading = Reading(kind=kind, talker=msg.talker)
    _READERS[kind](msg, reading)
    return reading


def _read_rmc(msg: Any, out: Reading) -> None:
    out.tod = _tod(msg.data[0])
    out.day = _day(msg.data[8])
    mode = msg.data[11] if len(msg.data) > 11 else ""
    out.valid = msg.data[1] == "A" and mode != "N"
    if out.valid:
        out.quality = _MODE_QUALITY.get(mode, 1)
        out.latitude, out.longitude = _position(msg.data[2:6])
        knots = _number(msg.data[6])
        out.speed_kmh = None if knots is None else knots * KNOT_KMH
        out.course = _number(msg.data[7])


def _read_gga(msg: Any, out: Reading) -> None:
    out.tod = _tod(msg.data[0])
    quality = _integer(msg.data[5])
    out.quality = quality
    out.valid = quality is not None and quality > 0
    out.satellites = _integer(msg.data[6])
    out.hdop = _number(msg.data[7])
    if out.valid:
        out.latitude, out.longitude = _position(msg.data[1:5])
        out.altitude = _number(msg.data[8])


def _read_vtg(msg: Any, out: Reading) -> None:
    mode = msg.data[8] if len(msg.data) > 8 else ""
    out.valid = mode != "N"
    if out.valid:
        out.course = _number(msg.data[0])
        kmh = _number(msg.data[6])
        knots = _number(msg.data[4])
        out.speed_kmh = kmh if kmh is not None or knots is None else knots * KNOT_KMH


def _read_gsa(msg: Any, out: Reading) -> None:
    out.gsa_mode = _integer(msg.data[1])
    if out.gsa_mode is not None and out.gsa_mode not in (1, 2, 3):
        raise MalformedSentence(f"GSA fix mode {out.gsa_mode}")
    out.satellites = sum(1 for prn in msg.data[2:14] if prn.strip())
    out.hdop = _number(msg.data[15])


_READERS = {"RMC": _read_rmc, "GGA": _read_gga, "VTG": _read_vtg, "GSA": _read_gsa}


def _tod(text: str) -> time | None:
    """``hhmmss[.sss]`` UTC time of day."""
    if not text:
        return None
    if len(text) < 6 or not text[:6].isdigit():
        raise MalformedSentence(f"bad time {text!r}")
    hour, minute, second = int(text[0:2]), int(text[2:4]), int(text[4:6])
    fraction = _number(text[6:]) if text[6:] else 0.0
    if hour > 23 or minute > 59 or second > 59 or fraction is None or not 0 <= fraction < 1:
        # A leap second (60) cannot be a datetime; dropping one epoch in years costs nothing.
        raise MalformedSentence(f"bad time {text!r}")
    return time(hour, minute, second, round(fraction * 1_000_000) % 1_000_000)


def _day(text: str) -> date | None:
    """``ddmmyy``; two-digit years 80-99 are 1980-1999 (GPS began in 1980), the rest 20xx."""
    if not text:
        return None
    if len(text) != 6 or not text.isdigit():
        raise MalformedSentence(f"bad date {text!r}")
    try:
        year = int(text[4:6])
        return date(year + (1900 if year >= 80 else 2000), int(text[2:4]), int(text[0:2]))
    except ValueError as exc:
        raise MalformedSentence(f"bad date {text!r}") from exc


def _position(fields: list[str]) -> tuple[float | None, float | None]:
    """``lat, N|S, lon, E|W`` to signed degrees; (None, None) when the receiver left them empty."""
    lat_text, lat_dir, lon_text, lon_dir = fields
    if not lat_text and not lon_text:
        return None, None
    latitude = _coordinate(lat_text, lat_dir, "NS", 90.0)
    longitude = _coordinate(lon_text, lon_dir, "EW", 180.0)
    return latitude, longitude


def _coordinate(text: str, hemisphere: str, letters: str, limit: float) -> float:
    match = _COORDINATE.match(text)
    if match is None or hemisphere not in (letters[0], letters[1]):
        raise MalformedSentence(f"bad coordinate {text!r} {hemisphere!r}")
    degrees, minutes = int(match.group(1)), float(match.group(2))
    value = degrees + minutes / 60.0
    if minutes >= 60.0 or value > limit:
        raise MalformedSentence(f"coordinate out of range {text!r}")
    return -value if hemisphere == letters[1] else value


def _number(text: str) -> float | None:
    if not text:
        return None
    try:
        value = float(text)
    except ValueError as exc:
        raise MalformedSentence(f"bad number {text!r}") from exc
    if not math.isfinite(value):
        raise MalformedSentence(f"bad number {text!r}")
    return value


def _integer(text: str) -> int | None:
    if not text:
        return None
    if not text.isdigit():
        raise MalformedSentence(f"bad integer {text!r}")
    return int(text)
