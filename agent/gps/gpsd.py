"""gpsd's JSON reports to GPS fixes: one :class:`~agent.model.Fix` per TPV report.

Pure: bytes and the time they were received (``now``) go in, fixes and counters come out; the
socket lives in ``agent.gps.gpsd_source``. Protocol: gpsd_json(5). After ``?WATCH={"enable":true,
"json":true}`` gpsd sends one JSON object per line (CR LF), each with a ``class``: ``TPV`` (time,
position, velocity), ``SKY`` (satellites, dilution), and others (``VERSION``, ``DEVICES``,
``WATCH``, ``GST``, ``PPS``...) that are counted as ``ignored``. gpsd omits a field it does not
know (it never sends null), so an absent field is "not said".

Conversion: TPV ``mode`` 0/1 is no fix (no position), 2 and 3 are 2D and 3D fixes; ``status``
(gpsd's fix status) becomes the GGA quality of the Fix (1 GPS, 2 DGPS, 4 RTK fixed, 5 RTK float,
6 dead reckoning, 8 simulation); ``speed`` m/s becomes km/h; ``altMSL`` (older gpsd: ``alt``) the
altitude. HDOP and the satellites used come from the latest SKY report, if it is at most
``sky_max_age`` seconds old (gpsd sends SKY less often than TPV).

Counters (all present from the start): ``bytes``, ``lines``, ``reports`` (valid JSON objects),
``ignored``, ``fixes``, ``fixes_no_position``, ``gpsd_errors`` (class ERROR), and the skips
``skipped_not_json``, ``skipped_overlong``, ``skipped_bad_report`` (a TPV or SKY whose fields
are of the wrong type or out of range).
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from agent.model import Fix, FixType

log = logging.getLogger(__name__)

DEFAULT_PORT = 2947
MAX_LINE = 64 * 1024  # a SKY with every satellite of four constellations is a few kB
GPSD_COUNTERS = (
    "bytes",
    "lines",
    "reports",
    "ignored",
    "fixes",
    "fixes_no_position",
    "gpsd_errors",
    "skipped_not_json",
    "skipped_overlong",
    "skipped_bad_report",
)
# gpsd's TPV status to the GGA quality the rest of the agent knows (0 is "unknown": plain GPS)
_STATUS_QUALITY = {0: 1, 1: 1, 2: 2, 3: 4, 4: 5, 5: 6, 6: 1, 7: 1, 8: 8, 9: 1}
_MS_TO_KMH = 3.6


class BadReport(ValueError):
    """A field of a report is present but not usable."""


@dataclass(frozen=True, slots=True)
class GpsdAddress:
    """Where gpsd listens, and which of its devices to watch (None: all)."""

    host: str
    port: int = DEFAULT_PORT
    device: str | None = None


def parse_gpsd_url(url: str) -> GpsdAddress:
    """``gpsd://host[:port][/dev/ttyACM0]``; raise ValueError saying what is wrong."""
    parts = urlsplit(url)
    if parts.scheme != "gpsd":
        raise ValueError("must start with gpsd://")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError("gpsd://host[:port][/device] takes nothing else")
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError as exc:  # a port that is no number or out of range
        raise ValueError(f"bad port: {exc}") from exc
    if not parts.hostname:
        raise ValueError("needs a host, e.g. gpsd://127.0.0.1:2947")
    return GpsdAddress(parts.hostname, port, parts.path or None)


def watch_command(device: str | None = None) -> bytes:
    """The request that starts the JSON report stream (for one device, or all)."""
    watch: dict[str, Any] = {"enable": True, "json": True}
    if device:
        watch["device"] = device
    return b"?WATCH=" + json.dumps(watch, separators=(",", ":")).encode("ascii") + b"\n"


@dataclass(slots=True)
class _Sky:
    received: float
    hdop: float | None
    satellites: int | None


