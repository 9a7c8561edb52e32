"""Fuzz: NMEA sentences with valid checksums but arbitrary fields, and raw bytes, through the
framer and parser. Only counted skips, never an exception; every fix is in range."""

from __future__ import annotations

import math

from hypothesis import example, given
from hypothesis import strategies as st

from agent.gps.nmea import NmeaParser, nmea_checksum
from agent.model import Fix
from tests.agent.fuzz.fuzz_support import FUZZ_SETTINGS, lines_of

TALKERS = ["GP", "GN", "GL", "GA", "GB", "BD", "QZ", "XX", "", "G"]
KINDS = ["RMC", "GGA", "VTG", "GSA", "GSV", "GLL", "TXT", "ZDA", "RM", "RMCX"]
CLEAN = "0123456789.-+eENSWAVMKTDnaif"
FIELD = st.text(alphabet=CLEAN + ", *$\x00é", max_size=14)


@st.composite
def sentences(draw: st.DrawFn, field: st.SearchStrategy[str] = FIELD) -> bytes:
    """``$<talker><kind>,<fields>*<checksum>\\r\\n``: the checksum right, the rest anything."""
    address = draw(st.sampled_from(TALKERS)) + draw(st.sampled_from(KINDS))
    fields = draw(st.lists(field, max_size=22))
    body = ",".join([address, *fields])
    raw = body.encode("utf-8")
    checksum = nmea_checksum(body) if body.isascii() else "00"
    return b"$" + raw + b"*" + checksum.encode() + draw(st.sampled_from([b"\r\n", b"\n", b""]))


def check_fix(fix: Fix) -> None:
    if fix.latitude is not None:
        assert -90.0 <= fix.latitude <= 90.0 and math.isfinite(fix.latitude)
    if fix.longitude is not None:
        assert -180.0 <= fix.longitude <= 180.0 and math.isfinite(fix.longitude)
    for value in (fix.speed_kmh, fix.course, fix.altitude, fix.hdop):
        assert value is None or math.isfinite(value)


def feed_all(chunks: list[bytes]) -> NmeaParser:
    parser = NmeaParser()
    now = 1_000.0
    for chunk in chunks:
        for fix in parser.feed(chunk, now):
            check_fix(fix)
        now += 0.1
    for fix in parser.flush(now):
        check_fix(fix)
    assert all(isinstance(v, int) and v >= 0 for v in parser.counters.values())
    return parser


@FUZZ_SETTINGS
@given(st.lists(sentences(), min_size=1, max_size=12))
@example([b"$GPRMC,235960,A,9959.999,N,18959.999,E,1e308,nan,320299,,*" + b"00\r\n"])
def test_fuzzed_sentences_never_raise(lines: list[bytes]) -> None:
    feed_all(lines)


@FUZZ_SETTINGS
@given(st.lists(sentences(st.text(alphabet=CLEAN, max_size=12)), min_size=1, max_size=12))
def test_printable_sentences_are_each_parsed_or_counted(lines: list[bytes]) -> None:
    stream = b"".join(line if line.endswith(b"\n") else line + b"\r\n" for line in lines)
    parser = feed_all([stream])
    counters = parser.counters
    assert counters["lines"] + counters["skipped_overlong"] == len(lines)
    outcomes = counters["sentences"] + counters["ignored"] + counters["skipped_unknown"]
    outcomes += counters["skipped_malformed"] + counters["skipped_proprietary"]
    assert outcomes + counters["skipped_checksum"] == counters["lines"]


@FUZZ_SETTINGS
@given(st.lists(st.binary(max_size=300), max_size=8))
def test_random_bytes_never_raise(chunks: list[bytes]) -> None:
    feed_all(chunks)


def test_regression_inputs() -> None:
    cases = lines_of("nmea.txt")
    assert cases
    for case in cases:
        feed_all([case])
        feed_all([case[: len(case) // 2], case[len(case) // 2 :]])
