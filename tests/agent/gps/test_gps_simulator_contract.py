"""Contract: what the simulator writes (agent.simulate) is what the parser reads back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from agent.gps.nmea import NmeaParser
from agent.model import FixType
from agent.simulate import EpochFix, epoch_sentences


def test_simulated_epochs_read_back_exactly() -> None:
    start = datetime(2026, 11, 23, 10, 0, 0, tzinfo=UTC)
    epochs = [
        EpochFix(start, 48.85, 2.35, speed_kmh=50.0, course=90.0),
        EpochFix(start + timedelta(seconds=1), -33.9, -70.6, speed_kmh=0.0, satellites=5),
        EpochFix(start + timedelta(seconds=2), None, None),
    ]
    stream = b"".join(
        "".join(f"{line}\r\n" for line in epoch_sentences(fix, "GN")).encode() for fix in epochs
    )
    parser = NmeaParser()
    fixes = parser.feed(stream, 0.0) + parser.flush(0.0)
    assert [f.utc for f in fixes] == [e.utc for e in epochs]
    for fix, sent in zip(fixes[:2], epochs[:2], strict=True):
        assert fix.latitude is not None and sent.latitude is not None
        assert fix.longitude is not None and sent.longitude is not None
        assert abs(fix.latitude - sent.latitude) < 1e-6
        assert abs(fix.longitude - sent.longitude) < 1e-6
        assert fix.speed_kmh == sent.speed_kmh and fix.course == sent.course
        assert fix.satellites == sent.satellites and fix.fix_type == FixType.FIX_3D
    assert not fixes[2].has_position and fixes[2].fix_type == FixType.NONE
    assert {k: v for k, v in parser.counters.items() if k.startswith("skipped_") and v} == {}