class GpsdReader:
    """Incremental reader of gpsd's report stream: ``feed`` bytes, get one Fix per TPV."""

    def __init__(self, *, sky_max_age: float = 5.0, max_line: int = MAX_LINE) -> None:
        self.counters: dict[str, int] = dict.fromkeys(GPSD_COUNTERS, 0)
        self.sky_max_age = sky_max_age
        self.max_line = max_line
        self._buffer = b""
        self._discarding = False  # inside an overlong line: drop up to its end
        self._sky: _Sky | None = None

    def feed(self, data: bytes, now: float) -> list[Fix]:
        """Parse bytes received at ``now``; return the fixes of the TPV reports they complete."""
        self.counters["bytes"] += len(data)
        self._buffer += data
        fixes: list[Fix] = []
        while True:
            line, newline, rest = self._buffer.partition(b"\n")
            if not newline:
                break
            self._buffer = rest
            if self._discarding:
                self._discarding = False
                continue
            fix = self._line(line.strip(), now)
            if fix is not None:
                fixes.append(fix)
        if len(self._buffer) > self.max_line:
            self.counters["skipped_overlong"] += 1
            self._buffer, self._discarding = b"", True
        return fixes

    def reset(self) -> None:
        """Connection lost: forget the partial line and the last SKY."""
        self._buffer, self._discarding, self._sky = b"", False, None

    def _line(self, line: bytes, now: float) -> Fix | None:
        if not line:
            return None
        self.counters["lines"] += 1
        try:
            report = json.loads(line)
        except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
            self.counters["skipped_not_json"] += 1
            return None
        if not isinstance(report, dict) or not isinstance(report.get("class"), str):
            self.counters["skipped_not_json"] += 1
            return None
        self.counters["reports"] += 1
        try:
            return self._report(report, now)
        except BadReport as exc:
            self.counters["skipped_bad_report"] += 1
            log.debug("gpsd %s report skipped: %s", report["class"], exc)
            return None

    def _report(self, report: dict[str, Any], now: float) -> Fix | None:
        kind = report["class"]
        if kind == "TPV":
            fix = self._fix(report, now)
            self.counters["fixes"] += 1
            if not fix.has_position:
                self.counters["fixes_no_position"] += 1
            return fix
        if kind == "SKY":
            self._sky = _read_sky(report, now)
        elif kind == "ERROR":
            self.counters["gpsd_errors"] += 1
            log.warning("gpsd says: %s", str(report.get("message", ""))[:200])
        else:
            self.counters["ignored"] += 1
        return None

    def _fix(self, tpv: dict[str, Any], now: float) -> Fix:
        mode = _integer(tpv, "mode") or 0
        if mode not in (0, 1, 2, 3):
            raise BadReport(f"mode {mode}")
        sky = self._sky if self._sky and now - self._sky.received <= self.sky_max_age else None
        hdop, satellites = (sky.hdop, sky.satellites) if sky else (None, None)
        utc = _time(tpv)
        latitude = _number(tpv, "lat", 90.0)
        longitude = _number(tpv, "lon", 180.0)
        if mode < 2 or latitude is None or longitude is None:
            return Fix(now, utc, None, None, hdop=hdop, satellites=satellites, talker="gpsd")
        status = _integer(tpv, "status") or 0
        speed = _number(tpv, "speed", 1e4)
        altitude = _number(tpv, "altMSL", 1e6)
        return Fix(
            timestamp=now,
            utc=utc,
            latitude=latitude,
            longitude=longitude,
            speed_kmh=None if speed is None else abs(speed) * _MS_TO_KMH,
            course=_number(tpv, "track", 360.0),
            altitude=altitude if altitude is not None else _number(tpv, "alt", 1e6),
            fix_type=FixType(mode),
            quality=_STATUS_QUALITY.get(status, 1),
            hdop=hdop,
            satellites=satellites,
            talker="gpsd",
        )


def _read_sky(sky: dict[str, Any], now: float) -> _Sky:
    used = _integer(sky, "uSat")  # gpsd 3.23+
    satellites = sky.get("satellites")
    if used is None and isinstance(satellites, list):
        used = sum(1 for s in satellites if isinstance(s, dict) and s.get("used") is True)
    return _Sky(now, _number(sky, "hdop", 100.0), used)


def _time(tpv: dict[str, Any]) -> datetime | None:
    text = tpv.get("time")
    if text is None:
        return None
    if not isinstance(text, str) or len(text) > 40:
        raise BadReport("time is not ISO 8601 text")
    try:
        stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise BadReport(f"bad time {text!r}") from exc
    if stamp.tzinfo is None:
        raise BadReport(f"time without a zone {text!r}")
    return stamp.astimezone(UTC)


def _number(report: dict[str, Any], key: str, limit: float) -> float | None:
    value = report.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadReport(f"{key} is not a number")
    if not math.isfinite(value) or abs(value) > limit:
        raise BadReport(f"{key} out of range: {value}")
    return float(value)


def _integer(report: dict[str, Any], key: str) -> int | None:
    value = report.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1000:
        raise BadReport(f"{key} is not a small integer")
    return value
