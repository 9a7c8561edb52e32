"""The per-vehicle token bucket (``backend.ingest.quota``): burst, sustained rate, isolation between
vehicles, a clock stepping back, a table that stays bounded however many VINs arrive; and the
skip log, which a flood of bad messages cannot flood."""

from __future__ import annotations

import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backend.ingest.quota import SkipLog, VehicleRate


def test_a_burst_then_the_sustained_rate() -> None:
    rate = VehicleRate(rate=2.0, burst=5)
    assert [rate.allow("A", 100.0) for _ in range(7)] == [True] * 5 + [False] * 2
    assert rate.allow("A", 100.4) is False  # 0.8 token: not yet
    assert rate.allow("A", 100.5) is True  # one token after 0.5 s at 2/s
    assert rate.allow("A", 100.5) is False


def test_one_vehicle_does_not_spend_another_ones_tokens() -> None:
    rate = VehicleRate(rate=1.0, burst=2)
    assert [rate.allow("A", 0.0) for _ in range(3)] == [True, True, False]
    assert [rate.allow("B", 0.0) for _ in range(2)] == [True, True]


def test_a_clock_stepping_back_refills_nothing() -> None:
    rate = VehicleRate(rate=1.0, burst=1)
    assert rate.allow("A", 50.0)
    assert not rate.allow("A", 10.0)
    assert not rate.allow("A", 50.5)
    assert rate.allow("A", 51.0)


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError):
        VehicleRate(rate=0.0, burst=1)
    with pytest.raises(ValueError):
        VehicleRate(rate=1.0, burst=0)


def test_the_table_stays_bounded_and_keeps_throttling_the_busy_vehicle() -> None:
    rate = VehicleRate(rate=0.001, burst=1, max_vehicles=100)
    assert rate.allow("busy", 0.0)
    busy_allowed = 0
    for i in range(1000):  # invented VINs, all at once
        rate.allow(f"V{i}", 1.0)
        assert len(rate) <= 100
        busy_allowed += rate.allow("busy", 1.0)  # seen recently: never evicted, never refilled
    assert busy_allowed == 0


@settings(max_examples=200, deadline=None)
@given(
    steps=st.lists(
        st.tuples(st.sampled_from("ABC"), st.floats(0, 5, allow_nan=False)), max_size=60
    ),
    burst=st.integers(1, 10),
)
def test_never_more_than_burst_plus_rate_times_elapsed(
    steps: list[tuple[str, float]], burst: int
) -> None:
    rate = VehicleRate(rate=3.0, burst=burst)
    now = 0.0
    allowed: dict[str, int] = {}
    for vin, gap in steps:
        now += gap
        allowed[vin] = allowed.get(vin, 0) + rate.allow(vin, now)
    for count in allowed.values():
        assert count <= burst + 3.0 * now + 1e-9


def test_a_flood_of_bad_messages_does_not_flood_the_log(caplog: pytest.LogCaptureFixture) -> None:
    skip_log = SkipLog(logging.getLogger("test.skips"), rate=1.0, burst=3)
    with caplog.at_level(logging.WARNING, logger="test.skips"):
        logged = [skip_log.warn("too_deep", 10.0, "dropped %s", i) for i in range(1000)]
        assert skip_log.warn("not_json", 10.0, "other reason")  # its own budget
        assert skip_log.warn("too_deep", 11.0, "dropped %s", "later")  # a second later
    assert sum(logged) == 3
    lines = [r.getMessage() for r in caplog.records]
    assert lines[:3] == ["dropped 0", "dropped 1", "dropped 2"]
    assert lines[-1] == "dropped later (997 more too_deep not logged)"
