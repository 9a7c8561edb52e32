"""Property: junk interleaved with valid sentences never raises and never costs a valid sentence."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.gps.nmea import NmeaParser
from tests.agent.gps.gps_sentences import T0, Truth, assert_fix_is, ubx_frame

TALKERS = ["GP", "GN", "GL", "GA", "GB", "BD", "QZ"]

truths = st.builds(
    Truth,
    utc=st.just(T0),
    latitude=st.none() | st.floats(-89.999, 89.999),
    longitude=st.floats(-179.999, 179.999),
    speed_kmh=st.floats(0, 300),
    course=st.floats(0, 359.99),
    altitude=st.floats(-400, 9000),
    hdop=st.floats(0.5, 50),
    satellites=st.integers(0, 40),
    talker=st.sampled_from(TALKERS),
)

# Random bytes; a stray UBX sync pair is replaced by real UBX frames below (a random run that
# happened to carry a valid Fletcher checksum would rightly be skipped as a frame).
junk = st.binary(max_size=60).filter(lambda b: b"\xb5\x62" not in b) | st.builds(
    ubx_frame, st.integers(0, 255), st.integers(0, 255), st.binary(max_size=80)
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    epochs=st.lists(truths, min_size=1, max_size=6),
    junks=st.lists(junk, min_size=20, max_size=20),
    cuts=st.lists(st.integers(0, 4000), max_size=8),
    with_gga=st.booleans(),
)
def test_junk_never_raises_and_never_costs_an_intact_sentence(
    epochs: list[Truth], junks: list[bytes], cuts: list[int], with_gga: bool
) -> None:
    epochs = [
        replace(
            t,
            utc=T0 + timedelta(seconds=i),
            longitude=t.longitude if t.latitude is not None else None,
        )
        for i, t in enumerate(epochs)
    ]
    parts = []
    for i, truth in enumerate(epochs):
        parts += [junks[2 * i], truth.rmc()]
        if with_gga:
            parts += [junks[2 * i + 1], truth.gga()]
    parts.append(junks[-1])
    stream = b"".join(parts)
    parser = NmeaParser()
    fixes = []
    previous = 0
    for cut in [*sorted({c % (len(stream) + 1) for c in cuts}), len(stream)]:
        fixes += parser.feed(stream[previous:cut], 1.0)
        previous = cut
    fixes += parser.flush(1.0)
    assert [f.utc for f in fixes] == [t.utc for t in epochs]
    for fix, truth in zip(fixes, epochs, strict=True):
        if with_gga:
            assert_fix_is(fix, truth)
        else:
            assert fix.has_position == truth.has_fix
            if truth.has_fix:
                assert abs(fix.latitude - truth.latitude) < 1e-6  # type: ignore[operator]
                assert abs(fix.longitude - truth.longitude) < 1e-6  # type: ignore[operator]
    assert parser.counters["sentences"] == len(epochs) * (2 if with_gga else 1)
