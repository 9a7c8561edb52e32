"""read_nmea_file: recordings with and without receive times, on the recording's own clock."""

from __future__ import annotations

from pathlib import Path

from agent.gps.nmea import NmeaParser, read_nmea_file
from tests.agent.gps.gps_sentences import T0, Truth, assert_fix_is, drive, messy_stream
from tests.agent.gps.gps_support import CAPTURES


def test_plain_recording_is_timed_by_the_receiver_utc() -> None:
    fixes = list(read_nmea_file(CAPTURES / "drive_10hz_multi_gnss.nmea"))
    assert len(fixes) == 100
    assert all(f.utc is not None and f.timestamp == f.utc.timestamp() for f in fixes)
    assert round(fixes[1].timestamp - fixes[0].timestamp, 6) == 0.1
    assert all(f.satellites == 16 for f in fixes)


def test_messy_capture_replays_every_fix_with_counters() -> None:
    builder = messy_stream()
    parser = NmeaParser(epoch_timeout=None)
    fixes = list(read_nmea_file(CAPTURES / "messy_ublox.nmea", parser=parser))
    assert len(fixes) == len(builder.expected)
    for fix, (truth, without) in zip(fixes, builder.expected, strict=True):
        assert_fix_is(fix, truth, without)
    assert parser.counters == {k: builder.counters().get(k, 0) for k in parser.counters}


def test_receive_times_of_the_recording_are_kept(tmp_path: Path) -> None:
    truths = drive(T0, 3)
    lines = []
    for i, truth in enumerate(truths):
        for j, line in enumerate(truth.epoch().splitlines(keepends=True)):
            lines.append(f"{1_700_000_000 + i}.{j:02d}: ".encode() + line)
    path = tmp_path / "gpspipe.log"
    path.write_bytes(b"".join(lines))
    fixes = list(read_nmea_file(path))
    assert [f.timestamp for f in fixes] == [1_700_000_000.05, 1_700_000_001.05, 1_700_000_002.05]
    for fix, truth in zip(fixes, truths, strict=True):
        assert_fix_is(fix, truth)


def test_epochs_before_the_first_date_are_left_out_of_a_plain_recording(tmp_path: Path) -> None:
    first, second = drive(T0, 2)
    path = tmp_path / "gga_first.nmea"
    path.write_bytes(first.gga() + second.rmc() + second.gga())
    parser = NmeaParser(epoch_timeout=None)
    fixes = list(read_nmea_file(path, parser=parser))
    assert [f.utc for f in fixes] == [second.utc]
    assert parser.counters["fixes_undated"] == 1 and parser.counters["fixes"] == 2


def test_no_fix_recording_reports_no_position(tmp_path: Path) -> None:
    path = tmp_path / "indoors.nmea"
    path.write_bytes(Truth(utc=T0, latitude=None, longitude=None).epoch())
    (fix,) = read_nmea_file(path)
    assert not fix.has_position and fix.latitude is None and fix.utc == T0
