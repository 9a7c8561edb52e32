"""NmeaParser: framing, checksums, junk counters, epoch merging, dates, partial reads."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from agent.gps.nmea import NmeaParser, nmea_checksum
from agent.model import FixType
from tests.agent.gps.gps_sentences import (
    T0,
    StreamBuilder,
    Truth,
    assert_fix_is,
    drive,
    messy_stream,
    sentence,
    ubx_frame,
)

SKIPS = (
    "skipped_nul",
    "skipped_binary",
    "skipped_text",
    "skipped_ubx",
    "skipped_truncated",
    "skipped_overlong",
    "skipped_checksum",
    "skipped_no_checksum",
    "skipped_proprietary",
    "skipped_unknown",
    "skipped_malformed",
    "skipped_late",
)


def parse_all(data: bytes, **kwargs: object) -> tuple[list, dict[str, int]]:
    parser = NmeaParser(**kwargs)  # type: ignore[arg-type]
    fixes = parser.feed(data, 100.0) + parser.flush(101.0)
    return fixes, parser.counters


def skips(counters: dict[str, int]) -> dict[str, int]:
    return {name: counters[name] for name in SKIPS if counters[name]}


def test_checksum_helper_matches_the_spec_example() -> None:
    # NMEA 0183 example sentence, checksum published with it
    assert nmea_checksum("GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,") == "47"


def test_clean_multi_constellation_stream_gives_one_fix_per_epoch() -> None:
    truths = drive(T0, 5)
    fixes, counters = parse_all(b"".join(t.epoch() for t in truths))
    assert len(fixes) == 5
    for fix, truth in zip(fixes, truths, strict=True):
        assert_fix_is(fix, truth)
    assert skips(counters) == {}
    assert counters["sentences"] == 5 * 6  # RMC VTG GGA + 3 GSA
    assert counters["ignored"] == 5  # GSV
    assert counters["fixes"] == 5 and counters["fixes_no_position"] == 0


def test_epoch_is_emitted_when_the_next_time_arrives_not_before() -> None:
    parser = NmeaParser()
    first, second = drive(T0, 2)
    assert parser.feed(first.epoch(), 1.0) == []
    fixes = parser.feed(second.rmc(), 1.5)
    assert len(fixes) == 1
    assert_fix_is(fixes[0], first)
    assert fixes[0].timestamp == 1.0  # receive time of the epoch's last sentence


def test_poll_closes_an_epoch_after_the_timeout_and_late_sentences_are_dropped() -> None:
    parser = NmeaParser(epoch_timeout=0.5)
    truth = drive(T0, 1)[0]
    assert parser.feed(truth.rmc() + truth.vtg(), 10.0) == []
    assert parser.poll(10.4) == []
    fixes = parser.poll(10.5)
    assert len(fixes) == 1 and fixes[0].altitude is None  # GGA had not come
    assert fixes[0].fix_type == FixType.FIX_2D
    assert parser.feed(truth.gga(), 10.6) == []
    assert parser.counters["skipped_late"] == 1
    assert parser.flush(11.0) == []


@pytest.mark.parametrize("talker", ["GP", "GN", "GL", "GA", "GB", "BD", "QZ", "GI"])
def test_every_talker_is_read(talker: str) -> None:
    truth = Truth(utc=T0, talker=talker, gsa=((talker, 9),))
    fixes, counters = parse_all(truth.epoch())
    assert_fix_is(fixes[0], truth)
    assert skips(counters) == {}


def test_no_fix_period_gives_no_position_never_zero() -> None:
    truths = [
        *drive(T0, 2),
        Truth(utc=T0 + timedelta(seconds=2), latitude=None, longitude=None),
        Truth(utc=T0 + timedelta(seconds=3), latitude=None, longitude=None),
        *drive(T0 + timedelta(seconds=4), 1),
    ]
    fixes, counters = parse_all(b"".join(t.epoch() for t in truths))
    assert [f.has_position for f in fixes] == [True, True, False, False, True]
    for fix, truth in zip(fixes, truths, strict=True):
        assert_fix_is(fix, truth)
    assert fixes[2].satellites == 0 and fixes[2].hdop == 99.99
    assert counters["fixes_no_position"] == 2


def test_receiver_without_time_still_reports_no_position_per_epoch() -> None:
    epoch = sentence("GPRMC,,V,,,,,,,,,,N") + sentence("GPGGA,,,,,,0,00,,,,,,,")
    epoch += sentence("GPGSA,A,1,,,,,,,,,,,,,,,")
    fixes, counters = parse_all(epoch * 3)
    assert len(fixes) == 3
    assert all(f.utc is None and not f.has_position for f in fixes)
    assert counters["fixes_no_position"] == 3 and skips(counters) == {}


def test_gga_only_uses_last_known_date_and_rolls_over_midnight() -> None:
    evening = datetime(2026, 11, 23, 23, 59, 59, tzinfo=UTC)
    first = Truth(utc=evening)
    later = Truth(utc=evening + timedelta(seconds=1))  # 00:00:00 next day, GGA only
    stream = first.rmc() + first.gga() + later.gga()
    fixes, _ = parse_all(stream)
    assert [f.utc for f in fixes] == [evening, evening + timedelta(seconds=1)]


def test_gga_before_any_date_has_no_utc_and_is_counted() -> None:
    truth = Truth(utc=T0)
    fixes, counters = parse_all(truth.gga())
    assert fixes[0].utc is None and fixes[0].has_position
    assert counters["fixes_undated"] == 1


def test_merge_prefers_gga_quality_and_sums_gsa_satellites_without_gga() -> None:
    truth = Truth(utc=T0)
    fixes, _ = parse_all(truth.rmc() + b"".join(truth.gsas()))
    assert fixes[0].satellites == 9  # 4 + 3 + 2 from the three GSA
    assert fixes[0].hdop == 0.9  # from GSA
    assert fixes[0].fix_type == FixType.FIX_3D  # GSA mode
    dgps = sentence("GPGGA,123519.00,4807.038,N,01131.000,E,2,08,0.9,545.4,M,46.9,M,,")
    fixes, _ = parse_all(dgps)
    assert fixes[0].quality == 2 and fixes[0].fix_type == FixType.FIX_3D


def test_rmc_mode_letter_sets_quality_when_there_is_no_gga() -> None:
    rmc = sentence("GPRMC,123519.00,A,4807.038,N,01131.000,E,0.0,,231126,,,D")
    fixes, _ = parse_all(rmc)
    assert fixes[0].quality == 2 and fixes[0].fix_type == FixType.FIX_2D
    assert fixes[0].course is None and fixes[0].speed_kmh == 0.0
    assert fixes[0].utc == datetime(2026, 11, 23, 12, 35, 19, tzinfo=UTC)


def test_southern_and_western_hemispheres_are_negative() -> None:
    truth = Truth(utc=T0, latitude=-33.865, longitude=-70.5)
    fixes, _ = parse_all(truth.epoch())
    assert_fix_is(fixes[0], truth)


def test_each_kind_of_junk_is_skipped_and_counted() -> None:
    a, b, c, d, e, f, g = drive(T0, 7)
    bad_checksum = bytearray(b.rmc())
    bad_checksum[-4:-2] = b"00" if bad_checksum[-4:-2] != b"00" else b"11"
    stream = b"".join(
        [
            b"\x00" * 7,
            a.epoch(),
            bytes(bad_checksum),  # b's RMC lost; its GGA still gives b
            b.gga(),
            b"$GPGGA,123521.00,4807.0",  # truncated by the next `$`
            c.rmc(),
            ubx_frame(0x01, 0x07, b"\x24\x24\x0d\x0a" + bytes(range(60))),  # `$` and CRLF inside
            c.gga(),
            b"$GPRMC,123522.00,A,4807.038,N,01131.000,E,0.1,,231126,,,A\r\n",  # no checksum
            sentence("PUBX,00,123522.00,4807.038,N"),
            sentence("GPXYZ,1,2,3"),  # unknown type
            sentence("GPGGA,123522.00,4807.038,X,01131.000,E,1,08,0.9,1.0,M,,M,,"),  # bad field
            b"$" + b"A" * 300 + b"\r\n",  # overlong
            b"\xff\xfe\x01 junk \r\n",
            d.epoch(),
            e.rmc()[:20] + b"\x00\x00" + e.rmc()[20:],  # NULs cut the line
            e.gga(),
            f.epoch(),
            g.rmc()[:30],  # stream ends mid-sentence
        ]
    )
    fixes, counters = parse_all(stream)
    assert [fix.utc for fix in fixes] == [t.utc for t in (a, b, c, d, e, f)]
    assert_fix_is(fixes[0], a)
    assert_fix_is(fixes[3], d)
    assert_fix_is(fixes[5], f)
    assert fixes[1].speed_kmh is None and fixes[1].altitude == b.altitude  # GGA only
    assert skips(counters) == {
        "skipped_nul": 9,
        "skipped_checksum": 1,
        "skipped_truncated": 3,  # cut by `$`, cut by NUL, unfinished at the end
        "skipped_ubx": 1,
        "skipped_no_checksum": 1,
        "skipped_proprietary": 1,
        "skipped_unknown": 1,
        "skipped_malformed": 1,
        "skipped_overlong": 1,
        "skipped_binary": 3,  # \xff \xfe \x01
        "skipped_text": 6 + len(e.rmc()) - 22,  # " junk " and the rest of the line cut by NULs
    }


def test_missing_checksum_is_accepted_when_configured() -> None:
    line = b"$GPRMC,123519.00,A,4807.038,N,01131.000,E,0.1,,231126,,,A\r\n"
    fixes, counters = parse_all(line, require_checksum=False)
    assert len(fixes) == 1 and fixes[0].has_position
    assert counters["skipped_no_checksum"] == 0
    fixes, counters = parse_all(line)
    assert fixes == [] and counters["skipped_no_checksum"] == 1


def test_lowercase_checksum_and_lf_only_line_ends_are_accepted() -> None:
    body = "GPRMC,123519.00,A,4807.038,N,01131.000,E,0.1,,231126,,,A"
    line = f"${body}*{nmea_checksum(body).lower()}\n".encode()
    fixes, counters = parse_all(line)
    assert len(fixes) == 1 and skips(counters) == {}


def test_ubx_frame_with_bad_checksum_does_not_swallow_the_sentence_after_it() -> None:
    truth = Truth(utc=T0)
    broken = bytearray(ubx_frame(0x01, 0x07, bytes(20)))
    broken[-1] ^= 0xFF
    fixes, counters = parse_all(bytes(broken) + truth.epoch())
    assert_fix_is(fixes[0], truth)
    assert counters["skipped_ubx"] == 0
    assert counters["skipped_nul"] == 21  # length high byte and the zero payload
    assert counters["skipped_binary"] == 7  # sync, class, id, length low, checksum


def test_bytes_split_at_every_position_give_the_same_result() -> None:
    truths = drive(T0, 3)
    stream = b"\x00\x00" + truths[0].epoch() + ubx_frame(1, 2, b"$x\r\n") + truths[1].epoch()
    stream += b"$GPGGA,12" + truths[2].epoch()
    whole_fixes, whole_counters = parse_all(stream)
    assert len(whole_fixes) == 3
    for cut in range(1, len(stream)):
        parser = NmeaParser()
        fixes = parser.feed(stream[:cut], 1.0) + parser.feed(stream[cut:], 1.0)
        fixes += parser.flush(1.0)
        assert [f.utc for f in fixes] == [f.utc for f in whole_fixes], cut
        assert parser.counters == whole_counters, cut


def test_byte_by_byte_feed() -> None:
    truths = drive(T0, 2)
    parser = NmeaParser()
    fixes = []
    for byte in b"".join(t.epoch() for t in truths):
        fixes += parser.feed(bytes([byte]), 1.0)
    fixes += parser.flush(1.0)
    for fix, truth in zip(fixes, truths, strict=True):
        assert_fix_is(fix, truth)


def expected_counters(builder: StreamBuilder, parser: NmeaParser) -> dict[str, int]:
    return {name: builder.counters().get(name, 0) for name in parser.counters}


def test_messy_capture_gives_every_fix_and_every_counter() -> None:
    builder = messy_stream()
    parser = NmeaParser()
    fixes = parser.feed(builder.stream(), 1.0) + parser.flush(1.0)
    assert len(fixes) == len(builder.expected)
    for fix, (truth, without) in zip(fixes, builder.expected, strict=True):
        assert_fix_is(fix, truth, without)
    assert parser.counters == expected_counters(builder, parser)
