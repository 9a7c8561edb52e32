"""Retry schedules: pure functions of (policy, attempts, first trigger, now)."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from backend.delivery.retry import (
    MAX_AGE,
    Schedule,
    next_attempt_at,
    parse_retry_after,
    planned_attempts,
)

T = 1_800_000_000.0


def test_none_is_one_try_plus_one_retry() -> None:
    assert planned_attempts(Schedule("None", retry_delay=999), T, T) == [T, T + 10]


def test_bounded_retries_retry_number_times_retry_delay_apart() -> None:
    times = planned_attempts(Schedule("Bounded", retry_number=3, retry_delay=30), T, T)
    assert times == [T, T + 30, T + 60, T + 90]


def test_always_retries_until_the_three_day_cap() -> None:
    times = planned_attempts(Schedule("Always", retry_delay=3600), T, T)
    assert len(times) == 73  # t = 0 h, 1 h, ..., 72 h
    assert times[-1] == T + MAX_AGE
    assert next_attempt_at(Schedule("Always", retry_delay=3600), 73, T, times[-1]) is None


def test_bounded_is_cut_by_the_cap_too() -> None:
    times = planned_attempts(Schedule("Bounded", retry_number=10, retry_delay=86400), T, T)
    assert times == [T, T + 86400, T + 2 * 86400, T + 3 * 86400]


def test_retry_after_postpones_but_never_past_the_cap() -> None:
    schedule = Schedule("Bounded", retry_number=5, retry_delay=10)
    assert next_attempt_at(schedule, 1, T, T + 5, retry_after=120) == T + 125
    assert next_attempt_at(schedule, 1, T, T + 5, retry_after=1) == T + 15
    assert next_attempt_at(schedule, 1, T, T + 5, retry_after=MAX_AGE) is None


def test_parse_retry_after_seconds_and_http_date() -> None:
    assert parse_retry_after("120", T) == 120.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 1445412480.0 - 60) == 60.0
    assert parse_retry_after("soon", T) is None
    assert parse_retry_after(None, T) is None


@given(
    policy=st.sampled_from(["None", "Bounded", "Always"]),
    retry_number=st.integers(1, 20),
    delay=st.integers(600, 200_000),
    lateness=st.floats(0, 400_000),
)
def test_no_attempt_is_ever_planned_after_the_cap(
    policy: str, retry_number: int, delay: int, lateness: float
) -> None:
    schedule = Schedule(policy, retry_number, float(delay))
    times = planned_attempts(schedule, T, T + lateness)
    assert all(t <= T + MAX_AGE for t in times[1:])
    assert all(b - a >= schedule.delay() for a, b in itertools.pairwise(times))
    limit = schedule.max_attempts()
    assert limit is None or len(times) <= limit
