"""NMEA 0183 bytes to GPS fixes: one :class:`~agent.model.Fix` per receiver epoch.

Pure: bytes and the time they were received (``now``) go in, fixes and counters come out; nothing
here reads a clock or a device. ``agent.gps.source`` feeds it from a serial port,
:func:`read_nmea_file` from a recording.

Pipeline: :class:`~agent.gps.framing.SentenceFramer` cuts the stream into ``$...`` lines and
counts the junk between them; each line's checksum is checked here; RMC, GGA, VTG and GSA from any
talker (GP, GN, GL, GA, GB, BD, QZ...) are parsed by pynmea2 and read by
:mod:`agent.gps.fields`; the readings of one epoch (same UTC time of day) are merged into a Fix.

An epoch ends when a sentence with another time arrives; when its RMC, GGA or VTG comes again;
when a time-less VTG/GSA arrives that the receiver's learnt sentence order puts before a kind the
epoch already has (the next epoch's RMC was lost); when ``epoch_timeout`` seconds pass without a
sentence (:meth:`NmeaParser.poll`, or the next :meth:`NmeaParser.feed`); or on
:meth:`NmeaParser.flush`. A sentence of an epoch already emitted is dropped (``skipped_late``):
one fix per epoch.

Counters (all present from the start): ``bytes``, ``lines``, ``sentences`` (used), ``ignored``
(valid sentences of other types, e.g. GSV, GLL, TXT), ``fixes``, ``fixes_no_position``,
``fixes_invalid`` (a position was given but another sentence of the epoch called the fix invalid:
RMC status V, GGA quality 0, mode indicator N, GSA mode 1; the fix carries no position),
``fixes_undated`` (a time of day but no date known yet), and the skips ``skipped_nul``,
``skipped_binary``, ``skipped_text``, ``skipped_ubx``, ``skipped_truncated``, ``skipped_overlong``,
``skipped_checksum``, ``skipped_no_checksum``, ``skipped_proprietary``, ``skipped_unknown``,
``skipped_malformed``, ``skipped_late``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import TypeVar

import pynmea2

from agent.gps.fields import MalformedSentence, Reading, read_sentence
from agent.gps.framing import SentenceFramer
from agent.model import Fix, FixType

log = logging.getLogger(__name__)

HANDLED = frozenset({"RMC", "GGA", "VTG", "GSA"})
_HALF_DAY = 12 * 3600
PARSER_COUNTERS = (
    "lines",
    "sentences",
    "ignored",
    "fixes",
    "fixes_no_position",
    "fixes_invalid",
    "fixes_undated",
    "skipped_checksum",
    "skipped_no_checksum",
    "skipped_proprietary",
    "skipped_unknown",
    "skipped_malformed",
    "skipped_late",
)
_HEX = frozenset(b"0123456789ABCDEFabcdef")
_T = TypeVar("_T")


def nmea_checksum(body: str) -> str:
    """The two-hex-digit checksum of a sentence body (between ``$`` and ``*``)."""
    return f"{_xor(body.encode('ascii')):02X}"


def _xor(data: bytes) -> int:
    value = 0
    for byte in data:
        value ^= byte
    return value


@dataclass(slots=True)
class _Epoch:
    """The readings of one epoch merged so far; the first sentence to say a thing wins."""

    last_seen: float
    talker: str
    tod: time | None = None
    day: date | None = None
    kinds: dict[str, None] = field(default_factory=dict)  # sentence kinds, in arrival order
    latitude: float | None = None
    longitude: float | None = None
    speed_kmh: float | None = None
    course: float | None = None
    altitude: float | None = None
    quality: int | None = None  # GGA quality
    mode_quality: int | None = None  # from the RMC mode letter
    hdop: float | None = None
    gsa_hdop: float | None = None
    satellites: int | None = None  # GGA
    gsa_satellites: int | None = None  # summed over the epoch's GSA (one per constellation)
    gsa_mode: int | None = None
    invalid_by: set[str] = field(default_factory=set)  # kinds whose sentence said "no fix"

    def merge(self, reading: Reading, now: float) -> None:
        self.last_seen = now
        self.kinds.setdefault(reading.kind)
        if reading.valid is False:
            self.invalid_by.add(reading.kind)
        if reading.kind == "RMC":
            self.talker = reading.talker
        self.day = self.day or reading.day
        if reading.latitude is not None and self.latitude is None:
            self.latitude, self.longitude = reading.latitude, reading.longitude
        if reading.kind == "GSA":
            self._merge_gsa(reading)
            return
        if reading.kind == "VTG" and reading.speed_kmh is not None:
            self.speed_kmh = reading.speed_kmh  # km/h as sent beats RMC's knots converted
        else:
            self.speed_kmh = _first(self.speed_kmh, reading.speed_kmh)
        self.course = _first(self.course, reading.course)
        self.altitude = _first(self.altitude, reading.altitude)
        self.hdop = _first(self.hdop, reading.hdop)
        self.satellites = _first(self.satellites, reading.satellites)
        if reading.kind == "GGA":
            self.quality = _first(self.quality, reading.quality)
        else:
            self.mode_quality = _first(self.mode_quality, reading.quality)

    def _merge_gsa(self, reading: Reading) -> None:
        if reading.gsa_mode is not None:
            self.gsa_mode = max(self.gsa_mode or 0, reading.gsa_mode)
        self.gsa_satellites = (self.gsa_satellites or 0) + (reading.satellites or 0)
        self.gsa_hdop = _first(self.gsa_hdop, reading.hdop)

    @property
    def invalid(self) -> bool:
        """Did any sentence of the epoch call the fix invalid (RMC V, GGA quality 0, mode N,
        GSA mode 1)? Then no sentence of it may give a position: the receiver knows best."""
        return bool(self.invalid_by) or self.gsa_mode == 1

    def to_fix(self, day: date | None) -> Fix:
        has_position = self.latitude is not None and self.longitude is not None
        has_position = has_position and not self.invalid
        utc = None
        if day is not None and self.tod is not None:
            utc = datetime.combine(day, self.tod).replace(tzinfo=UTC)
        hdop = _first(self.hdop, self.gsa_hdop)
        satellites = _first(self.satellites, self.gsa_satellites)
        if not has_position:
            return Fix(
                timestamp=self.last_seen,
                utc=utc,
                latitude=None,
                longitude=None,
                hdop=hdop,
                satellites=satellites,
                talker=self.talker,
            )
        if self.gsa_mode in (2, 3):
            fix_type = FixType(self.gsa_mode)
        else:
            fix_type = FixType.FIX_3D if self.altitude is not None else FixType.FIX_2D
        quality = _first(self.quality, self.mode_quality)
        return Fix(
            timestamp=self.last_seen,
            utc=utc,
            latitude=self.latitude,
            longitude=self.longitude,
            speed_kmh=self.speed_kmh,
            course=self.course,
            altitude=self.altitude,
            fix_type=fix_type,
            quality=quality if quality is not None else 1,
            hdop=hdop,
            satellites=satellites,
            talker=self.talker,
        )


def _first(current: _T | None, new: _T | None) -> _T | None:
    return current if current is not None else new


class NmeaParser:
    """Incremental NMEA parser: ``feed`` bytes as they arrive, get one Fix per completed epoch."""

    def __init__(
        self,
        require_checksum: bool = True,
        *,
        epoch_timeout: float | None = 0.5,
        max_sentence_length: int = 160,
    ) -> None:
        self.require_checksum = require_checksum
        self.epoch_timeout = epoch_timeout
        self.counters: dict[str, int] = {}
        self._framer = SentenceFramer(self.counters, max_sentence_length)
        for name in PARSER_COUNTERS:
            self.counters[name] = 0
        self._epoch: _Epoch | None = None
        self._out: list[Fix] = []
        self._last_tod: time | None = None  # of the last emitted epoch
        self._last_day: date | None = None
        self._order: dict[str, int] = {}  # sentence kinds in the order the receiver sends them

    def feed(self, data: bytes, now: float) -> list[Fix]:
        """Parse bytes received at ``now``; return the fixes of the epochs they completed."""
        self._expire(now)
        for line in self._framer.push(data):
            self._line(line, now)
        return self._take()

    def poll(self, now: float) -> list[Fix]:
        """Emit the pending epoch if no sentence came for ``epoch_timeout`` seconds."""
        self._expire(now)
        return self._take()

    def _expire(self, now: float) -> None:
        epoch = self._epoch
        timeout = self.epoch_timeout
        if epoch is not None and timeout is not None and now - epoch.last_seen >= timeout:
            self._emit()

    def flush(self, now: float) -> list[Fix]:
        """End of stream (or port lost): count the unfinished line, emit the pending epoch."""
        del now  # the pending epoch keeps the receive time of its last sentence
        self._framer.finish()
        if self._epoch is not None:
            self._emit()
        return self._take()

    def _take(self) -> list[Fix]:
        out, self._out = self._out, []
        return out

    def _line(self, line: bytes, now: float) -> None:
        self.counters["lines"] += 1
        body = self._verified_body(line.rstrip())
        if body is None:
            return
        address = body.split(",", 1)[0]
        if address.startswith("P"):
            self.counters["skipped_proprietary"] += 1
            return
        kind = address[2:]
        if len(address) != 5 or not address.isalnum():
            self.counters["skipped_unknown"] += 1
        elif kind in HANDLED:
            self._sentence(body, kind, now)
        elif kind in pynmea2.TalkerSentence.sentence_types:
            self.counters["ignored"] += 1
        else:
            self.counters["skipped_unknown"] += 1

    def _verified_body(self, line: bytes) -> str | None:
        """The text between ``$`` and ``*``; None (counted) when the checksum is bad or missing."""
        star = line.rfind(b"*")
        if star < 0:
            if self.require_checksum:
                self.counters["skipped_no_checksum"] += 1
                return None
            return line[1:].decode("ascii")
        body, given = line[1:star], line[star + 1 :]
        if len(given) != 2 or not _HEX.issuperset(given) or int(given, 16) != _xor(body):
            self.counters["skipped_checksum"] += 1
            return None
        return body.decode("ascii")

    def _sentence(self, body: str, kind: str, now: float) -> None:
        try:
            reading = read_sentence(kind, pynmea2.parse("$" + body))
        except (pynmea2.ParseError, MalformedSentence) as exc:
            self.counters["skipped_malformed"] += 1
            log.debug("malformed NMEA sentence %r: %s", body, exc)
            return
        self.counters["sentences"] += 1
        self._place(reading, now)

    def _place(self, reading: Reading, now: float) -> None:
        """Merge a reading into the pending epoch, or close that epoch and open a new one."""
        epoch = self._epoch
        if epoch is not None and self._starts_new_epoch(epoch, reading):
            self._emit()
            epoch = None
        if epoch is None:
            if reading.tod is not None and reading.tod == self._last_tod:
                self.counters["skipped_late"] += 1
                return
            epoch = self._epoch = _Epoch(last_seen=now, talker=reading.talker, tod=reading.tod)
        elif epoch.tod is None:
            epoch.tod = reading.tod  # sentences without a time opened it; this one dates it
        epoch.merge(reading, now)

    def _starts_new_epoch(self, epoch: _Epoch, reading: Reading) -> bool:
        if reading.tod is not None and epoch.tod is not None:
            return reading.tod != epoch.tod
        if reading.kind in epoch.kinds and reading.kind != "GSA":  # one GSA per constellation
            return True
        # A time-less VTG/GSA after a lost RMC: it belongs to the next epoch if the pending one
        # already holds a kind that comes after it in the receiver's usual order.
        rank = self._order.get(reading.kind)
        return rank is not None and any(self._order.get(k, -1) > rank for k in epoch.kinds)

    def _emit(self) -> None:
        epoch, self._epoch = self._epoch, None
        assert epoch is not None
        day = epoch.day or self._infer_day(epoch.tod)
        if epoch.tod is not None:
            self._last_tod = epoch.tod
            self._last_day = day
        if len(epoch.kinds) > 1:
            self._order = {kind: rank for rank, kind in enumerate(epoch.kinds)}
        fix = epoch.to_fix(day)
        self.counters["fixes"] += 1
        if epoch.invalid and epoch.latitude is not None:
            self.counters["fixes_invalid"] += 1
        if not fix.has_position:
            self.counters["fixes_no_position"] += 1
        if epoch.tod is not None and day is None:
            self.counters["fixes_undated"] += 1
        self._out.append(fix)

    def _infer_day(self, tod: time | None) -> date | None:
        """Date of a GGA-only epoch: the last known date, plus one day past midnight."""
        if tod is None or self._last_day is None or self._last_tod is None:
            return None
        if _seconds(tod) < _seconds(self._last_tod) - _HALF_DAY:
            return self._last_day + timedelta(days=1)
        return self._last_day


def _seconds(tod: time) -> float:
    return tod.hour * 3600 + tod.minute * 60 + tod.second + tod.microsecond / 1e6


# A recorded line may start with its receive time, as `gpspipe -r -u` writes: "1700000000.12: $".
_RECEIVE_TIME = re.compile(rb"^\s*(\d{9,11}(?:\.\d+)?):?[ \t]+(?=\$)")


def read_nmea_file(path: Path | str, *, parser: NmeaParser | None = None) -> Iterator[Fix]:
    """Fixes of a recorded NMEA file, in order, for replay.

    A fix's ``timestamp`` is the line's receive time when the recording has them (a leading
    ``<epoch seconds>[:] `` before ``$``, as ``gpspipe -r -u`` writes); otherwise the receiver's UTC
    time of the epoch, and fixes with no date yet (GGA before the first RMC) are left out (they
    stay counted in ``fixes_undated``). Pass ``parser`` to read its counters afterwards.
    """
    parser = parser or NmeaParser(epoch_timeout=None)
    received: float | None = None
    with Path(path).open("rb") as stream:
        for raw in stream:
            stamp = _RECEIVE_TIME.match(raw)
            line = raw
            if stamp is not None:
                received = float(stamp.group(1))
                line = raw[stamp.end() :]
            yield from _replay_fixes(parser.feed(line, received or 0.0), received)
        yield from _replay_fixes(parser.flush(received or 0.0), received)


def _replay_fixes(fixes: list[Fix], received: float | None) -> Iterator[Fix]:
    for fix in fixes:
        if received is not None:
            yield fix
        elif fix.utc is not None:
            yield replace(fix, timestamp=fix.utc.timestamp())
